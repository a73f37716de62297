//! What the machine is, read from sysfs, procfs and efivarfs, in the JSON
//! shape rackboot stores (`pxe-templates/README.md`, "inventory"):
//! system, cpu, memory, disks (name, size, serial, WWN, model, vendor,
//! rotational, udev-style by-path name), NICs (name, MAC, driver, speed,
//! link), the boot mode the ramdisk itself booted in and whether Secure
//! Boot is on. Every reader takes the root of the tree (`/` in the ramdisk,
//! a made-up tree in tests).

use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct System {
    pub vendor: String,
    pub product: String,
    pub serial: String,
    pub bios_version: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cpu {
    pub count: u64,
    pub model: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Memory {
    pub total_kib: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    pub serial: String,
    pub wwn: String,
    pub model: String,
    pub vendor: String,
    pub rotational: bool,
    pub by_path: String,
    /// The kernel driver of the controller (ahci, nvme, megaraid_sas, …).
    pub driver: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    pub driver: String,
    /// Mb/s; 0 when unknown (link down).
    pub speed_mbps: u64,
    pub link: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Inventory {
    pub system: System,
    pub cpu: Cpu,
    pub memory: Memory,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    /// `uefi` or `bios`: how this ramdisk was booted.
    pub boot_mode: String,
    pub secure_boot: bool,
    /// Seconds since the kernel started, when the inventory was taken.
    pub uptime_s: f64,
    pub agent_version: String,
    /// The BMC's LAN address, read in-band (`/dev/ipmi0`), when the
    /// machine has an IPMI system interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bmc: Option<crate::bmc::Bmc>,
}

/// A sysfs attribute as trimmed text ("" when absent).
fn attr(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
                .collect::<String>()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The basename of a symlink's target ("" when absent).
fn link_name(path: &Path) -> String {
    std::fs::read_link(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Everything, read under `root`.
pub fn collect(root: &Path) -> Inventory {
    let dmi = root.join("sys/class/dmi/id");
    let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).unwrap_or_default();
    let uptime = std::fs::read_to_string(root.join("proc/uptime")).unwrap_or_default();
    Inventory {
        system: System {
            vendor: attr(&dmi.join("sys_vendor")),
            product: attr(&dmi.join("product_name")),
            serial: attr(&dmi.join("product_serial")),
            bios_version: attr(&dmi.join("bios_version")),
        },
        cpu: Cpu {
            count: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count() as u64,
            model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default(),
        },
        memory: Memory {
            total_kib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        },
        disks: disks(root),
        nics: nics(root),
        boot_mode: if root.join("sys/firmware/efi").exists() {
            "uefi".into()
        } else {
            "bios".into()
        },
        secure_boot: secure_boot(root),
        uptime_s: uptime
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        bmc: None,
    }
}

/// Whether the firmware's `SecureBoot` variable says on (4 attribute
/// bytes, then the value).
pub fn secure_boot(root: &Path) -> bool {
    let var = root.join("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c");
    std::fs::read(var).is_ok_and(|b| b.len() >= 5 && b[4] == 1)
}

/// Block devices that can hold an OS.
pub fn disks(root: &Path) -> Vec<Disk> {
    let block = root.join("sys/block");
    let Ok(entries) = std::fs::read_dir(&block) else {
        return Vec::new();
    };
    let mut out: Vec<Disk> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let skip = ["loop", "ram", "sr", "fd", "zram", "dm-", "md", "nbd"];
            if skip.iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let dir = e.path();
            let sectors: u64 = attr(&dir.join("size")).parse().unwrap_or(0);
            if sectors == 0 {
                return None; // an empty card reader, a CD drive without media
            }
            let dev = dir.join("device");
            // virtio-blk shows it on the disk, NVMe on its controller.
            let mut serial = attr(&dir.join("serial"));
            if serial.is_empty() {
                serial = attr(&dev.join("serial"));
            }
            if serial.is_empty() {
                serial = vpd80(&dev.join("vpd_pg80")).unwrap_or_default();
            }
            if serial.is_empty() && root == Path::new("/") {
                serial =
                    crate::scsi::inquiry_serial(&Path::new("/dev").join(&name)).unwrap_or_default();
            }
            let wwid = attr(&dev.join("wwid"));
            let real = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
            Some(Disk {
                size_bytes: sectors * 512,
                serial,
                wwn: wwn_of(&wwid, &attr(&dir.join("wwid"))),
                model: attr(&dev.join("model")),
                // A SCSI device's vendor name; a virtio device's `vendor` is
                // its PCI vendor id (0x1af4), no name.
                vendor: Some(attr(&dev.join("vendor")))
                    .filter(|v| !v.starts_with("0x"))
                    .unwrap_or_default(),
                rotational: attr(&dir.join("queue/rotational")) == "1",
                by_path: by_path(&real, &root.join("sys")),
                driver: controller_driver(&real, &root.join("sys")),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The serial of a SCSI VPD page 0x80 as sysfs shows it.
fn vpd80(path: &Path) -> Option<String> {
    crate::scsi::parse_vpd80(&std::fs::read(path).ok()?)
}

/// udev's ID_WWN form: `0x` + the NAA identifier (SCSI `naa.…`); an NVMe
/// EUI-64/NGUID as `eui.…`.
fn wwn_of(device_wwid: &str, block_wwid: &str) -> String {
    let w = if device_wwid.is_empty() {
        block_wwid
    } else {
        device_wwid
    };
    if let Some(naa) = w.strip_prefix("naa.") {
        return format!("0x{}", naa.to_ascii_lowercase());
    }
    if w.starts_with("eui.") {
        return w.to_ascii_lowercase();
    }
    String::new()
}

/// The driver bound to the nearest ancestor of `dev` that has one and is
/// not a block/SCSI layer device (the controller: ahci, nvme, virtio_blk…).
fn controller_driver(dev: &Path, sys: &Path) -> String {
    let mut p = dev.to_path_buf();
    while p.starts_with(sys) && p != sys {
        let d = link_name(&p.join("driver"));
        if !d.is_empty() && d != "sd" && !d.starts_with("sd_") {
            return d;
        }
        if !p.pop() {
            break;
        }
    }
    String::new()
}

/// A PCI address component (`0000:00:1f.2`).
fn is_pci(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.'
}

/// udev's `path_id` name of the block device at `dev` (its sysfs path,
/// canonical), for the common cases: `pci-<addr>` of the controller, then
/// `-ata-<port>.0` (SATA), `-nvme-<nsid>` (NVMe), `-scsi-<c>:<t>:<l>` with
/// the host counted from the controller's first (SAS, RAID, virtio-scsi,
/// parallel SCSI), `-usb-…` left out; virtio-blk is the PCI address alone.
pub fn by_path(dev: &Path, sys: &Path) -> String {
    let rel = dev.strip_prefix(sys.join("devices")).unwrap_or(dev);
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let Some(pci_at) = parts.iter().rposition(|c| is_pci(c)) else {
        return String::new();
    };
    let mut out = format!("pci-{}", parts[pci_at]);
    let rest = &parts[pci_at + 1..];
    if let Some((i, ata)) = rest
        .iter()
        .enumerate()
        .find_map(|(i, c)| Some((i, c.strip_prefix("ata")?)))
        .filter(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        // The port number on its controller (ata_port's port_no), as udev
        // names it; the global ataN when sysfs does not say.
        let dir = sys.join("devices").join(parts[..=pci_at + 1 + i].join("/"));
        let port = attr(
            &dir.join("ata_port")
                .join(format!("ata{ata}"))
                .join("port_no"),
        );
        let port = if port.is_empty() {
            ata.to_string()
        } else {
            port
        };
        out.push_str(&format!("-ata-{port}.0"));
        return out;
    }
    if let Some(ns) = rest.iter().rev().find_map(|c| {
        let (ctrl, ns) = c.strip_prefix("nvme")?.split_once('n')?;
        (ctrl.chars().all(|c| c.is_ascii_digit()) && ns.chars().all(|c| c.is_ascii_digit()))
            .then(|| ns.to_string())
    }) {
        out.push_str(&format!("-nvme-{ns}"));
        return out;
    }
    // host<N>/target<N:C:T>/<N:C:T:L>
    let host_at = rest.iter().position(|c| {
        c.strip_prefix("host")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    if let (Some(h), Some(lun)) = (
        host_at,
        rest.iter()
            .find(|c| c.split(':').count() == 4 && c.split(':').all(|n| n.parse::<u32>().is_ok())),
    ) {
        let host: u32 = rest[h][4..].parse().unwrap_or(0);
        // Hosts of one controller are counted from its first.
        let parent = sys.join("devices").join(parts[..=pci_at + h].join("/"));
        let base = std::fs::read_dir(&parent)
            .ok()
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_prefix("host")
                            .and_then(|n| n.parse::<u32>().ok())
                    })
                    .min()
                    .unwrap_or(host)
            })
            .unwrap_or(host);
        let f: Vec<&str> = lun.split(':').collect();
        out.push_str(&format!(
            "-scsi-{}:{}:{}:{}",
            host - base.min(host),
            f[1],
            f[2],
            f[3]
        ));
    }
    out
}

/// Network interfaces (not `lo`, not virtual).
pub fn nics(root: &Path) -> Vec<Nic> {
    let net = root.join("sys/class/net");
    let Ok(entries) = std::fs::read_dir(&net) else {
        return Vec::new();
    };
    let mut out: Vec<Nic> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir: PathBuf = e.path();
            if name == "lo" || !dir.join("device").exists() {
                return None;
            }
            Some(Nic {
                mac: attr(&dir.join("address")),
                driver: link_name(&dir.join("device/driver")),
                speed_mbps: attr(&dir.join("speed"))
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .unwrap_or(0) as u64,
                link: attr(&dir.join("carrier")) == "1",
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A made-up sysfs with an AHCI disk, an NVMe namespace, a disk behind
    /// a SAS HBA, a virtio-blk disk, a CD drive and two NICs.
    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let w = |p: &str, s: &[u8]| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        let dev = |real: &str, name: &str| {
            let p = r.join("sys/devices").join(real);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::create_dir_all(r.join("sys/block")).unwrap();
            symlink(&p, r.join("sys/block").join(name)).unwrap();
            p
        };
        let drivers = r.join("sys/bus/pci/drivers");
        for drv in ["ahci", "nvme", "mpt3sas", "virtio-pci", "e1000e", "vmxnet3"] {
            std::fs::create_dir_all(drivers.join(drv)).unwrap();
        }
        let sda = dev(
            "pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda",
            "sda",
        );
        symlink(
            drivers.join("ahci"),
            r.join("sys/devices/pci0000:00/0000:00:1f.2/driver"),
        )
        .unwrap();
        symlink(sda.parent().unwrap().parent().unwrap(), sda.join("device")).unwrap();
        w(
            "sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda/size",
            b"16777216\n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/model",
            b"QEMU HARDDISK   \n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/vendor",
            b"ATA     \n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/vpd_pg80",
            b"\x00\x80\x00\x08SER-0001",
        );
        w(
            "sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/wwid",
            b"naa.5000C500ABCDEF01\n",
        );
        w("sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda/queue/rotational", b"1\n");
        let nvme = dev("pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1", "nvme0n1");
        symlink(nvme.parent().unwrap(), nvme.join("device")).unwrap();
        symlink(
            drivers.join("nvme"),
            r.join("sys/devices/pci0000:00/0000:00:05.0/driver"),
        )
        .unwrap();
        w(
            "sys/devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1/size",
            b"8388608\n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:05.0/nvme/nvme0/serial",
            b"NVME-SER-7 \n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:05.0/nvme/nvme0/model",
            b"QEMU NVMe Ctrl\n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1/queue/rotational",
            b"0\n",
        );
        let sas = dev(
            "pci0000:00/0000:00:06.0/host4/target4:2:0/4:2:0:0/block/sdb",
            "sdb",
        );
        std::fs::create_dir_all(r.join("sys/devices/pci0000:00/0000:00:06.0/host3")).unwrap();
        symlink(sas.parent().unwrap().parent().unwrap(), sas.join("device")).unwrap();
        symlink(
            drivers.join("mpt3sas"),
            r.join("sys/devices/pci0000:00/0000:00:06.0/driver"),
        )
        .unwrap();
        w(
            "sys/devices/pci0000:00/0000:00:06.0/host4/target4:2:0/4:2:0:0/block/sdb/size",
            b"33554432\n",
        );
        let vda = dev("pci0000:00/0000:00:04.0/virtio1/block/vda", "vda");
        symlink(
            drivers.join("virtio-pci"),
            r.join("sys/devices/pci0000:00/0000:00:04.0/driver"),
        )
        .unwrap();
        w(
            "sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/size",
            b"131072\n",
        );
        w(
            "sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/serial",
            b"VIRTIO-7\n",
        );
        let _ = vda;
        let sr = dev(
            "pci0000:00/0000:00:1f.2/ata4/host3/target3:0:0/3:0:0:0/block/sr0",
            "sr0",
        );
        w(
            "sys/devices/pci0000:00/0000:00:1f.2/ata4/host3/target3:0:0/3:0:0:0/block/sr0/size",
            b"100\n",
        );
        let _ = sr;
        for (name, pci, mac, drv, carrier) in [
            ("eth0", "0000:00:02.0", "52:54:00:99:20:01", "e1000e", "1"),
            ("eth1", "0000:00:03.0", "52:54:00:99:20:02", "vmxnet3", "0"),
        ] {
            let d = r.join("sys/devices/pci0000:00").join(pci);
            std::fs::create_dir_all(d.join("net").join(name)).unwrap();
            symlink(drivers.join(drv), d.join("driver")).unwrap();
            std::fs::create_dir_all(r.join("sys/class/net")).unwrap();
            symlink(d.join("net").join(name), r.join("sys/class/net").join(name)).unwrap();
            symlink(&d, d.join("net").join(name).join("device")).unwrap();
            std::fs::write(d.join("net").join(name).join("address"), format!("{mac}\n")).unwrap();
            std::fs::write(d.join("net").join(name).join("carrier"), carrier).unwrap();
            std::fs::write(
                d.join("net").join(name).join("speed"),
                if carrier == "1" { "1000" } else { "-1" },
            )
            .unwrap();
        }
        std::fs::create_dir_all(r.join("sys/class/net/lo")).unwrap();
        w(
            "proc/cpuinfo",
            b"processor\t: 0\nmodel name\t: QEMU Virtual CPU\nprocessor\t: 1\n",
        );
        w("proc/meminfo", b"MemTotal:        1012345 kB\n");
        w("proc/uptime", b"7.25 12.00\n");
        w("sys/class/dmi/id/sys_vendor", b"QEMU\n");
        w("sys/class/dmi/id/product_serial", b"SYS-42\n");
        w(
            "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            b"\x06\x00\x00\x00\x01",
        );
        d
    }

    #[test]
    fn the_inventory_names_disks_as_servers_need_them() {
        let t = tree();
        let inv = collect(t.path());
        let names: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["nvme0n1", "sda", "sdb", "vda"],
            "sr0 and empty devices are no OS disks"
        );
        let sda = &inv.disks[1];
        assert_eq!(sda.size_bytes, 8 << 30);
        assert_eq!(sda.serial, "SER-0001");
        assert_eq!(sda.wwn, "0x5000c500abcdef01");
        assert_eq!(sda.model, "QEMU HARDDISK");
        assert_eq!(sda.vendor, "ATA");
        assert!(sda.rotational);
        assert_eq!(sda.by_path, "pci-0000:00:1f.2-ata-3.0");
        assert_eq!(sda.driver, "ahci");
        let nvme = &inv.disks[0];
        assert_eq!(
            (nvme.serial.as_str(), nvme.by_path.as_str()),
            ("NVME-SER-7", "pci-0000:00:05.0-nvme-1")
        );
        assert_eq!(nvme.driver, "nvme");
        assert!(!nvme.rotational);
        assert_eq!(inv.disks[2].by_path, "pci-0000:00:06.0-scsi-1:2:0:0");
        assert_eq!(inv.disks[2].driver, "mpt3sas");
        assert_eq!(inv.disks[3].by_path, "pci-0000:00:04.0");
        assert_eq!(inv.disks[3].serial, "VIRTIO-7");
        assert_eq!(inv.nics.len(), 2);
        assert_eq!(
            inv.nics[0],
            Nic {
                name: "eth0".into(),
                mac: "52:54:00:99:20:01".into(),
                driver: "e1000e".into(),
                speed_mbps: 1000,
                link: true
            }
        );
        assert_eq!((inv.nics[1].speed_mbps, inv.nics[1].link), (0, false));
        assert_eq!(inv.cpu.count, 2);
        assert_eq!(inv.memory.total_kib, 1012345);
        assert_eq!(inv.system.serial, "SYS-42");
        assert_eq!(inv.boot_mode, "uefi");
        assert!(inv.secure_boot);
        assert_eq!(inv.uptime_s, 7.25);
    }
}
