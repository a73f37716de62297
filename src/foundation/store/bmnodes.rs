//! The `bm_nodes` table: registered bare-metal nodes, their BMC credentials,
//! PXE MAC, intended networks, provisioning status and last known power state.

use super::{unique_violation, BmNodeStatus, Store, StoreError};
use crate::foundation::hints::Hints;
use crate::foundation::ids::now_secs;
use crate::foundation::redfish::{BmcUrl, Driver};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};

/// Power state as last read from the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }
    fn parse(s: &str) -> PowerState {
        match s {
            "on" => PowerState::On,
            "off" => PowerState::Off,
            _ => PowerState::Unknown,
        }
    }
}

/// One intended network of a node (management or public). Empty strings mean
/// "not set"; `vlan_id` is 0 unless `vlan` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    pub address: String,
    pub netmask: String,
    pub gateway: String,
    pub bond: bool,
    pub vlan: bool,
    pub vlan_id: u16,
}

/// A registered bare-metal node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmNode {
    pub node_id: String,
    pub hostname: String,
    pub os_version: String,
    pub cpu_arch: String,
    pub serial_number: String,
    pub brand: String,
    pub description: String,
    pub ipmi_address: String,
    pub ipmi_port: u16,
    pub ipmi_username: String,
    /// Kept so the daemon can log in to the BMC; never returned nor logged.
    pub ipmi_password: String,
    /// Normalised lower-case colon form.
    pub pxe_mac: String,
    pub pxe_address: String,
    pub pxe_interface: String,
    pub os_disk_name: String,
    pub mgmt: NetworkSettings,
    pub public: NetworkSettings,
    pub status: BmNodeStatus,
    /// The status before the current one (`None` for a new node).
    pub pre_status: Option<BmNodeStatus>,
    pub power_state: PowerState,
    pub power_state_time: Option<i64>,
    pub create_time: i64,
    pub update_time: i64,
    /// 0 = ask the BMC (17, then 3); or 3 or 17.
    pub ipmi_cipher_suite: u8,
    /// The BMC key Kg in hex ("" = none); never returned nor logged.
    pub ipmi_bmc_key: String,
    /// False after `ipmi.power_sync_failures` failed polls in a row.
    pub bmc_reachable: bool,
    /// Failed power-sync polls in a row.
    pub bmc_failures: u32,
    /// The firmware mode the node boots in: sets the EFI bit of the boot
    /// flags, and the mode its firmware is expected to ask DHCP in.
    pub boot_mode: BootMode,
    /// Root-device hints besides `name` (which is `os_disk_name`).
    pub root_device: Hints,
    /// Whether Secure Boot was on, as the deploy ramdisk last reported
    /// (`None`: never reported).
    pub secure_boot: Option<bool>,
    /// In maintenance: power sync leaves it alone, and provision,
    /// unprovision and introspection are refused (power actions work).
    pub maintenance: bool,
    /// Why, as the operator said.
    pub maintenance_reason: String,
    // --- Redfish (issue 14) ---
    /// The BMC's URL when it is driven by Redfish (canonical
    /// `redfish[-virtualmedia][+http]://…`); "" for IPMI nodes, whose
    /// address is `ipmi_address`/`ipmi_port`.
    pub bmc_address: String,
    /// False: the BMC's certificate is accepted unverified (self-signed).
    pub bmc_verify_tls: bool,
    /// The out-of-band inventory (JSON of `redfish::wire::Inventory`; "" none).
    pub bmc_inventory: String,
    pub bmc_inventory_time: Option<i64>,
}

impl BmNode {
    /// The node's BMC as a URL (`ipmi://` from the seed's fields), if any.
    pub fn bmc_url(&self) -> Option<BmcUrl> {
        if !self.bmc_address.is_empty() {
            return BmcUrl::parse(&self.bmc_address).ok();
        }
        (!self.ipmi_address.is_empty()).then(|| BmcUrl::ipmi(&self.ipmi_address, self.ipmi_port))
    }

    /// How its BMC is driven (`None`: no BMC yet).
    pub fn driver(&self) -> Option<Driver> {
        self.bmc_url().map(|u| u.driver)
    }

    /// Whether the node has a BMC rackboot can reach.
    pub fn has_bmc(&self) -> bool {
        !self.bmc_address.is_empty() || !self.ipmi_address.is_empty()
    }

    /// Where its BMC is, for messages and logs (`10.0.0.5:623`,
    /// `redfish://10.0.0.5:443/redfish/v1/Systems/1`).
    pub fn bmc_label(&self) -> String {
        if self.bmc_address.is_empty() {
            format!("{}:{}", self.ipmi_address, self.ipmi_port)
        } else {
            self.bmc_address.clone()
        }
    }

    /// What identifies its BMC across drivers (see [`BmcUrl::endpoint`]).
    pub fn bmc_endpoint(&self) -> String {
        if self.bmc_address.is_empty() {
            return String::new();
        }
        self.bmc_url().map(|u| u.endpoint()).unwrap_or_default()
    }
}

impl BmNode {
    /// A node with every field empty (defaults), to fill in.
    pub fn blank() -> BmNode {
        BmNode {
            node_id: String::new(),
            hostname: String::new(),
            os_version: String::new(),
            cpu_arch: String::new(),
            serial_number: String::new(),
            brand: String::new(),
            description: String::new(),
            ipmi_address: String::new(),
            ipmi_port: 623,
            ipmi_username: String::new(),
            ipmi_password: String::new(),
            pxe_mac: String::new(),
            pxe_address: String::new(),
            pxe_interface: String::new(),
            os_disk_name: String::new(),
            mgmt: NetworkSettings::default(),
            public: NetworkSettings::default(),
            status: BmNodeStatus::New,
            pre_status: None,
            power_state: PowerState::Unknown,
            power_state_time: None,
            create_time: 0,
            update_time: 0,
            ipmi_cipher_suite: 0,
            bmc_reachable: true,
            bmc_failures: 0,
            ipmi_bmc_key: String::new(),
            boot_mode: BootMode::Uefi,
            root_device: Hints::default(),
            secure_boot: None,
            maintenance: false,
            maintenance_reason: String::new(),
            bmc_address: String::new(),
            bmc_verify_tls: true,
            bmc_inventory: String::new(),
            bmc_inventory_time: None,
        }
    }

    /// All root-device hints, `name` (= `os_disk_name`) included.
    pub fn hints(&self) -> Hints {
        let mut h = self.root_device.clone();
        h.name = self.os_disk_name.clone();
        h
    }
}

/// The firmware mode a node boots in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// UEFI (the default, as in Ironic since 2022).
    Uefi,
    /// Legacy BIOS.
    Bios,
}

impl BootMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Uefi => "uefi",
            BootMode::Bios => "bios",
        }
    }

    pub fn parse(s: &str) -> Option<BootMode> {
        match s {
            "uefi" => Some(BootMode::Uefi),
            "bios" => Some(BootMode::Bios),
            _ => None,
        }
    }
}

/// Which nodes DescribeBMNodes lists, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct BmNodeFilter {
    pub node_ids: Vec<String>,
    pub status: Option<BmNodeStatus>,
    pub pre_status: Option<BmNodeStatus>,
    pub maintenance: Option<bool>,
    pub offset: u64,
    pub limit: Option<u64>,
}

const COLUMNS: &str =
    "node_id, hostname, os_version, cpu_arch, serial_number, brand, description, \
    ipmi_address, ipmi_port, ipmi_username, ipmi_password, pxe_mac, pxe_address, pxe_interface, \
    os_disk_name, mgmt_address, mgmt_netmask, mgmt_gateway, mgmt_bond, mgmt_vlan, mgmt_vlan_id, \
    public_address, public_netmask, public_gateway, public_bond, public_vlan, public_vlan_id, \
    status, pre_status, power_state, power_state_time, create_time, update_time, \
    ipmi_cipher_suite, bmc_reachable, bmc_failures, ipmi_bmc_key, boot_mode, root_device, \
    secure_boot, maintenance, maintenance_reason, \
    bmc_address, bmc_endpoint, bmc_verify_tls, bmc_inventory, bmc_inventory_time";

fn from_row(r: &Row<'_>) -> rusqlite::Result<BmNode> {
    let status: String = r.get(27)?;
    let pre_status: String = r.get(28)?;
    let power: String = r.get(29)?;
    Ok(BmNode {
        node_id: r.get(0)?,
        hostname: r.get(1)?,
        os_version: r.get(2)?,
        cpu_arch: r.get(3)?,
        serial_number: r.get(4)?,
        brand: r.get(5)?,
        description: r.get(6)?,
        ipmi_address: r.get(7)?,
        ipmi_port: r.get(8)?,
        ipmi_username: r.get(9)?,
        ipmi_password: r.get(10)?,
        pxe_mac: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
        pxe_address: r.get(12)?,
        pxe_interface: r.get(13)?,
        os_disk_name: r.get(14)?,
        mgmt: NetworkSettings {
            address: r.get(15)?,
            netmask: r.get(16)?,
            gateway: r.get(17)?,
            bond: r.get(18)?,
            vlan: r.get(19)?,
            vlan_id: r.get(20)?,
        },
        public: NetworkSettings {
            address: r.get(21)?,
            netmask: r.get(22)?,
            gateway: r.get(23)?,
            bond: r.get(24)?,
            vlan: r.get(25)?,
            vlan_id: r.get(26)?,
        },
        // The CHECK constraints make these total; fall back rather than panic.
        status: BmNodeStatus::parse(&status).unwrap_or(BmNodeStatus::New),
        pre_status: BmNodeStatus::parse(&pre_status),
        power_state: PowerState::parse(&power),
        power_state_time: r.get(30)?,
        create_time: r.get(31)?,
        update_time: r.get(32)?,
        ipmi_cipher_suite: r.get(33)?,
        bmc_reachable: r.get(34)?,
        bmc_failures: r.get(35)?,
        ipmi_bmc_key: r.get(36)?,
        boot_mode: BootMode::parse(&r.get::<_, String>(37)?).unwrap_or(BootMode::Uefi),
        root_device: Hints::parse_stored(&r.get::<_, String>(38)?),
        secure_boot: r.get(39)?,
        maintenance: r.get(40)?,
        maintenance_reason: r.get(41)?,
        // Redfish (issue 14), by name.
        bmc_address: r.get("bmc_address")?,
        bmc_verify_tls: r.get("bmc_verify_tls")?,
        bmc_inventory: r.get("bmc_inventory")?,
        bmc_inventory_time: r.get("bmc_inventory_time")?,
    })
}

fn write(tx: &Transaction<'_>, n: &BmNode, insert: bool) -> rusqlite::Result<usize> {
    let sql = if insert {
        {
            let marks: Vec<String> = (1..=COLUMNS.split(',').count())
                .map(|i| format!("?{i}"))
                .collect();
            format!(
                "INSERT INTO bm_nodes ({COLUMNS}) VALUES ({})",
                marks.join(", ")
            )
        }
    } else {
        let sets: Vec<String> = COLUMNS
            .split(',')
            .map(str::trim)
            .enumerate()
            .skip(1)
            .map(|(i, c)| format!("{c} = ?{}", i + 1))
            .collect();
        format!("UPDATE bm_nodes SET {} WHERE node_id = ?1", sets.join(", "))
    };
    let mut stmt = tx.prepare_cached(&sql)?;
    stmt.execute(params![
        n.node_id,
        n.hostname,
        n.os_version,
        n.cpu_arch,
        n.serial_number,
        n.brand,
        n.description,
        n.ipmi_address,
        n.ipmi_port,
        n.ipmi_username,
        n.ipmi_password,
        (!n.pxe_mac.is_empty()).then_some(&n.pxe_mac),
        n.pxe_address,
        n.pxe_interface,
        n.os_disk_name,
        n.mgmt.address,
        n.mgmt.netmask,
        n.mgmt.gateway,
        n.mgmt.bond,
        n.mgmt.vlan,
        n.mgmt.vlan_id,
        n.public.address,
        n.public.netmask,
        n.public.gateway,
        n.public.bond,
        n.public.vlan,
        n.public.vlan_id,
        n.status.as_str(),
        n.pre_status.map(|s| s.as_str()).unwrap_or(""),
        n.power_state.as_str(),
        n.power_state_time,
        n.create_time,
        n.update_time,
        n.ipmi_cipher_suite,
        n.bmc_reachable,
        n.bmc_failures,
        n.ipmi_bmc_key,
        n.boot_mode.as_str(),
        n.root_device.to_json(),
        n.secure_boot,
        n.maintenance,
        n.maintenance_reason,
        // Redfish (issue 14).
        n.bmc_address,
        n.bmc_endpoint(),
        n.bmc_verify_tls,
        n.bmc_inventory,
        n.bmc_inventory_time,
    ])
}

/// Describes the first registered node that already holds one of `n`'s unique
/// identities (PXE MAC, hostname, IPMI address+port), other than `n` itself.
fn find_conflict(conn: &Connection, n: &BmNode) -> rusqlite::Result<Option<String>> {
    let holder = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<Option<String>> {
        conn.prepare_cached(sql)?
            .query_row(args, |r| r.get(0))
            .optional()
    };
    let taken = |field: &str, value: String, other: String| {
        Some(format!(
            "{field} {value} is already registered to node {other}"
        ))
    };
    let id = &n.node_id;
    if n.pxe_mac.is_empty() {
        // Unknown MAC: nothing to collide with.
    } else if let Some(other) = holder(
        "SELECT node_id FROM bm_nodes WHERE pxe_mac = ?1 AND node_id != ?2",
        &[&n.pxe_mac, id],
    )? {
        return Ok(taken("pxe_network_mac_addr", n.pxe_mac.clone(), other));
    }
    if let Some(other) = holder(
        "SELECT node_id FROM bm_nodes WHERE hostname = ?1 AND node_id != ?2",
        &[&n.hostname, id],
    )? {
        return Ok(taken("hostname", n.hostname.clone(), other));
    }
    if let Some(other) = holder(
        "SELECT node_id FROM bm_nodes WHERE ipmi_address = ?1 AND ipmi_address != '' AND ipmi_port = ?2 AND node_id != ?3",
        &[&n.ipmi_address, &n.ipmi_port, id],
    )? {
        let value = format!("{}:{}", n.ipmi_address, n.ipmi_port);
        return Ok(taken("ipmi_network_address:ipmi_port", value, other));
    }
    let endpoint = n.bmc_endpoint();
    if endpoint.is_empty() {
        // IPMI or no BMC: checked above.
    } else if let Some(other) = holder(
        "SELECT node_id FROM bm_nodes WHERE bmc_endpoint = ?1 AND bmc_endpoint != '' AND node_id != ?2",
        &[&endpoint, id],
    )? {
        return Ok(taken("bmc_address", n.bmc_address.clone(), other));
    }
    Ok(None)
}

impl Store {
    /// Inserts `nodes` all-or-nothing. A node whose PXE MAC, hostname or
    /// IPMI address+port is already taken (by a stored node or an earlier one
    /// of the batch) makes the whole call fail with a conflict naming both.
    pub async fn insert_bm_nodes(&self, nodes: Vec<BmNode>) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for (i, n) in nodes.iter().enumerate() {
                if let Some(conflict) = find_conflict(&tx, n)? {
                    return Err(StoreError::Conflict(format!(
                        "bm_nodes[{i}] (hostname {}): {conflict}; change the value or delete that node first",
                        n.hostname
                    )));
                }
                write(&tx, n, true).map_err(|e| {
                    unique_violation(e, |t| format!("bm_nodes[{i}]: duplicate value ({t})"))
                })?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Lists the nodes matching `filter` (ordered by creation) and the number
    /// of all matches before paging. A named node id that is not registered
    /// at all is an error (a typo should not look like an empty result).
    pub async fn describe_bm_nodes(
        &self,
        filter: BmNodeFilter,
    ) -> Result<(Vec<BmNode>, u64), StoreError> {
        self.fold_bm_nodes(filter, Vec::new(), |nodes, n| nodes.push(n.clone()))
            .await
    }

    /// Like [`Store::describe_bm_nodes`], but hands each matching node to
    /// `visit` on the store thread instead of collecting them: a caller that
    /// serializes 10,000 nodes keeps only its output in memory.
    pub async fn fold_bm_nodes<T, F>(
        &self,
        filter: BmNodeFilter,
        init: T,
        mut visit: F,
    ) -> Result<(T, u64), StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut T, &BmNode) + Send + 'static,
    {
        self.call_read(move |conn| {
            let mut conds: Vec<String> = Vec::new();
            let mut args: Vec<String> = Vec::new();
            if !filter.node_ids.is_empty() {
                let marks: Vec<String> = filter
                    .node_ids
                    .iter()
                    .map(|id| {
                        args.push(id.clone());
                        format!("?{}", args.len())
                    })
                    .collect();
                conds.push(format!("node_id IN ({})", marks.join(", ")));
            }
            if let Some(s) = filter.status {
                args.push(s.as_str().to_string());
                conds.push(format!("status = ?{}", args.len()));
            }
            if let Some(s) = filter.pre_status {
                args.push(s.as_str().to_string());
                conds.push(format!("pre_status = ?{}", args.len()));
            }
            if let Some(m) = filter.maintenance {
                conds.push(format!("maintenance = {}", u8::from(m)));
            }
            if !filter.node_ids.is_empty() {
                let mut stmt = conn.prepare_cached("SELECT 1 FROM bm_nodes WHERE node_id = ?1")?;
                for id in &filter.node_ids {
                    if !stmt.exists([id])? {
                        return Err(StoreError::NotFound(format!(
                            "node {id} is not registered: list the registered nodes with DescribeBMNodes without node_ids"
                        )));
                    }
                }
            }
            let where_ = if conds.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conds.join(" AND "))
            };
            let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
            let sql = format!(
                "SELECT {COLUMNS} FROM bm_nodes {where_} ORDER BY seq LIMIT {limit} OFFSET {}",
                filter.offset
            );
            let mut acc = init;
            let mut visited = 0u64;
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            while let Some(row) = rows.next()? {
                visit(&mut acc, &from_row(row)?);
                visited += 1;
            }
            let total = if filter.offset == 0 && filter.limit.is_none_or(|l| visited < l) {
                visited // every match was visited: no need to count again
            } else {
                let n: i64 = conn.query_row(
                    &format!("SELECT COUNT(*) FROM bm_nodes {where_}"),
                    params_from_iter(args.iter()),
                    |r| r.get(0),
                )?;
                n as u64
            };
            Ok((acc, total))
        })
        .await
    }

    /// Deletes `node_ids`, all or none: an unknown id fails the call, a node
    /// with work under way never goes, nor an `active` one (rackboot would
    /// lose track of a running machine) unless `force`.
    pub async fn delete_bm_nodes(
        &self,
        node_ids: Vec<String>,
        force: bool,
    ) -> Result<Vec<String>, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for id in &node_ids {
                let status: Option<String> = tx
                    .query_row("SELECT status FROM bm_nodes WHERE node_id = ?1", [id], |r| r.get(0))
                    .optional()?;
                match status.as_deref().map(BmNodeStatus::parse) {
                    None => {
                        return Err(StoreError::NotFound(format!(
                            "node {id} is not registered: check the id with DescribeBMNodes; nothing was deleted"
                        )))
                    }
                    Some(Some(st)) if st.is_busy() => {
                        return Err(StoreError::WrongState(format!(
                            "node {id} is {}: wait for its work to end (or abort it); nothing was deleted",
                            st.as_str()
                        )))
                    }
                    Some(Some(BmNodeStatus::Active)) if !force => {
                        return Err(StoreError::WrongState(format!(
                            "node {id} is active: it runs an installed OS, and deleting it would lose track of that machine; unprovision it first, or send force 1; nothing was deleted"
                        )))
                    }
                    Some(_) => {}
                }
                tx.execute("DELETE FROM bm_nodes WHERE node_id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(node_ids)
        })
        .await
    }

    /// Applies `change` to the stored node in one transaction. `change` gets
    /// the current record and returns an error text (a bad parameter) to
    /// refuse; uniqueness is then checked against the other nodes.
    pub async fn modify_bm_node<F>(&self, node_id: &str, change: F) -> Result<BmNode, StoreError>
    where
        F: FnOnce(&mut BmNode) -> Result<(), StoreError> + Send + 'static,
    {
        let node_id = node_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let current = tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM bm_nodes WHERE node_id = ?1"
                ))?
                .query_row([&node_id], from_row)
                .optional()?;
            let Some(mut node) = current else {
                return Err(StoreError::NotFound(format!(
                    "node {node_id} is not registered: check the id with DescribeBMNodes"
                )));
            };
            change(&mut node)?;
            node.update_time = now_secs();
            if let Some(conflict) = find_conflict(&tx, &node)? {
                return Err(StoreError::Conflict(format!(
                    "node {node_id}: {conflict}; nothing was changed"
                )));
            }
            write(&tx, &node, false).map_err(|e| {
                unique_violation(e, |t| format!("node {node_id}: duplicate value ({t})"))
            })?;
            tx.commit()?;
            Ok(node)
        })
        .await
    }

    /// Records a power state read from (or set through) the BMC, and that
    /// the BMC answered: clears its failure count. Returns whether the node
    /// was marked unreachable before (it has just come back).
    pub async fn record_power_state(
        &self,
        node_id: &str,
        state: PowerState,
        at: i64,
    ) -> Result<bool, StoreError> {
        let node_id = node_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let was_unreachable: Option<bool> = tx
                .query_row("SELECT bmc_reachable = 0 FROM bm_nodes WHERE node_id = ?1", [&node_id], |r| r.get(0))
                .optional()?;
            tx.execute(
                "UPDATE bm_nodes SET power_state = ?2, power_state_time = ?3, bmc_reachable = 1, bmc_failures = 0
                 WHERE node_id = ?1",
                params![node_id, state.as_str(), at],
            )?;
            tx.commit()?;
            Ok(was_unreachable.unwrap_or(false))
        })
        .await
    }

    /// Records a failed poll; after `threshold` failures in a row the node is
    /// marked unreachable and its power state unknown. Returns true exactly
    /// when this call crossed the threshold (so one message is recorded, not
    /// one per poll).
    pub async fn record_bmc_failure(
        &self,
        node_id: &str,
        threshold: u32,
        at: i64,
    ) -> Result<bool, StoreError> {
        let node_id = node_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let row: Option<(u32, bool)> = tx
                .query_row(
                    "SELECT bmc_failures, bmc_reachable FROM bm_nodes WHERE node_id = ?1",
                    [&node_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((failures, reachable)) = row else {
                return Ok(false);
            };
            let failures = failures.saturating_add(1);
            let crossed = reachable && failures >= threshold;
            if crossed {
                tx.execute(
                    "UPDATE bm_nodes SET bmc_failures = ?2, bmc_reachable = 0, power_state = 'unknown', power_state_time = ?3
                     WHERE node_id = ?1",
                    params![node_id, failures, at],
                )?;
            } else {
                tx.execute("UPDATE bm_nodes SET bmc_failures = ?2 WHERE node_id = ?1", params![node_id, failures])?;
            }
            tx.commit()?;
            Ok(crossed)
        })
        .await
    }
}
