//! The catalogue of user messages (seed 004): every text an operator can read
//! about a failed asynchronous operation is declared here, with an
//! `event_id`, a level and named placeholders. Only ids and names the daemon
//! itself produced are substituted — and, as `{detail}` of a Redfish BMC's
//! refusal, the BMC's own message (cut to 160 characters, control
//! characters stripped), which is what the operator needs to read — so no
//! internal error string, path or secret can reach a message.

use crate::foundation::ids::{new_id, MESSAGE_PREFIX};
use crate::foundation::store::{MessageLevel, StoredMessage};

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub event_id: &'static str,
    pub level: MessageLevel,
    /// The text, with `{name}` placeholders.
    pub text: &'static str,
}

/// A job was running when the daemon stopped (crash, kill, power loss); it
/// was marked failed at the next start.
pub const JOB_INTERRUPTED: Event = Event {
    event_id: "RB-JOB-0001",
    level: MessageLevel::Error,
    text: "Job {job_id} ({job_action}) was interrupted because the rackboot daemon stopped while it ran. \
           It has been marked failed; check the nodes it covered and start the action again.",
};

/// A BMC did not answer at all.
pub const BMC_UNREACHABLE: Event = Event {
    event_id: "RB-BMC-0001",
    level: MessageLevel::Error,
    text: "The BMC of node {node_id} at {address} does not answer: check ipmi_network_address and ipmi_port, \
           that IPMI over LAN is enabled on the BMC, and that UDP to it is not filtered.",
};

/// A BMC refused the login (unknown user or wrong password).
pub const BMC_AUTH_FAILED: Event = Event {
    event_id: "RB-BMC-0002",
    level: MessageLevel::Error,
    text: "The BMC of node {node_id} refused the login of user {user}: check ipmi_username, ipmi_password and, \
           if the BMC has one, ipmi_bmc_key (ModifyBMNodeAttributes).",
};

/// The session could not be raised to the configured privilege level.
pub const BMC_PRIVILEGE: Event = Event {
    event_id: "RB-BMC-0003",
    level: MessageLevel::Error,
    text: "The BMC of node {node_id} did not grant user {user} the privilege needed for {operation}: \
           give the user operator or administrator rights on the BMC (ipmi.privilege sets what rackboot asks for).",
};

/// The BMC has no free session, or too many operations wait for it.
pub const BMC_NO_SESSION: Event = Event {
    event_id: "RB-BMC-0004",
    level: MessageLevel::Error,
    text: "The BMC of node {node_id} has no free session for {operation}: other tools may hold its sessions; \
           close them or wait for them to time out, then try again.",
};

/// The BMC answered but refused the command or spoke nonsense.
pub const BMC_COMMAND_FAILED: Event = Event {
    event_id: "RB-BMC-0005",
    level: MessageLevel::Error,
    text: "The BMC of node {node_id} could not carry out {operation} ({detail}): check that the BMC supports it \
           and that the chassis allows it now.",
};

/// Power sync: a node's BMC failed several polls in a row.
pub const BMC_LOST: Event = Event {
    event_id: "RB-BMC-0006",
    level: MessageLevel::Warning,
    text: "The BMC of node {node_id} at {address} failed {count} power-state polls in a row; the node is shown \
           with bmc_reachable 0 and power_state unknown until its BMC answers again.",
};

/// Power sync: a node marked unreachable answers again.
pub const BMC_BACK: Event = Event {
    event_id: "RB-BMC-0007",
    level: MessageLevel::Info,
    text: "The BMC of node {node_id} answers again; its power state is {power_state}.",
};

/// A Redfish BMC did not answer (TCP, or no HTTP answer in time).
pub const REDFISH_UNREACHABLE: Event = Event {
    event_id: "RB-BMC-0008",
    level: MessageLevel::Error,
    text: "The Redfish BMC of node {node_id} at {address} does not answer: check bmc_address (host, port, \
           https or +http), that Redfish is enabled on the BMC, and that TCP to it is not filtered.",
};

/// A Redfish BMC's TLS certificate was refused.
pub const REDFISH_TLS_FAILED: Event = Event {
    event_id: "RB-BMC-0009",
    level: MessageLevel::Error,
    text: "The Redfish BMC of node {node_id} at {address} failed the TLS check: {detail}.",
};

/// A Redfish BMC refused the login.
pub const REDFISH_AUTH_FAILED: Event = Event {
    event_id: "RB-BMC-0010",
    level: MessageLevel::Error,
    text: "The Redfish BMC of node {node_id} refused the login of user {user} ({detail}): check ipmi_username \
           and ipmi_password, the BMC's credentials for every driver (ModifyBMNodeAttributes).",
};

/// Collection: the host's SSH port does not answer.
pub const NODE_UNREACHABLE: Event = Event {
    event_id: "RB-NODE-0001",
    level: MessageLevel::Error,
    text: "Node {node_id} at {address} cannot be reached over SSH: check that the host is up, that sshd listens on \
           port {port} (ssh.port) and that no firewall blocks it.",
};

/// Collection: the host refused the daemon's key.
pub const NODE_AUTH_REJECTED: Event = Event {
    event_id: "RB-NODE-0002",
    level: MessageLevel::Error,
    text: "Node {node_id} at {address} refused rackboot's SSH key for user {user}: add the public key that \
           `rackboot ssh-key` prints to that user's ~/.ssh/authorized_keys on the host.",
};

/// Collection: the host presented another host key than the first time.
pub const NODE_HOST_KEY_CHANGED: Event = Event {
    event_id: "RB-NODE-0003",
    level: MessageLevel::Error,
    text: "Node {node_id} at {address} presented another SSH host key ({presented}) than the one trusted at first \
           contact ({expected}): this may be an impersonation. If the host was reinstalled, delete the node and add it again.",
};

/// Collection: the host stalled or the session failed.
pub const NODE_COLLECT_FAILED: Event = Event {
    event_id: "RB-NODE-0004",
    level: MessageLevel::Error,
    text: "Collecting node {node_id} at {address} failed ({detail}): check that the host answers commands \
           promptly (ssh.command_timeout) and try CollectNodes again.",
};

/// Provision step0: the node cannot be provisioned as registered.
pub const PROVISION_INVALID: Event = Event {
    event_id: "RB-PRV-0001",
    level: MessageLevel::Error,
    text: "Node {node_id} was not provisioned (step0, validate): {detail}. Fix it and run ProvisionBMNodes again.",
};

/// Provision step1/step4: the BMC would not set the boot device or power.
pub const PROVISION_POWER_FAILED: Event = Event {
    event_id: "RB-PRV-0002",
    level: MessageLevel::Error,
    text:
        "Node {node_id} failed at {step} ({operation}): its BMC answered {detail}. Check the BMC \
           (ipmi_network_address, credentials) and run ProvisionBMNodes again.",
};

/// Provision step2: the node never network-booted.
pub const PROVISION_NO_NETBOOT: Event = Event {
    event_id: "RB-PRV-0003",
    level: MessageLevel::Error,
    text: "Node {node_id} did not request its boot file within {seconds} s after power-on (step2): check the \
           PXE MAC ({mac}), that its NIC network-boots, and that the switch port forwards DHCP to rackboot.{hint}{console}",
};

/// Provision step3: the deploy ramdisk or installer reported a failure.
pub const PROVISION_DEPLOY_FAILED: Event = Event {
    event_id: "RB-PRV-0004",
    level: MessageLevel::Error,
    text: "Node {node_id} failed to deploy {os_version} (step3): the deploy reported: {detail}. Check the \
           image entry (file or url, sha256) and the node's os_disk_name; the node was powered off.{console}",
};

/// Provision step3/step5: no word from the deploy (or first boot) in time.
pub const PROVISION_TIMEOUT: Event = Event {
    event_id: "RB-PRV-0005",
    level: MessageLevel::Error,
    text:
        "Node {node_id} timed out at {step} after {seconds} s ({detail}): see its boot timeline \
           (DescribeBootEvents) for the last thing it did; the node was powered off.{hint}{console}",
};

/// AbortProvisionBMNodes (or AbortIntrospection) stopped the work.
pub const PROVISION_ABORTED: Event = Event {
    event_id: "RB-PRV-0006",
    level: MessageLevel::Warning,
    text: "Work on node {node_id} was aborted at {step} on request; the node was powered off and is {status}.",
};

/// The daemon stopped while the node was provisioning or inspecting.
pub const PROVISION_INTERRUPTED: Event = Event {
    event_id: "RB-PRV-0007",
    level: MessageLevel::Error,
    text: "Node {node_id} was {was} when the rackboot daemon stopped; it is now {status}. \
           Run the action again to start over.",
};

/// Inspection failed or timed out.
pub const INSPECT_FAILED: Event = Event {
    event_id: "RB-PRV-0008",
    level: MessageLevel::Error,
    text:
        "Inspection of node {node_id} failed at {step}: {detail}. Check its PXE MAC and the deploy \
           ramdisk ([deploy] kernel/initrd), then run IntrospectBMNodes again.{console}",
};

/// Provision step3: the node's root-device hints choose no single disk
/// among those its deploy ramdisk found.
pub const PROVISION_NO_DISK: Event = Event {
    event_id: "RB-PRV-0009",
    level: MessageLevel::Error,
    text: "Node {node_id} has no disk for {os_version} (step3): {detail}. Root-device hints: {hints}. \
           Disks the deploy ramdisk found: {disks}. Change root_device (ModifyBMNodeAttributes) and run \
           ProvisionBMNodes again; the node was powered off.{console}",
};

/// Provision step2 by virtual media: the ramdisk never called in.
pub const PROVISION_NO_VMEDIA_BOOT: Event = Event {
    event_id: "RB-PRV-0010",
    level: MessageLevel::Error,
    text: "Node {node_id} did not start the deploy ramdisk from virtual media within {seconds} s (step2): check on \
           its console that it boots the CD, that its BMC fetched the ISO (DescribeBootEvents), and that the \
           ramdisk reaches rackboot at {address} through the NIC {mac}.{console}",
};

/// Provision step1 by virtual media: the ISO could not be built.
pub const PROVISION_ISO_FAILED: Event = Event {
    event_id: "RB-PRV-0011",
    level: MessageLevel::Error,
    text: "Node {node_id} was not provisioned (step1): its virtual-media ISO could not be built ({detail}). Check \
           [deploy] kernel/initrd and the ISO tools (xorriso, isolinux, grub-efi-amd64-bin, mtools, dosfstools).",
};

/// UnprovisionBMNodes failed or timed out.
pub const CLEAN_FAILED: Event = Event {
    event_id: "RB-PRV-0012",
    level: MessageLevel::Error,
    text: "Cleaning of node {node_id} failed at {step}: {detail}. The node is clean_failed: its disks may still \
           hold data. Check its PXE MAC and the deploy ramdisk, then run UnprovisionBMNodes again.{console}",
};

/// Every event, for documentation and tests.
pub const CATALOGUE: &[Event] = &[
    JOB_INTERRUPTED,
    BMC_UNREACHABLE,
    BMC_AUTH_FAILED,
    BMC_PRIVILEGE,
    BMC_NO_SESSION,
    BMC_COMMAND_FAILED,
    BMC_LOST,
    BMC_BACK,
    REDFISH_UNREACHABLE,
    REDFISH_TLS_FAILED,
    REDFISH_AUTH_FAILED,
    NODE_UNREACHABLE,
    NODE_AUTH_REJECTED,
    NODE_HOST_KEY_CHANGED,
    NODE_COLLECT_FAILED,
    PROVISION_INVALID,
    PROVISION_POWER_FAILED,
    PROVISION_NO_NETBOOT,
    PROVISION_DEPLOY_FAILED,
    PROVISION_TIMEOUT,
    PROVISION_ABORTED,
    PROVISION_INTERRUPTED,
    INSPECT_FAILED,
    PROVISION_NO_DISK,
    CLEAN_FAILED,
    PROVISION_NO_VMEDIA_BOOT,
    PROVISION_ISO_FAILED,
];

/// Fills `event`'s placeholders from `args`. A value is cut to 160 characters
/// (`hint`, the diagnosis rackboot adds: 600) and stripped of control
/// characters; a placeholder without a value becomes `?`.
pub fn render(event: &Event, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(event.text.len() + 32);
    let mut rest = event.text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                // `hint` (rackboot's diagnosis) and `console` (the node's
                // last console lines) are optional and longer than a BMC's word.
                let optional = matches!(name, "hint" | "console");
                let value = args
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| *v)
                    .unwrap_or(if optional { "" } else { "?" });
                let cap = match name {
                    "hint" => 600,
                    "console" => 480,
                    _ => 160,
                };
                out.extend(value.chars().filter(|c| !c.is_control()).take(cap));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where a message is about, and what request started the work.
pub struct Subject<'a> {
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub request_id: &'a str,
}

/// A message of `event` ready to store, kept `retention_days` from `now`.
pub fn message(
    event: &Event,
    args: &[(&str, &str)],
    subject: Subject<'_>,
    now: i64,
    retention_days: u32,
) -> StoredMessage {
    StoredMessage {
        id: new_id(MESSAGE_PREFIX),
        event_id: event.event_id.to_string(),
        level: event.level,
        user_message: render(event, args),
        resource_type: subject.resource_type.to_string(),
        resource_id: subject.resource_id.to_string(),
        request_id: subject.request_id.to_string(),
        created_at: now,
        guaranteed_until: now + i64::from(retention_days) * 86_400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_documents_every_event() {
        let readme = include_str!("../../README.md");
        let source = include_str!("usermsg.rs");
        let ids: Vec<&str> = source
            .split("event_id: \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(ids.len() > 20, "{ids:?}");
        let missing: Vec<&&str> = ids
            .iter()
            .filter(|id| !readme.contains(&format!("| {id} |")))
            .collect();
        assert!(
            missing.is_empty(),
            "README's user-message table lacks {missing:?}"
        );
    }

    #[test]
    fn placeholders_are_filled_and_values_sanitised() {
        let text = render(
            &JOB_INTERRUPTED,
            &[("job_id", "j-12345678"), ("job_action", "Scan\nBMNodes")],
        );
        assert!(
            text.starts_with("Job j-12345678 (ScanBMNodes) was interrupted"),
            "{text}"
        );
        assert!(!text.contains('{'));
        let missing = render(&JOB_INTERRUPTED, &[]);
        assert!(missing.starts_with("Job ? (?)"), "{missing}");
    }

    #[test]
    fn event_ids_are_unique() {
        let mut ids: Vec<_> = CATALOGUE.iter().map(|e| e.event_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
    }

    #[test]
    fn retention_sets_guaranteed_until() {
        let m = message(
            &JOB_INTERRUPTED,
            &[],
            Subject {
                resource_type: "Job",
                resource_id: "j-1",
                request_id: "",
            },
            1000,
            30,
        );
        assert_eq!(m.guaranteed_until, 1000 + 30 * 86_400);
        assert!(m.id.starts_with("m-"));
    }
}
