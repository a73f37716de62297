//! Hardware inventory of a host from the outputs of standard commands
//! (`lscpu -J`, `lsblk -J -b`, `ip -j -d addr`, `ip -j route`,
//! `/proc/meminfo`, `/etc/os-release`, `uname -r`, `hostname`,
//! `/etc/machine-id`, the `/dev/disk/by-id` links). Plain functions: a
//! missing or odd output gives a partial inventory and a note naming the
//! part, never a failure.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The commands collection runs, by part name. Their outputs feed [`parse`].
pub const COMMANDS: &[(&str, &str)] = &[
    ("lscpu", "lscpu -J"),
    (
        "lsblk",
        "lsblk -J -b -o NAME,KNAME,SIZE,TYPE,ROTA,TRAN,MOUNTPOINT,PKNAME",
    ),
    // Optional: hosts without /dev/disk/by-id (some VMs) have no stable names.
    (
        "by_id",
        "find /dev/disk/by-id -maxdepth 1 -type l -printf '%f %l\\n' 2>/dev/null || true",
    ),
    ("ip_addr", "ip -j -d addr"),
    ("ip_route", "ip -j route"),
    ("meminfo", "cat /proc/meminfo"),
    ("os_release", "cat /etc/os-release"),
    ("uname", "uname -r"),
    ("hostname", "hostname"),
    ("machine_id", "cat /etc/machine-id"),
];

/// Raw command outputs by part name (absent: the command failed).
pub type Outputs = HashMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub cpu_arch: String,
    pub cpu_cores: u32,
    pub cpu_model: String,
    pub cpu_processors: u32,
    pub cpu_sockets: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Os {
    pub kernel_version: String,
    pub os_name: String,
    pub os_version: String,
}

/// A disk in the seed's shape (without the ids the store assigns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// The by-id name (e.g. `virtio-vol-z7lv8fbw`), else the kernel name.
    pub id: String,
    pub name: String,
    /// Decimal GB, one decimal.
    pub size: f64,
    /// ssd, sata, hdd or nvme.
    #[serde(rename = "type")]
    pub kind: String,
    /// 0 = the OS disk or not used for data, 1 = a data disk.
    pub status: i64,
    pub root_part: String,
    pub root_size: f64,
    pub swap_part: String,
    pub swap_size: f64,
    pub rest_part: String,
    pub rest_size: f64,
    /// Holds the root file system.
    #[serde(default)]
    pub is_os: bool,
}

/// A network interface in the seed's shape (without ids).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Net {
    pub name: String,
    /// common, bond, vlan or bridge.
    #[serde(rename = "type")]
    pub kind: String,
    pub mac_address: String,
    pub address: String,
    pub netmask: String,
    pub network: String,
    pub gateway: String,
    pub bond_mode: String,
    /// Comma-separated members of a bond or bridge.
    pub slave_devices: String,
    /// The device under a VLAN, or the first member of a bond or bridge.
    pub raw_device: String,
    pub vlan_id: String,
}

/// What collection learned of a host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub hostname: String,
    pub machine_id: String,
    pub cpu: Cpu,
    /// GiB, one decimal.
    pub memory_size: f64,
    pub os: Os,
    pub disks: Vec<Disk>,
    /// Interfaces with an IPv4 address (the seed's `networks`).
    pub networks: Vec<Net>,
    /// Every interface by name, for `raw_device_info`.
    pub devices: Vec<Net>,
    /// Parts that could not be read, one note each.
    pub missing: Vec<String>,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn flatten_lscpu(items: &[Value], out: &mut HashMap<String, String>) {
    for item in items {
        if let (Some(f), Some(d)) = (item["field"].as_str(), item["data"].as_str()) {
            out.insert(f.trim_end_matches(':').to_string(), d.to_string());
        }
        if let Some(children) = item["children"].as_array() {
            flatten_lscpu(children, out);
        }
    }
}

fn parse_cpu(text: &str) -> Option<Cpu> {
    let v: Value = serde_json::from_str(text).ok()?;
    let mut f = HashMap::new();
    flatten_lscpu(v["lscpu"].as_array()?, &mut f);
    let num = |k: &str| f.get(k).and_then(|s| s.trim().parse::<u32>().ok());
    let processors = num("CPU(s)")?;
    let sockets = num("Socket(s)").unwrap_or(1).max(1);
    let cores = num("Core(s) per socket")
        .map(|c| c * sockets)
        .unwrap_or(processors);
    Some(Cpu {
        cpu_arch: f.get("Architecture").cloned().unwrap_or_default(),
        cpu_cores: cores,
        cpu_model: f.get("Model name").cloned().unwrap_or_default(),
        cpu_processors: processors,
        cpu_sockets: sockets,
    })
}

fn parse_meminfo(text: &str) -> Option<f64> {
    let kb: f64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(round1(kb / 1024.0 / 1024.0))
}

fn parse_os_release(text: &str) -> (String, String) {
    let mut m = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            m.insert(k.trim(), v.trim().trim_matches('"').to_string());
        }
    }
    let name = m
        .get("VERSION_CODENAME")
        .filter(|s| !s.is_empty())
        .or_else(|| m.get("ID"))
        .cloned()
        .unwrap_or_default();
    (name, m.get("VERSION_ID").cloned().unwrap_or_default())
}

fn by_id_map(text: &str) -> HashMap<String, String> {
    // Prefer the most descriptive link: not wwn-/eui./nvme-eui., shortest.
    let mut best: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let Some((link, target)) = line.split_once(' ') else {
            continue;
        };
        let kname = target.rsplit('/').next().unwrap_or("").to_string();
        let generic =
            link.starts_with("wwn-") || link.contains("eui.") || link.starts_with("nvme-nvme.");
        let better = match best.get(&kname) {
            None => true,
            Some(cur) => {
                let cur_generic = cur.starts_with("wwn-")
                    || cur.contains("eui.")
                    || cur.starts_with("nvme-nvme.");
                (cur_generic && !generic) || (cur_generic == generic && link.len() < cur.len())
            }
        };
        if better {
            best.insert(kname, link.to_string());
        }
    }
    best
}

fn gb(bytes: &Value) -> f64 {
    let b = bytes
        .as_f64()
        .or_else(|| bytes.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0.0);
    round1(b / 1e9)
}

fn rota(v: &Value) -> bool {
    v.as_bool()
        .unwrap_or_else(|| v.as_str() == Some("1") || v.as_i64() == Some(1))
}

fn collect_parts<'a>(dev: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(children) = dev["children"].as_array() {
        for c in children {
            out.push(c);
            collect_parts(c, out);
        }
    }
}

fn parse_disks(text: &str, by_id: &HashMap<String, String>) -> Option<Vec<Disk>> {
    let v: Value = serde_json::from_str(text).ok()?;
    let mut disks = Vec::new();
    for dev in v["blockdevices"].as_array()? {
        let name = dev["name"].as_str().unwrap_or_default().to_string();
        if dev["type"].as_str() != Some("disk")
            || ["zram", "loop", "ram", "nbd"]
                .iter()
                .any(|p| name.starts_with(p))
            || gb(&dev["size"]) == 0.0
        {
            continue;
        }
        let kname = dev["kname"].as_str().unwrap_or(&name).to_string();
        let tran = dev["tran"].as_str().unwrap_or("");
        let kind = if name.starts_with("nvme") || tran == "nvme" {
            "nvme"
        } else if !rota(&dev["rota"]) {
            "ssd"
        } else if tran == "sata" {
            "sata"
        } else {
            "hdd"
        };
        let mut disk = Disk {
            id: by_id.get(&kname).cloned().unwrap_or_else(|| kname.clone()),
            name: name.clone(),
            size: gb(&dev["size"]),
            kind: kind.to_string(),
            ..Disk::default()
        };
        let mut parts = Vec::new();
        collect_parts(dev, &mut parts);
        if dev["mountpoint"].as_str() == Some("/") {
            disk.root_part = name.clone();
            disk.root_size = disk.size;
        }
        let mut rest: Option<(&str, f64)> = None;
        for p in &parts {
            let pname = p["name"].as_str().unwrap_or_default();
            match p["mountpoint"].as_str() {
                Some("/") => {
                    disk.root_part = pname.to_string();
                    disk.root_size = gb(&p["size"]);
                }
                Some("[SWAP]") => {
                    disk.swap_part = pname.to_string();
                    disk.swap_size = gb(&p["size"]);
                }
                Some(m) if m.starts_with("/boot") => {}
                _ if p["type"].as_str() == Some("part") => {
                    let size = gb(&p["size"]);
                    if rest.is_none_or(|(_, s)| size > s) {
                        rest = Some((pname, size));
                    }
                }
                _ => {}
            }
        }
        if let Some((n, s)) = rest {
            disk.rest_part = n.to_string();
            disk.rest_size = s;
        }
        disk.is_os = !disk.root_part.is_empty();
        disk.status = if disk.is_os { 0 } else { 1 };
        disks.push(disk);
    }
    Some(disks)
}

fn netmask(prefix: u32) -> String {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    std::net::Ipv4Addr::from(bits).to_string()
}

fn parse_networks(addr_text: &str, route_text: Option<&str>) -> Option<(Vec<Net>, Vec<Net>)> {
    let v: Value = serde_json::from_str(addr_text).ok()?;
    let ifaces = v.as_array()?;
    let mut gateways: HashMap<String, String> = HashMap::new();
    if let Some(r) = route_text.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        for route in r.as_array().into_iter().flatten() {
            if route["dst"].as_str() == Some("default") {
                if let (Some(dev), Some(gw)) = (route["dev"].as_str(), route["gateway"].as_str()) {
                    gateways.insert(dev.to_string(), gw.to_string());
                }
            }
        }
    }
    let members = |master: &str| -> Vec<String> {
        ifaces
            .iter()
            .filter(|i| i["master"].as_str() == Some(master))
            .filter_map(|i| i["ifname"].as_str().map(str::to_string))
            .collect()
    };
    let mut devices = Vec::new();
    let mut networks = Vec::new();
    for i in ifaces {
        let name = i["ifname"].as_str().unwrap_or_default().to_string();
        if name == "lo" || i["link_type"].as_str() == Some("loopback") {
            continue;
        }
        let kind_raw = i["linkinfo"]["info_kind"].as_str().unwrap_or("");
        let kind = match kind_raw {
            "bond" | "vlan" | "bridge" => kind_raw,
            _ => "common",
        };
        let slaves = if kind == "bond" || kind == "bridge" {
            members(&name)
        } else {
            Vec::new()
        };
        let raw_device = match kind {
            "vlan" => i["link"].as_str().unwrap_or_default().to_string(),
            "bond" | "bridge" => slaves.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let mut net = Net {
            name: name.clone(),
            kind: kind.to_string(),
            mac_address: i["address"].as_str().unwrap_or_default().to_string(),
            bond_mode: if kind == "bond" {
                i["linkinfo"]["info_data"]["mode"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            } else {
                String::new()
            },
            slave_devices: slaves.join(","),
            raw_device,
            vlan_id: if kind == "vlan" {
                i["linkinfo"]["info_data"]["id"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            },
            gateway: gateways.get(&name).cloned().unwrap_or_default(),
            ..Net::default()
        };
        devices.push(net.clone());
        if let Some(a) = i["addr_info"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["family"].as_str() == Some("inet")))
        {
            let local = a["local"].as_str().unwrap_or_default();
            let prefix = a["prefixlen"].as_u64().unwrap_or(32) as u32;
            net.address = local.to_string();
            net.netmask = netmask(prefix);
            if let Ok(ip) = local.parse::<std::net::Ipv4Addr>() {
                let mask: std::net::Ipv4Addr =
                    net.netmask.parse().unwrap_or(std::net::Ipv4Addr::BROADCAST);
                net.network = format!(
                    "{}/{prefix}",
                    std::net::Ipv4Addr::from(u32::from(ip) & u32::from(mask))
                );
            }
            networks.push(net);
        }
    }
    Some((networks, devices))
}

/// Builds the inventory from whatever outputs are there.
pub fn parse(outputs: &Outputs) -> Inventory {
    let mut inv = Inventory::default();
    let get = |k: &str| {
        outputs
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let missing = inv_missing;
    match get("lscpu").and_then(parse_cpu) {
        Some(c) => inv.cpu = c,
        None => inv
            .missing
            .push(missing("cpu", "lscpu -J gave no usable output")),
    }
    match get("meminfo").and_then(parse_meminfo) {
        Some(m) => inv.memory_size = m,
        None => inv
            .missing
            .push(missing("memory", "/proc/meminfo has no MemTotal")),
    }
    let by_id = get("by_id").map(by_id_map).unwrap_or_default();
    match get("lsblk").and_then(|t| parse_disks(t, &by_id)) {
        Some(d) => inv.disks = d,
        None => inv
            .missing
            .push(missing("disks", "lsblk -J -b gave no usable output")),
    }
    match get("ip_addr").and_then(|t| parse_networks(t, get("ip_route"))) {
        Some((n, d)) => {
            inv.networks = n;
            inv.devices = d;
        }
        None => inv
            .missing
            .push(missing("networks", "ip -j -d addr gave no usable output")),
    }
    match get("os_release") {
        Some(t) => (inv.os.os_name, inv.os.os_version) = parse_os_release(t),
        None => inv
            .missing
            .push(missing("os", "/etc/os-release is missing")),
    }
    inv.os.kernel_version = get("uname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    inv.hostname = get("hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    inv.machine_id = get("machine_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    for (part, value) in [
        ("kernel", &inv.os.kernel_version),
        ("hostname", &inv.hostname),
    ] {
        if value.is_empty() {
            inv.missing
                .push(inv_missing(part, "its command gave no output"));
        }
    }
    inv
}

fn inv_missing(part: &str, why: &str) -> String {
    format!("{part}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &str) -> Outputs {
        let base = format!("{}/tests/data/inventory/{dir}", env!("CARGO_MANIFEST_DIR"));
        let files = [
            ("lscpu", "lscpu.json"),
            ("lsblk", "lsblk.json"),
            ("by_id", "by-id"),
            ("ip_addr", "ip-addr.json"),
            ("ip_route", "ip-route.json"),
            ("meminfo", "meminfo"),
            ("os_release", "os-release"),
            ("uname", "uname"),
            ("hostname", "hostname"),
            ("machine_id", "machine-id"),
        ];
        files
            .iter()
            .filter_map(|(k, f)| {
                std::fs::read_to_string(format!("{base}/{f}"))
                    .ok()
                    .map(|t| (k.to_string(), t))
            })
            .collect()
    }

    #[test]
    fn a_server_with_a_bond_a_vlan_and_nvme() {
        let inv = parse(&load("bond-vlan-nvme"));
        assert!(inv.missing.is_empty(), "{:?}", inv.missing);
        assert_eq!(
            inv.cpu,
            Cpu {
                cpu_arch: "x86_64".into(),
                cpu_cores: 48,
                cpu_model: "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz".into(),
                cpu_processors: 96,
                cpu_sockets: 2
            }
        );
        assert_eq!(inv.memory_size, 377.6);
        assert_eq!(
            (inv.os.os_name.as_str(), inv.os.os_version.as_str()),
            ("jammy", "22.04")
        );
        assert_eq!(inv.disks.len(), 3, "the CD-ROM is not a disk");
        let nvme = &inv.disks[0];
        assert_eq!(
            (
                nvme.kind.as_str(),
                nvme.root_part.as_str(),
                nvme.rest_part.as_str()
            ),
            ("nvme", "nvme0n1p2", "nvme0n1p3")
        );
        assert_eq!(nvme.id, "nvme-SAMSUNG_MZQL21T9HCJR-00A07_S64GNE0R123456");
        assert!(nvme.is_os && nvme.swap_part.is_empty() && nvme.status == 0);
        assert_eq!(
            (
                inv.disks[1].kind.as_str(),
                inv.disks[1].size,
                inv.disks[1].status
            ),
            ("sata", 4000.8, 1)
        );
        assert_eq!(inv.disks[1].id, "ata-ST4000NM0035-1V4107_ZC1ABCDE");
        assert_eq!(inv.disks[2].kind, "ssd");
        let bond = inv.networks.iter().find(|n| n.name == "bond0").unwrap();
        assert_eq!(
            (
                bond.kind.as_str(),
                bond.bond_mode.as_str(),
                bond.slave_devices.as_str()
            ),
            ("bond", "802.3ad", "ens3f0,ens3f1")
        );
        assert_eq!(
            (
                bond.netmask.as_str(),
                bond.network.as_str(),
                bond.gateway.as_str()
            ),
            ("255.255.255.0", "172.31.11.0/24", "172.31.11.254")
        );
        let vlan = inv.networks.iter().find(|n| n.name == "bond0.110").unwrap();
        assert_eq!(
            (
                vlan.kind.as_str(),
                vlan.raw_device.as_str(),
                vlan.vlan_id.as_str()
            ),
            ("vlan", "bond0", "110")
        );
        assert_eq!(inv.networks.len(), 2);
        assert_eq!(inv.devices.len(), 4);
    }

    #[test]
    fn a_bridge_over_a_port_captured_in_a_namespace() {
        let inv = parse(&load("bridge"));
        let br = inv.networks.iter().find(|n| n.name == "br0").unwrap();
        assert_eq!(
            (
                br.kind.as_str(),
                br.raw_device.as_str(),
                br.slave_devices.as_str()
            ),
            ("bridge", "eth0", "eth0")
        );
        assert_eq!(
            (
                br.address.as_str(),
                br.gateway.as_str(),
                br.mac_address.as_str()
            ),
            ("172.16.80.3", "172.16.80.1", "52:54:65:0a:6f:6f")
        );
        let eth1 = inv.networks.iter().find(|n| n.name == "eth1").unwrap();
        assert_eq!(
            (eth1.kind.as_str(), eth1.network.as_str()),
            ("common", "10.9.0.0/16")
        );
        // Only the network parts were captured: the rest is named as missing.
        assert!(inv.missing.iter().any(|m| m.starts_with("cpu")));
        assert!(inv.missing.iter().any(|m| m.starts_with("disks")));
    }

    #[test]
    fn this_vm_a_whole_disk_root_and_no_swap() {
        let inv = parse(&load("this-vm"));
        assert!(inv.missing.is_empty(), "{:?}", inv.missing);
        assert_eq!(
            inv.disks.len(),
            1,
            "zram0 of size 0 is skipped: {:?}",
            inv.disks
        );
        assert_eq!(
            (
                inv.disks[0].root_part.as_str(),
                inv.disks[0].swap_part.as_str()
            ),
            ("vda", "")
        );
        assert!(inv.cpu.cpu_processors >= 1);
    }

    #[test]
    fn garbage_gives_a_partial_inventory() {
        let mut o = Outputs::new();
        o.insert("lscpu".into(), "not json".into());
        o.insert("lsblk".into(), "{\"blockdevices\": 5}".into());
        o.insert("ip_addr".into(), "[{\"ifname\": 3}]".into());
        o.insert("meminfo".into(), "MemTotal: lots".into());
        let inv = parse(&o);
        assert!(inv.missing.len() >= 4, "{:?}", inv.missing);
    }
}
