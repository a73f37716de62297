//! The inventory the deploy ramdisk reports (`POST …/inventory`), and what
//! is taken from it into the node's record. The raw JSON is stored as sent
//! (GetIntrospectionData returns it); [`process`] reads the known parts,
//! ignoring what it does not know:
//!
//! ```json
//! {"system": {"vendor": "QEMU", "product": "Standard PC", "serial": "…"},
//!  "cpu": {"count": 2, "model": "…"}, "memory": {"total_kib": 262144},
//!  "disks": [{"name": "sda", "size_bytes": 8589934592, "serial": "S1",
//!             "wwn": "0x5000c500…", "model": "…", "vendor": "…",
//!             "rotational": false, "by_path": "pci-0000:00:1f.2-ata-1.0",
//!             "driver": "ahci"}],
//!  "nics": [{"name": "eth0", "mac": "52:54:00:99:00:20", "driver": "e1000e",
//!            "speed_mbps": 1000, "link": true}],
//!  "boot_mode": "uefi", "secure_boot": true, "uptime_s": 9.8}
//! ```

use crate::foundation::hints::Disk;
use crate::foundation::store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

/// What rackboot understood of an inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Processed {
    pub vendor: String,
    pub product: String,
    pub serial: String,
    pub cpu_count: u64,
    pub memory_mib: u64,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    /// `uefi` or `bios`: how the ramdisk booted ("" when not said).
    pub boot_mode: String,
    /// Whether Secure Boot was on (`None` when not said).
    pub secure_boot: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    pub driver: String,
    pub speed_mbps: u64,
    pub link: bool,
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Reads the known parts of `raw`.
pub fn process(raw: &Value) -> Processed {
    let list = |key: &str| raw[key].as_array().cloned().unwrap_or_default();
    Processed {
        vendor: text(raw, &["system", "vendor"]),
        product: text(raw, &["system", "product"]),
        serial: text(raw, &["system", "serial"]),
        cpu_count: raw["cpu"]["count"].as_u64().unwrap_or(0),
        memory_mib: raw["memory"]["total_kib"].as_u64().unwrap_or(0) / 1024,
        disks: list("disks")
            .iter()
            .filter_map(|d| {
                Some(Disk {
                    name: text(d, &["name"]).chars().take(32).collect(),
                    size_bytes: d["size_bytes"].as_u64()?,
                    serial: text(d, &["serial"]),
                    wwn: text(d, &["wwn"]),
                    model: text(d, &["model"]),
                    vendor: text(d, &["vendor"]),
                    rotational: d["rotational"].as_bool().unwrap_or(false),
                    by_path: text(d, &["by_path"]),
                })
            })
            .filter(|d| {
                !d.name.is_empty()
                    && d.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
            })
            .take(256)
            .collect(),
        nics: list("nics")
            .iter()
            .filter_map(|n| {
                Some(Nic {
                    name: text(n, &["name"]).chars().take(32).collect(),
                    mac: crate::foundation::validate::mac(&text(n, &["mac"])).ok()?,
                    driver: text(n, &["driver"]).chars().take(32).collect(),
                    speed_mbps: n["speed_mbps"].as_u64().unwrap_or(0),
                    link: n["link"].as_bool().unwrap_or(false),
                })
            })
            .take(256)
            .collect(),
        boot_mode: match raw["boot_mode"].as_str() {
            Some(m @ ("uefi" | "bios")) => m.to_string(),
            _ => String::new(),
        },
        secure_boot: raw["secure_boot"].as_bool(),
    }
}

/// Takes the inventory's serial number and vendor into the node's
/// `serial_number` and `brand` (when it has them); returns the fields
/// changed.
pub async fn apply(store: &Store, node_id: &str, raw: &Value) -> Result<Vec<String>, StoreError> {
    let p = process(raw);
    let mut changed = Vec::new();
    let (serial, vendor, secure_boot) = (p.serial.clone(), p.vendor.clone(), p.secure_boot);
    let node = store
        .modify_bm_node(node_id, move |n| {
            if !serial.is_empty() {
                n.serial_number = serial;
            }
            if !vendor.is_empty() {
                n.brand = vendor;
            }
            if secure_boot.is_some() {
                n.secure_boot = secure_boot;
            }
            Ok(())
        })
        .await?;
    if !p.serial.is_empty() && node.serial_number == p.serial {
        changed.push("serial_number".to_string());
    }
    if !p.vendor.is_empty() && node.brand == p.vendor {
        changed.push("brand".to_string());
    }
    Ok(changed)
}

/// The seed-§1 inventory of a freshly provisioned node, from what its
/// deploy ramdisk reported (the OS is the image's; the OS disk is the one
/// the image went to).
pub fn as_node_inventory(
    node: &crate::foundation::store::BmNode,
    raw: &Value,
) -> crate::foundation::inventory::Inventory {
    let p = process(raw);
    let gb = |b: u64| ((b as f64 / 1e9) * 10.0).round() / 10.0;
    // The disk the image went to: the same choice the deploy made.
    let os_disk = crate::foundation::hints::choose(&node.hints(), &p.disks)
        .map(|(d, _)| d.name.clone())
        .unwrap_or_else(|_| node.os_disk_name.clone());
    crate::foundation::inventory::Inventory {
        hostname: node.hostname.clone(),
        cpu: crate::foundation::inventory::Cpu {
            cpu_arch: node.cpu_arch.clone(),
            cpu_processors: p.cpu_count as u32,
            cpu_cores: p.cpu_count as u32,
            cpu_sockets: u32::from(p.cpu_count > 0),
            cpu_model: text(raw, &["cpu", "model"]),
        },
        memory_size: ((p.memory_mib as f64 / 1024.0) * 10.0).round() / 10.0,
        os: crate::foundation::inventory::Os {
            os_name: node.os_version.clone(),
            ..Default::default()
        },
        disks: p
            .disks
            .iter()
            .map(|d| crate::foundation::inventory::Disk {
                id: d.name.clone(),
                name: d.name.clone(),
                size: gb(d.size_bytes),
                kind: "hdd".into(),
                status: i64::from(d.name != os_disk),
                is_os: d.name == os_disk,
                ..Default::default()
            })
            .collect(),
        devices: p
            .nics
            .iter()
            .map(|n| crate::foundation::inventory::Net {
                name: n.name.clone(),
                kind: "common".into(),
                mac_address: n.mac.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Makes the active BMNode `node` appear as a Node (seed 002 §1) linked to
/// it (`bm_node_id`), with the inventory its ramdisk reported; updates the
/// Node when one is linked already. Its address: the management address
/// when registered, else the address its PXE MAC leased.
/// Drops the Node (seed §1) linked to `node`, if any: its OS was wiped.
pub async fn unlink_node(
    store: &Store,
    node: &crate::foundation::store::BmNode,
) -> Result<(), StoreError> {
    let ids: Vec<String> = store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| n.bm_node_id == node.node_id)
        .map(|n| n.node_id)
        .collect();
    if !ids.is_empty() {
        store.delete_nodes(ids).await?;
    }
    Ok(())
}

pub async fn link_node(
    store: &Store,
    node: &crate::foundation::store::BmNode,
) -> Result<String, StoreError> {
    let raw = store
        .inventory(&node.node_id)
        .await?
        .map(|(r, _)| r)
        .unwrap_or_default();
    let raw: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let inventory =
        serde_json::to_string(&as_node_inventory(node, &raw)).unwrap_or_else(|_| "{}".into());
    let existing = store
        .list_nodes()
        .await?
        .into_iter()
        .find(|n| n.bm_node_id == node.node_id);
    if let Some(n) = existing {
        store
            .modify_node(&n.node_id, move |m| {
                m.inventory = inventory;
                Ok(())
            })
            .await?;
        return Ok(n.node_id);
    }
    let address = if !node.mgmt.address.is_empty() {
        node.mgmt.address.clone()
    } else {
        store
            .ip_of_lease(node.pxe_mac.clone())
            .await?
            .unwrap_or_default()
    };
    if address.is_empty() {
        return Err(StoreError::Invalid(format!(
            "node {} has no management address and no lease: it cannot be listed as a Node",
            node.node_id
        )));
    }
    let now = crate::foundation::ids::now_secs();
    let new = crate::foundation::store::Node {
        node_id: crate::foundation::ids::new_id(crate::foundation::ids::NODE_PREFIX),
        address,
        port: 22,
        hostname: node.hostname.clone(),
        role: String::new(),
        sub_roles: Vec::new(),
        product_type: String::new(),
        product_name: String::new(),
        zone_id: String::new(),
        description: format!("provisioned as BMNode {}", node.node_id),
        status: crate::foundation::store::NodeStatus::Available,
        pre_status: None,
        machine_id: String::new(),
        host_key: String::new(),
        bm_node_id: node.node_id.clone(),
        inventory,
        create_time: now,
        update_time: now,
    };
    let id = new.node_id.clone();
    store.insert_nodes(vec![new]).await?;
    Ok(id)
}

/// Discovery: enlists the unknown machine `mac` that network-booted the
/// discovery script and sent `raw`, as a `new` BMNode without a BMC (the
/// operator adds its BMC and os_version with ModifyBMNodeAttributes to
/// provision it). Returns its node id, and whether it was created now (a
/// machine already registered under that MAC is left as it is).
pub async fn enlist(store: &Store, mac: &str, raw: &Value) -> Result<(String, bool), StoreError> {
    if let Some(n) = store
        .nodes_by_pxe_macs(vec![mac.to_string()])
        .await?
        .get(mac)
    {
        return Ok((n.node_id.clone(), false));
    }
    let p = process(raw);
    let mut node = crate::foundation::store::BmNode::blank();
    node.node_id = crate::foundation::ids::new_id(crate::foundation::ids::NODE_PREFIX);
    node.hostname = format!("discovered-{}", mac.replace(':', ""));
    node.cpu_arch = "x86_64".into();
    node.pxe_mac = mac.to_string();
    node.serial_number = p.serial.clone();
    node.brand = p.vendor.clone();
    node.os_disk_name = p.disks.first().map(|d| d.name.clone()).unwrap_or_default();
    node.description = "enlisted by discovery: set its BMC (ipmi_*) and os_version with ModifyBMNodeAttributes to provision it".into();
    let now = crate::foundation::ids::now_secs();
    node.create_time = now;
    node.update_time = now;
    let id = node.node_id.clone();
    store.insert_bm_nodes(vec![node]).await?;
    store.save_inventory(&id, raw.to_string()).await?;
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_parts_are_read_and_the_rest_ignored() {
        let raw: Value = serde_json::json!({
            "system": {"vendor": "QEMU\n", "product": "Standard PC", "serial": "S123"},
            "cpu": {"count": 2, "model": "x"},
            "memory": {"total_kib": 262144},
            "disks": [{"name": "vda", "size_bytes": 1073741824u64}, {"name": "", "size_bytes": 1}, {"name": "sr0"}],
            "nics": [{"name": "eth0", "mac": "52:54:00:99:00:20"}, {"name": "lo", "mac": "00:00:00:00:00:00x"}],
            "extra": [1, 2, 3]
        });
        let p = process(&raw);
        assert_eq!(p.vendor, "QEMU");
        assert_eq!((p.cpu_count, p.memory_mib), (2, 256));
        assert_eq!(
            p.disks,
            vec![Disk {
                name: "vda".into(),
                size_bytes: 1 << 30,
                ..Default::default()
            }]
        );
        assert_eq!(p.nics.len(), 1);
        assert_eq!(p.nics[0].mac, "52:54:00:99:00:20");
        assert_eq!(process(&Value::Null), Processed::default());
    }
}
