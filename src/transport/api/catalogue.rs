//! The action catalogue: one declaration per action, from which the daemon
//! dispatches, parameters are type-checked, the CLI builds its subcommand and
//! the README's reference is written. Adding an action = adding one entry here
//! (and its handler).

use super::params::{p, Param, Ty, BM_NODE_FIELDS};
use super::{
    bmnodes, boot_events, console, health, jobs, messages, nodes, power, provision, scan, users,
    Handler,
};

/// One action of the API.
pub struct Action {
    /// The seed-002 name, e.g. `DescribeBMNodes`.
    pub name: &'static str,
    /// The CLI subcommand, kebab-case, e.g. `describe-bm-nodes`.
    pub command: &'static str,
    /// The seed's `request_type` for it.
    pub request_type: &'static str,
    /// One line for `--help` and the README.
    pub about: &'static str,
    pub params: &'static [Param],
    /// The parameter the CLI takes as positional arguments.
    pub positional: Option<&'static str>,
    /// Whether the action starts a job (its response carries `job_id`; the
    /// CLI offers `--wait`).
    pub job: bool,
    /// For the CLI's human output: the list field and its columns
    /// (header, dotted path into each item).
    pub table: Option<Table>,
    pub handler: Handler,
}

/// How the CLI prints a list field as a table.
pub struct Table {
    pub field: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

const NODE_IDS: Param = p("node_ids", Ty::List, false, "node ids (n-…) to filter on");
const PAGING: [Param; 2] = [
    p(
        "offset",
        Ty::Int,
        false,
        "skip this many matches (paging; default 0)",
    ),
    p(
        "limit",
        Ty::Int,
        false,
        "return at most this many (1 to 1000000; default all)",
    ),
];

const fn concat<const N: usize>(head: [Param; 1], tail: &[Param]) -> [Param; N] {
    let mut out = [head[0]; N];
    let mut i = 0;
    while i < tail.len() {
        out[i + 1] = tail[i];
        i += 1;
    }
    out
}

const REGISTER_PARAMS: [Param; BM_NODE_FIELDS.len() + 1] = concat(
    [p(
        "bm_nodes",
        Ty::Objects,
        false,
        "the nodes to register, each an object of the fields below; or send one node's fields flat",
    )],
    BM_NODE_FIELDS,
);
const MODIFY_PARAMS: [Param; BM_NODE_FIELDS.len() + 1] = concat(
    [p("node_id", Ty::Str, true, "the node to change (n-…)")],
    BM_NODE_FIELDS,
);

const NODE_COLUMNS: &[(&str, &str)] = &[
    ("NODE_ID", "node_id"),
    ("HOSTNAME", "general.hostname"),
    ("STATUS", "status"),
    ("POWER", "power_state"),
    ("PXE_MAC", "pxe.pxe_network_mac_addr"),
    ("BOOT", "boot_mode"),
    ("IPMI", "ipmi.ipmi_network_address"),
    ("OS_VERSION", "general.os_version"),
];

const HOST_COLUMNS: &[(&str, &str)] = &[
    ("NODE_ID", "node_id"),
    ("ADDRESS", "address"),
    ("HOSTNAME", "hostname"),
    ("STATUS", "status"),
    ("CPUS", "cpu.cpu_processors"),
    ("MEM_GIB", "memory.memory_size"),
    ("OS", "os.os_name"),
    ("ROLE", "role"),
];

/// Every action the daemon answers.
pub static ACTIONS: &[Action] = &[
    Action {
        name: "DescribeNodes",
        command: "describe-nodes",
        request_type: "Node",
        about: "List hosts that already run an OS, with their collected hardware",
        params: &[
            NODE_IDS,
            p("product_type", Ty::Str, false, "only nodes of this product type"),
            p("product_name", Ty::Str, false, "only nodes of this product name"),
            p("role", Ty::Str, false, "only nodes with this role"),
            p("sub_roles", Ty::List, false, "only nodes having all these sub-roles"),
            p("status", Ty::Str, false, "collecting, available or collect_failed"),
            p("pre_status", Ty::Str, false, "previous status"),
            PAGING[0],
            PAGING[1],
        ],
        positional: Some("node_ids"),
        job: false,
        table: Some(Table { field: "node_set", columns: HOST_COLUMNS }),
        handler: nodes::describe,
    },
    Action {
        name: "AddNodes",
        command: "add-nodes",
        request_type: "Node",
        about: "Add the hosts whose SSH port answers on an address range and collect their hardware (a CollectNodes job)",
        params: &[
            p("ip_start", Ty::Str, true, "first address of the range (IPv4)"),
            p("ip_end", Ty::Str, true, "last address; at most 1024 addresses"),
        ],
        positional: None,
        job: true,
        table: None,
        handler: nodes::add,
    },
    Action {
        name: "DeleteNodes",
        command: "delete-nodes",
        request_type: "Node",
        about: "Delete nodes, all or none",
        params: &[p("node_ids", Ty::List, true, "the nodes to delete (n-…)")],
        positional: Some("node_ids"),
        job: false,
        table: None,
        handler: nodes::delete,
    },
    Action {
        name: "CollectNodes",
        command: "collect-nodes",
        request_type: "Node",
        about: "Collect the hardware of nodes over SSH again (nodes without a role) (a job)",
        params: &[p("node_ids", Ty::List, true, "the nodes (n-…)")],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: nodes::collect,
    },
    Action {
        name: "ModifyNodeAttributes",
        command: "modify-node-attributes",
        request_type: "Node",
        about: "Set the type and status of a node's data disks",
        params: &[
            p("node_id", Ty::Str, true, "the node (n-…)"),
            p("data_disks", Ty::List, true, "disk names, e.g. \"vdb, vdc\" or [\"vdb\", \"vdc\"]"),
            p("type", Ty::Str, false, "ssd, sata, hdd or nvme"),
            p("status", Ty::Int, false, "1 = data disk, 0 = not a data disk"),
        ],
        positional: Some("node_id"),
        job: false,
        table: None,
        handler: nodes::modify,
    },
    Action {
        name: "DescribeSSHKey",
        command: "ssh-key",
        request_type: "Node",
        about: "The daemon's SSH public key to install on hosts (created on first use)",
        params: &[],
        positional: None,
        job: false,
        table: None,
        handler: nodes::ssh_key,
    },
    Action {
        name: "DescribeBMNodes",
        command: "describe-bm-nodes",
        request_type: "BMNode",
        about: "List registered bare-metal nodes (filters: node_ids, status, pre_status, maintenance; paging)",
        params: &[
            NODE_IDS,
            p("status", Ty::Str, false, "only nodes in this status"),
            p("pre_status", Ty::Str, false, "only nodes whose previous status is this"),
            p("maintenance", Ty::Flag, false, "only nodes in (1) or out of (0) maintenance"),
            PAGING[0],
            PAGING[1],
        ],
        positional: Some("node_ids"),
        job: false,
        table: Some(Table { field: "node_set", columns: NODE_COLUMNS }),
        handler: bmnodes::describe,
    },
    Action {
        name: "RegisterBMNodes",
        command: "register-bm-nodes",
        request_type: "BMNode",
        about: "Register bare-metal nodes, all or none (bm_nodes list, or one node's fields)",
        params: &REGISTER_PARAMS,
        positional: None,
        job: false,
        table: None,
        handler: bmnodes::register,
    },
    Action {
        name: "DeleteBMNodes",
        command: "delete-bm-nodes",
        request_type: "BMNode",
        about: "Delete bare-metal nodes, all or none (never one with work under way; an active one only with force)",
        params: &[
            p("node_ids", Ty::List, true, "the nodes to delete (n-…)"),
            p("force", Ty::Flag, false, "1 = delete active nodes too (rackboot forgets a running machine; unprovision it instead)"),
        ],
        positional: Some("node_ids"),
        job: false,
        table: None,
        handler: bmnodes::delete,
    },
    Action {
        name: "ModifyBMNodeAttributes",
        command: "modify-bm-node-attributes",
        request_type: "BMNode",
        about: "Change fields of one bare-metal node (only the fields sent; \"\" clears an optional one)",
        params: &MODIFY_PARAMS,
        positional: Some("node_id"),
        job: false,
        table: None,
        handler: bmnodes::modify,
    },
    Action {
        name: "StartBMNodes",
        command: "start-bm-nodes",
        request_type: "BMNode",
        about: "Power nodes on through their BMCs (a job; one log line per node)",
        params: &[p("node_ids", Ty::List, true, "the nodes (n-…)")],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: power::start,
    },
    Action {
        name: "StopBMNodes",
        command: "stop-bm-nodes",
        request_type: "BMNode",
        about: "Power nodes off (force 1: hard off, default; 0: ACPI soft off) (a job)",
        params: &[
            p("node_ids", Ty::List, true, "the nodes (n-…)"),
            p("force", Ty::Flag, false, "1 = hard power off (default), 0 = soft off through the OS (ACPI)"),
        ],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: power::stop,
    },
    Action {
        name: "RestartBMNodes",
        command: "restart-bm-nodes",
        request_type: "BMNode",
        about: "Restart nodes (force 1: hard reset, default; 0: power cycle); a node that is off is powered on (a job)",
        params: &[
            p("node_ids", Ty::List, true, "the nodes (n-…)"),
            p("force", Ty::Flag, false, "1 = hard reset (default), 0 = power cycle"),
        ],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: power::restart,
    },
    Action {
        name: "SetBMNodesBootDevice",
        command: "set-bm-nodes-boot-device",
        request_type: "BMNode",
        about: "Set the boot device of nodes and read it back (a job)",
        params: &[
            p("node_ids", Ty::List, true, "the nodes (n-…)"),
            p("boot_device", Ty::Str, true, "pxe, disk, cd or bios (setup); cd: virtual media on Redfish BMCs"),
            p("persistent", Ty::Flag, false, "1 = every boot, 0 = next boot only (default)"),
            p("efi", Ty::Flag, false, "1 = UEFI boot, 0 = legacy BIOS; default: each node's boot_mode"),
        ],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: power::set_boot_device,
    },
    Action {
        name: "RefreshBMNodesPowerState",
        command: "refresh-bm-nodes-power-state",
        request_type: "BMNode",
        about: "Read nodes' power state from their BMCs now (all nodes when no node_ids) (a job)",
        params: &[
            p("node_ids", Ty::List, false, "the nodes (n-…); default all"),
            p("inventory", Ty::Flag, false, "1 = also re-read Redfish nodes' out-of-band inventory (bmc_inventory), in the same session"),
        ],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: power::refresh,
    },
    Action {
        name: "ScanBMNodes",
        command: "scan-bm-nodes",
        request_type: "BMNode",
        about: "Find BMCs on an address range (or re-scan nodes) and register or update them (a job)",
        params: &[
            p("ip_start", Ty::Str, false, "first BMC address of the range (IPv4)"),
            p("ip_end", Ty::Str, false, "last BMC address of the range; at most 4096 addresses"),
            p("ipmi_port", Ty::Int, false, "BMC UDP port (default 623)"),
            p("ipmi_username", Ty::Str, false, "BMC user to log in with, IPMI and Redfish (default: scan.default_credentials in order)"),
            p("ipmi_password", Ty::Str, false, "its password"),
            p("node_ids", Ty::List, false, "re-scan these registered nodes instead of a range"),
            p("protocols", Ty::List, false, "ipmi, redfish or both (default both; a host answering both is registered once, as Redfish)"),
            p("redfish_port", Ty::Int, false, "Redfish HTTPS port probed (default 443)"),
            p("bmc_verify_tls", Ty::Flag, false, "1 = verify Redfish certificates (default), 0 = accept self-signed ones (kept on the nodes registered)"),
            p("intake", Ty::Flag, false, "1 = zero-touch intake: power each BMC found that has no PXE MAC into the discovery ramdisk (PXE once), join the machine to its BMC (system serial = FRU serial, else one at a time), keep its MAC and inventory; the node ends ready and off"),
        ],
        positional: None,
        job: true,
        table: None,
        handler: scan::scan,
    },
    Action {
        name: "ProvisionBMNodes",
        command: "provision-bm-nodes",
        request_type: "BMNode",
        about: "Install each node's os_version: PXE deploy, then boot from disk (a job: step0 validate, step1 PXE + power cycle, step2 network boot, step3 deploy, step4 disk + power cycle, step5 first boot)",
        params: &[
            p("node_ids", Ty::List, true, "the nodes (n-…): new, ready, provision_failed, inspect_failed or clean_failed (active with rebuild)"),
            p("rebuild", Ty::Flag, false, "1 = reinstall active nodes too (their disks are overwritten)"),
            p("ssh_keys", Ty::List, false, "OpenSSH public keys for root of the installed OS (image deploys, cloud-init); rackboot's own key (ssh-key) is always added"),
            p("user_data", Ty::Str, false, "cloud-init user data for the installed OS (at most 64 KiB; #cloud-config, a script, …); never stored, logged or described"),
            p("hostname", Ty::Str, false, "host name of the installed OS (default: the node's hostname); one node only, else per node in node_settings"),
            p("node_settings", Ty::Objects, false, "per-node overrides: [{\"node_id\": \"n-…\", \"ssh_keys\": [...], \"user_data\": \"…\", \"hostname\": \"…\"}]"),
        ],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: provision::provision,
    },
    Action {
        name: "UnprovisionBMNodes",
        command: "unprovision-bm-nodes",
        request_type: "BMNode",
        about: "Wipe nodes' disks with the deploy ramdisk, power them off and leave them ready (a job: step0 validate, step1 PXE + power cycle, step2 network boot, step3 wipe, step4 power off)",
        params: &[
            p("node_ids", Ty::List, true, "the nodes (n-…): active, ready, provision_failed, inspect_failed or clean_failed"),
            p("wipe", Ty::Str, false, "metadata (default: partition tables at both ends of every disk, first and last MiB of every partition), zero (every byte, with progress) or none (power off only)"),
        ],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: provision::unprovision,
    },
    Action {
        name: "GetUnprovisionBMNodesStatus",
        command: "get-unprovision-status",
        request_type: "BMNode",
        about: "Status, pre_status and progress of an UnprovisionBMNodes job, and per node (the newest job when no job_id)",
        params: &[p("job_id", Ty::Str, false, "the job (j-…)")],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: provision::unprovision_status,
    },
    Action {
        name: "GetUnprovisionBMNodesLog",
        command: "get-unprovision-log",
        request_type: "BMNode",
        about: "Log lines of an UnprovisionBMNodes job (the newest when no job_id)",
        params: &[
            p("job_id", Ty::Str, false, "the job (j-…)"),
            p("job_status", Ty::Str, false, "only lines written under this status (step<N>, successful, failed)"),
        ],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: provision::unprovision_log,
    },
    Action {
        name: "GetProvisionBMNodesStatus",
        command: "get-provision-status",
        request_type: "BMNode",
        about: "Status, pre_status and progress of a ProvisionBMNodes job, and per node (the newest job when no job_id)",
        params: &[p("job_id", Ty::Str, false, "the job (j-…)")],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: provision::status,
    },
    Action {
        name: "GetProvisionBMNodesLog",
        command: "get-provision-log",
        request_type: "BMNode",
        about: "Log lines of a ProvisionBMNodes job (the newest when no job_id)",
        params: &[
            p("job_id", Ty::Str, false, "the job (j-…)"),
            p("job_status", Ty::Str, false, "only lines written under this status (step<N>, successful, failed)"),
        ],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: provision::log,
    },
    Action {
        name: "AbortProvisionBMNodes",
        command: "abort-provision",
        request_type: "BMNode",
        about: "Stop provisioning nodes: power off, provision_failed with reason \"aborted\"",
        params: &[p("node_ids", Ty::List, true, "the provisioning nodes (n-…)")],
        positional: Some("node_ids"),
        job: false,
        table: None,
        handler: provision::abort_provision,
    },
    Action {
        name: "IntrospectBMNodes",
        command: "introspect-bm-nodes",
        request_type: "BMNode",
        about: "Boot nodes into the deploy ramdisk for a hardware inventory only, then power them off (a job)",
        params: &[p("node_ids", Ty::List, true, "the nodes (n-…): new, ready, provision_failed, inspect_failed or clean_failed")],
        positional: Some("node_ids"),
        job: true,
        table: None,
        handler: provision::introspect,
    },
    Action {
        name: "AbortIntrospection",
        command: "abort-introspection",
        request_type: "BMNode",
        about: "Stop inspecting a node: power off, inspect_failed",
        params: &[p("node_id", Ty::Str, true, "the inspecting node (n-…)")],
        positional: Some("node_id"),
        job: false,
        table: None,
        handler: provision::abort_introspection,
    },
    Action {
        name: "GetIntrospectionData",
        command: "get-introspection-data",
        request_type: "BMNode",
        about: "The inventory a node's ramdisk reported, as stored, and what rackboot read from it",
        params: &[p("node_id", Ty::Str, true, "the node (n-…)")],
        positional: Some("node_id"),
        job: false,
        table: None,
        handler: provision::introspection_data,
    },
    Action {
        name: "ReapplyIntrospection",
        command: "reapply-introspection",
        request_type: "BMNode",
        about: "Process a node's stored inventory again into its record (serial number, brand)",
        params: &[p("node_id", Ty::Str, true, "the node (n-…), not busy")],
        positional: Some("node_id"),
        job: false,
        table: None,
        handler: provision::reapply_introspection,
    },
    Action {
        name: "GetScanBMNodesStatus",
        command: "get-scan-bm-nodes-status",
        request_type: "BMNode",
        about: "Status of a ScanBMNodes job (the newest when no job_id)",
        params: &[p("job_id", Ty::Str, false, "the job (j-…)")],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: jobs::scan_status,
    },
    Action {
        name: "GetScanBMNodesLog",
        command: "get-scan-bm-nodes-log",
        request_type: "BMNode",
        about: "Log lines of a ScanBMNodes job (the newest when no job_id)",
        params: &[
            p("job_id", Ty::Str, false, "the job (j-…)"),
            p("job_status", Ty::Str, false, "only lines written under this status (step<N>, successful, failed)"),
        ],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: jobs::scan_log,
    },
    Action {
        name: "DescribeBootEvents",
        command: "describe-boot-events",
        request_type: "BMNode",
        about: "A machine's boot timeline: DHCP exchanges, TFTP and HTTP files served (oldest first)",
        params: &[
            p("node_id", Ty::Str, false, "the node (n-…), or:"),
            p("mac", Ty::Str, false, "a MAC address (machines not registered yet)"),
            p("since", Ty::Str, false, "only events from this time on (YYYY-MM-DD HH:MM:SS, UTC)"),
            p("limit", Ty::Int, false, "at most this many (1 to 10000; default 200)"),
        ],
        positional: Some("node_id"),
        job: false,
        table: Some(Table {
            field: "event_set",
            columns: &[("TIME", "time"), ("KIND", "kind"), ("DETAIL", "detail")],
        }),
        handler: boot_events::describe,
    },
    Action {
        name: "GetBMNodeConsoleLog",
        command: "console-log",
        request_type: "BMNode",
        about: "What a node's serial console printed while rackboot watched it (SOL, during provisioning, inspection, unprovisioning and console sessions; the last 1 MiB)",
        params: &[
            p("node_id", Ty::Str, true, "the node (n-…)"),
            p("since", Ty::Str, false, "only lines from this time on (YYYY-MM-DD HH:MM:SS, UTC)"),
            p("limit", Ty::Int, false, "the last this many lines (1 to 20000; default 200)"),
        ],
        positional: Some("node_id"),
        job: false,
        table: Some(Table {
            field: "console_log",
            columns: &[("TIME", "time"), ("LINE", "line")],
        }),
        handler: console::log,
    },
    Action {
        name: "ConnectBMNodeConsole",
        command: "console",
        request_type: "BMNode",
        about: "An interactive serial console (IPMI SOL) on a node: what it prints shows, what you type goes to it; ~. leaves (`rackboot console` upgrades the connection to the console's byte stream)",
        params: &[
            p("node_id", Ty::Str, true, "the node (n-…)"),
            p("force", Ty::Flag, false, "1 = when another session holds the BMC's console, deactivate it first"),
        ],
        positional: Some("node_id"),
        job: false,
        table: None,
        handler: console::connect,
    },
    Action {
        name: "GetStatus",
        command: "get-status",
        request_type: "Node",
        about: "Status of an asynchronous job (the newest of job_action when no job_id)",
        params: &[
            p("job_action", Ty::Str, false, "the action that started the job, e.g. CollectNodes (needed without job_id)"),
            p("job_id", Ty::Str, false, "the job (j-…); default: the newest job of job_action"),
        ],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: jobs::get_status,
    },
    Action {
        name: "GetLog",
        command: "get-log",
        request_type: "Node",
        about: "Numbered log lines of an asynchronous job",
        params: &[
            p("job_action", Ty::Str, false, "the action that started the job, e.g. CollectNodes (needed without job_id)"),
            p("job_id", Ty::Str, false, "the job (j-…); default: the newest job of job_action"),
            p("job_status", Ty::Str, false, "only lines written while the job had this status (step<N>, successful, failed)"),
        ],
        positional: Some("job_id"),
        job: false,
        table: None,
        handler: jobs::get_log,
    },
    Action {
        name: "DescribeJobs",
        command: "jobs",
        request_type: "Node",
        about: "List the jobs kept (newest first): action, status, progress, nodes, failures, times",
        params: &[
            p("job_action", Ty::Str, false, "only jobs of this action, e.g. ProvisionBMNodes"),
            p("status", Ty::Str, false, "only jobs with this status: running, step<N>, successful or failed"),
            p("since", Ty::Str, false, "only jobs created since: Unix seconds, or an age such as 30m, 2h, 7d"),
            p("limit", Ty::Int, false, "return at most this many (1 to 100000; default 100)"),
        ],
        positional: None,
        job: false,
        table: Some(Table {
            field: "job_set",
            columns: &[
                ("JOB_ID", "job_id"),
                ("ACTION", "job_action"),
                ("STATUS", "status"),
                ("PROGRESS", "progress"),
                ("NODES", "nodes"),
                ("FAILED", "failed_nodes"),
                ("CREATED", "created_at"),
                ("SECONDS", "seconds"),
            ],
        }),
        handler: jobs::describe_jobs,
    },
    Action {
        name: "GetHealth",
        command: "health",
        request_type: "Node",
        about: "Health of the daemon: version, schema, store check, services listening, last power sync, nodes and jobs",
        params: &[],
        positional: None,
        job: false,
        table: None,
        handler: health::get_health,
    },
    Action {
        name: "DescribeMessages",
        command: "describe-messages",
        request_type: "Message",
        about: "List user messages about failed asynchronous work (newest first)",
        params: &[
            p("message_ids", Ty::List, false, "message ids (m-…)"),
            p("resource_id", Ty::Str, false, "only messages about this node or job"),
            p("level", Ty::Str, false, "ERROR, WARNING or INFO"),
            p("event_id", Ty::Str, false, "only this catalogue event"),
            PAGING[0],
            PAGING[1],
        ],
        positional: Some("message_ids"),
        job: false,
        table: Some(Table {
            field: "message_set",
            columns: &[
                ("ID", "id"),
                ("LEVEL", "message_level"),
                ("RESOURCE", "resource_id"),
                ("CREATED", "created_at"),
                ("MESSAGE", "user_message"),
            ],
        }),
        handler: messages::describe,
    },
    Action {
        name: "DeleteMessages",
        command: "delete-messages",
        request_type: "Message",
        about: "Delete user messages, all or none",
        params: &[p("message_ids", Ty::List, true, "the messages to delete (m-…)")],
        positional: Some("message_ids"),
        job: false,
        table: None,
        handler: messages::delete,
    },
    Action {
        name: "DescribeUsers",
        command: "describe-users",
        request_type: "User",
        about: "List API users",
        params: &[],
        positional: None,
        job: false,
        table: Some(Table {
            field: "user_set",
            columns: &[("USER_ID", "user_id"), ("CREATED", "create_time"), ("UPDATED", "update_time")],
        }),
        handler: users::describe,
    },
    Action {
        name: "AddUser",
        command: "add-user",
        request_type: "User",
        about: "Add an API user (a password is generated and returned when new_password is not given)",
        params: &[
            p("user_id", Ty::Str, true, "the new user's name (letters, digits, . _ -)"),
            p("new_password", Ty::Str, false, "the new user's password (at least 8 characters)"),
        ],
        positional: Some("user_id"),
        job: false,
        table: None,
        handler: users::add,
    },
    Action {
        name: "ModifyUserPassword",
        command: "modify-user-password",
        request_type: "User",
        about: "Set a user's password (generated and returned when new_password is not given)",
        params: &[
            p("user_id", Ty::Str, true, "the user"),
            p("new_password", Ty::Str, false, "the new password (at least 8 characters)"),
        ],
        positional: Some("user_id"),
        job: false,
        table: None,
        handler: users::passwd,
    },
    Action {
        name: "DeleteUser",
        command: "delete-user",
        request_type: "User",
        about: "Delete an API user (not the last one)",
        params: &[p("user_id", Ty::Str, true, "the user")],
        positional: Some("user_id"),
        job: false,
        table: None,
        handler: users::delete,
    },
];

/// The action named `name`.
pub fn find_action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The parameter reference of every action, as Markdown (README's "Actions"
/// section is this text; a test keeps the two equal).
pub fn markdown_reference() -> String {
    let mut out = String::new();
    for a in ACTIONS {
        out.push_str(&format!(
            "#### {}\n\n{}. CLI: `rackboot {}`{}. request_type: `{}`.\n\n",
            a.name,
            a.about,
            a.command,
            a.positional
                .map(|p| format!(" (positional: `{p}`)"))
                .unwrap_or_default(),
            a.request_type
        ));
        if a.params.is_empty() {
            out.push_str("No parameters besides the common ones.\n\n");
            continue;
        }
        out.push_str("| parameter | type | required | description |\n|---|---|---|---|\n");
        for p in a.params {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                p.name,
                p.ty.describe(),
                if p.required { "yes" } else { "no" },
                p.help
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_holds_the_generated_action_reference() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let reference = markdown_reference();
        assert!(
            readme.contains(&reference),
            "README.md's action reference is out of date; replace it with:\n\n{reference}"
        );
    }

    #[test]
    fn readme_documents_every_actions_response() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme.find("### Responses").expect("a Responses section");
        let end = start
            + readme[start..]
                .find("\n### User messages")
                .expect("its end");
        let section = &readme[start..end];
        let missing: Vec<&str> = ACTIONS
            .iter()
            .map(|a| a.name)
            .filter(|n| !section.contains(&format!("**{n}**")))
            .collect();
        assert!(
            missing.is_empty(),
            "README's Responses section lacks {missing:?}"
        );
    }

    #[test]
    fn names_and_commands_are_unique_and_kebab() {
        let mut names: Vec<_> = ACTIONS.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ACTIONS.len());
        for a in ACTIONS {
            assert!(
                a.command
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                a.command
            );
            if let Some(pos) = a.positional {
                assert!(a.params.iter().any(|p| p.name == pos), "{}: {pos}", a.name);
            }
        }
    }
}
