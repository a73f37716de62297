//! `rackboot lab up|down`: a whole provisioning lab on one machine, as
//! README's main command. `up` (as root) installs the Debian packages it
//! needs (without starting their services), builds the deploy ramdisk and a
//! small test image, creates a network namespace with a bridge (10.99.0.1/24,
//! private, never a real interface), starts N QEMU VMs (TCG) each behind
//! its own virtual BMC (OpenIPMI's ipmi_sim with a chassis_control program
//! that powers the VM and picks its boot order), starts rackboot on the
//! bridge, registers the VMs through the API, provisions them, shows the
//! progress until they are active and prints what happened. `down` stops
//! and removes everything `up` created (recorded in `lab.json`).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VMBMC: &str = include_str!("vmbmc.sh");
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("ipmi_sim", "openipmi"),
    ("ipmitool", "ipmitool"),
    ("busybox", "busybox-static"),
    ("dpkg", "dpkg"),
    ("syslinux", "syslinux"),
    ("mcopy", "mtools"),
    ("mkfs.vfat", "dosfstools"),
];

/// What `up` was asked for.
pub struct LabOptions {
    pub nodes: u32,
    pub dir: PathBuf,
    pub netns: String,
    /// Register and provision (false: stop after starting the VMs' BMCs and
    /// the daemon).
    pub provision: bool,
    /// The rackboot binary to run as the daemon.
    pub binary: PathBuf,
    /// provision.boot_timeout of the lab's daemon (seconds).
    pub boot_timeout: u64,
    /// The rackboot-agent for the ramdisk (default: beside the binary).
    pub agent: Option<PathBuf>,
    /// Each VM's hardware (VM i takes entry i, cycling; empty: the default).
    pub hardware: Vec<Hardware>,
    /// `[boot] secure_boot_chain` of the lab's daemon; `None`: on when a VM
    /// has Secure Boot.
    pub secure_boot_chain: Option<bool>,
}

/// One lab VM's hardware (`--hardware nic=e1000e,disk=ahci,firmware=uefi,disks=2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardware {
    /// QEMU's NIC device.
    pub nic: String,
    /// virtio-blk, virtio-scsi, ahci, nvme, megasas or lsi.
    pub disk: String,
    /// bios, uefi or secureboot (OVMF with Microsoft's keys, enforced).
    pub firmware: String,
    /// 1, or 2: a second, larger disk with its own serial gets the OS (the
    /// node's root-device hint names its serial).
    pub disks: u8,
    /// An in-band IPMI interface (KCS) to the VM's BMC (`bmc=inband`), as
    /// real servers have: the BMC's LAN address is readable from the OS.
    pub inband: bool,
}

impl Default for Hardware {
    fn default() -> Hardware {
        Hardware {
            nic: "virtio-net-pci".into(),
            disk: "virtio-blk".into(),
            firmware: "bios".into(),
            disks: 1,
            inband: false,
        }
    }
}

impl Hardware {
    /// Parses `key=value,…`; `Err` names the bad part.
    pub fn parse(spec: &str) -> Result<Hardware, String> {
        let mut h = Hardware::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("`{part}`: expected key=value (nic, disk, firmware, disks, bmc)")
            })?;
            match k {
                "nic" => {
                    h.nic = match v {
                        "virtio" | "virtio-net" | "virtio-net-pci" => "virtio-net-pci",
                        "e1000" => "e1000",
                        "e1000e" => "e1000e",
                        "vmxnet3" => "vmxnet3",
                        "rtl8139" => "rtl8139",
                        _ => {
                            return Err(format!(
                                "nic={v}: one of virtio, e1000, e1000e, vmxnet3, rtl8139"
                            ))
                        }
                    }
                    .into()
                }
                "disk" => {
                    if ![
                        "virtio-blk",
                        "virtio-scsi",
                        "ahci",
                        "nvme",
                        "megasas",
                        "lsi",
                    ]
                    .contains(&v)
                    {
                        return Err(format!(
                            "disk={v}: one of virtio-blk, virtio-scsi, ahci, nvme, megasas, lsi"
                        ));
                    }
                    h.disk = v.into();
                }
                "firmware" => {
                    if !["bios", "uefi", "secureboot"].contains(&v) {
                        return Err(format!("firmware={v}: one of bios, uefi, secureboot"));
                    }
                    h.firmware = v.into();
                }
                "bmc" => {
                    h.inband = match v {
                        "inband" => true,
                        "lan" => false,
                        _ => return Err(format!("bmc={v}: inband or lan")),
                    }
                }
                "disks" => {
                    h.disks = match v {
                        "1" => 1,
                        "2" => 2,
                        _ => return Err(format!("disks={v}: 1 or 2")),
                    }
                }
                _ => {
                    return Err(format!(
                        "`{k}`: not a hardware key (nic, disk, firmware, disks, bmc)"
                    ))
                }
            }
        }
        if h.firmware == "secureboot" && h.nic != "virtio-net-pci" {
            return Err("firmware=secureboot needs nic=virtio: OVMF has a signed driver for virtio-net only (iPXE's option ROMs are unsigned)".into());
        }
        if h.firmware == "bios" && h.disk == "nvme" {
            // SeaBIOS boots NVMe; kept possible.
        }
        Ok(h)
    }

    /// The node's boot mode for this firmware.
    pub fn boot_mode(&self) -> &'static str {
        if self.firmware == "bios" {
            "bios"
        } else {
            "uefi"
        }
    }

    /// `e1000e/ahci/uefi` (`+2 disks`).
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}{}",
            self.nic.trim_end_matches("-net-pci"),
            self.disk,
            self.firmware,
            if self.disks == 2 { "/2 disks" } else { "" }
        )
    }
}

/// The TCP port (on the lab namespace's loopback) where VM `i`'s BMC's SOL
/// connects to the serial relay ([`serial_relay`]).
fn sol_port(i: u32) -> u32 {
    9100 + i
}

/// The port where VM `i`'s BMC takes QEMU's in-band IPMI connection.
fn inband_port(i: u32) -> u32 {
    9300 + i
}

/// VM `i`'s BMC's own LAN MAC (what `lancontrol.sh` reports).
pub fn bmc_mac(i: u32) -> String {
    format!("02:00:00:99:01:{i:02x}")
}

/// The relay's port for VM `i`'s serial port (QEMU connects to it).
fn serial_port(i: u32) -> u32 {
    9200 + i
}

/// VM `i`'s system serial (SMBIOS type 1, what DMI shows), also its BMC's
/// FRU product serial.
pub fn system_serial(i: u32) -> String {
    format!("RB-LAB{i:02}-SYS")
}

/// A FRU image (IPMI Platform Management FRU Information Storage
/// Definition 1.0): the common header and a product info area whose serial
/// is `serial`.
pub fn fru_image(serial: &str) -> Vec<u8> {
    fn field(s: &str) -> Vec<u8> {
        let mut v = vec![0xC0 | s.len().min(63) as u8];
        v.extend(&s.as_bytes()[..s.len().min(63)]);
        v
    }
    fn checksum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)).wrapping_neg()
    }
    let mut product = vec![1, 0, 0];
    for f in ["Rackboot Lab", "lab-vm", "PN-1", "1.0", serial, "", ""] {
        product.extend(field(f));
    }
    product.push(0xC1);
    while (product.len() + 1) % 8 != 0 {
        product.push(0);
    }
    product[1] = ((product.len() + 1) / 8) as u8;
    product.push(checksum(&product));
    let header = [1u8, 0, 0, 0, 1, 0, 0];
    let mut out = header.to_vec();
    out.push(checksum(&header));
    out.extend(product);
    out
}

/// The serial of VM `i`'s disk `n` (1 or 2).
pub fn disk_serial(i: u32, n: u8) -> String {
    format!("RB-LAB{i:02}-D{n}")
}

fn sh(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    sh(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

fn have(cmd: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(cmd).exists())
}

/// Installs what is missing, with a policy-rc.d so that no service starts.
fn install_packages() -> Result<(), String> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(c, _)| !have(c))
        .map(|(_, p)| *p)
        .collect();
    if !Path::new("/usr/lib/ipxe/qemu/efi-virtio.rom").exists() {
        missing.push("ipxe-qemu");
    }
    if !Path::new(MBR).exists() {
        missing.push("syslinux-common");
    }
    if !Path::new("/usr/share/OVMF/OVMF_CODE_4M.ms.fd").exists() {
        missing.push("ovmf");
    }
    if missing.is_empty() {
        return Ok(());
    }
    println!("lab: installing {}", missing.join(" "));
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let had_policy = policy.exists();
    if !had_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n").map_err(|e| e.to_string())?;
        let _ = sh(
            Command::new("chmod").args(["+x", "/usr/sbin/policy-rc.d"]),
            "chmod",
        );
    }
    let result = sh(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )
    .and_then(|_| {
        sh(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install",
        )
    });
    if !had_policy {
        let _ = std::fs::remove_file(policy);
    }
    result.map(|_| ())
}

const MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";

/// The lab's test OS: a raw disk (MBR, one active FAT partition of type EF
/// at 1 MiB) that boots under SeaBIOS (syslinux), OVMF and OVMF with
/// Secure Boot enforced (`\EFI\BOOT\BOOTX64.EFI` = Debian's signed shim,
/// then Debian's signed GRUB and the signed kernel). It boots the deploy
/// ramdisk's kernel and initrd in mode `firstboot`: the agent reads the
/// callback URL the deploy left in sector 1, gets an address by DHCP and
/// posts `booted`. `efi` is the folder `rackboot ramdisk build` filled
/// (shimx64.efi, grubx64-disk.efi). Returns its SHA-256.
pub fn test_image(path: &Path, kernel: &Path, initrd: &Path, efi: &Path) -> Result<String, String> {
    {
        let tmp = path.with_extension("tmp");
        let payload = std::fs::metadata(kernel).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(initrd).map(|m| m.len()).unwrap_or(0);
        // Room for the kernel, initrd, shim and GRUB, in whole MiB.
        let size: u64 = ((payload + (16 << 20)) >> 20 << 20).max(32 << 20);
        let f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        f.set_len(size).map_err(|e| e.to_string())?;
        drop(f);
        // The partition table: one active FAT partition, type EF (EFI
        // system): syslinux's MBR code boots the active one, UEFI an ESP.
        let (start, count) = (2048u32, (size / 512) as u32 - 2048);
        let mut entry = vec![0x80, 0xfe, 0xff, 0xff, 0xef, 0xfe, 0xff, 0xff];
        entry.extend_from_slice(&start.to_le_bytes());
        entry.extend_from_slice(&count.to_le_bytes());
        let mut mbr = std::fs::read(MBR)
            .map_err(|e| format!("{MBR}: {e} (apt-get install syslinux-common)"))?;
        mbr.truncate(440);
        mbr.resize(446, 0);
        mbr.extend_from_slice(&entry);
        mbr.resize(510, 0);
        mbr.extend_from_slice(&[0x55, 0xaa]);
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(|e| e.to_string())?;
            f.write_all_at(&mbr, 0).map_err(|e| e.to_string())?;
        }
        let blocks = ((size - 1024 * 1024) / 1024).to_string();
        let t = tmp.to_string_lossy().to_string();
        sh(
            Command::new("mkfs.vfat")
                .args(["-F", "32", "--offset", "2048", "-h", "2048", &t, &blocks]),
            "mkfs.vfat",
        )?;
        sh(
            Command::new("syslinux").args(["--offset", "1048576", "--install", &t]),
            "syslinux",
        )?;
        let args = "console=ttyS0,115200 rackboot.mode=firstboot";
        let cfg = path.with_extension("syslinux.cfg");
        std::fs::write(
            &cfg,
            format!("DEFAULT tiny\nSERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\nLABEL tiny\n  KERNEL vmlinuz\n  APPEND initrd=initrd {args}\n"),
        )
        .map_err(|e| e.to_string())?;
        let grub = path.with_extension("grub.cfg");
        std::fs::write(
            &grub,
            format!("set timeout=0\nmenuentry \"rackboot lab test OS\" {{\n  linux /vmlinuz {args}\n  initrd /initrd\n}}\n"),
        )
        .map_err(|e| e.to_string())?;
        let fat = format!("{t}@@1048576");
        for dir in ["::EFI", "::EFI/BOOT", "::EFI/debian"] {
            sh(Command::new("mmd").args(["-i", &fat, dir]), "mmd")?;
        }
        for (from, to) in [
            (kernel, "::vmlinuz"),
            (initrd, "::initrd"),
            (cfg.as_path(), "::syslinux.cfg"),
            (&efi.join("shimx64.efi"), "::EFI/BOOT/BOOTX64.EFI"),
            (&efi.join("grubx64-disk.efi"), "::EFI/BOOT/grubx64.efi"),
            (grub.as_path(), "::EFI/debian/grub.cfg"),
        ] {
            sh(
                Command::new("mcopy")
                    .args(["-o", "-i", &fat])
                    .arg(from)
                    .arg(to),
                "mcopy",
            )?;
        }
        let _ = std::fs::remove_file(&cfg);
        let _ = std::fs::remove_file(&grub);
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    }
    let out = sh(Command::new("sha256sum").arg(path), "sha256sum")?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// A JSON request to the daemon's socket (HTTP/1.1, one connection).
pub fn api(socket: &Path, password: &str, mut request: Value) -> Result<Value, String> {
    request["USER_ID"] = "admin".into();
    request["PASSWORD"] = password.into();
    let body = request.to_string();
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the daemon at {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // The body may be chunked: take the outermost JSON object.
    let start = json.find('{').ok_or("the daemon sent no JSON")?;
    let end = json.rfind('}').ok_or("the daemon sent no JSON")?;
    serde_json::from_str(&json[start..=end]).map_err(|e| format!("bad JSON from the daemon: {e}"))
}

fn ok(v: Value) -> Result<Value, String> {
    if v["ret_code"] == 0 {
        Ok(v)
    } else {
        Err(format!(
            "the API answered {}: {}",
            v["ret_code"], v["message"]
        ))
    }
}

/// Starts a process inside the lab namespace, detached; returns its pid.
fn spawn_in(netns: &str, program: &Path, args: &[&str], log: &Path) -> Result<u32, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    Ok(child.id())
}

fn mac(i: u32) -> String {
    format!("52:54:00:99:20:{:02x}", i)
}

/// VM `i`'s hardware.
fn hardware(o: &LabOptions, i: u32) -> Hardware {
    if o.hardware.is_empty() {
        Hardware::default()
    } else {
        o.hardware[i as usize % o.hardware.len()].clone()
    }
}

/// `rackboot lab up`.
pub fn up(o: &LabOptions) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the lab creates a network namespace, taps and VMs: run it as root".into());
    }
    if o.nodes == 0 || o.nodes > 16 {
        return Err("--nodes: 1 to 16 (each VM is a QEMU TCG process)".into());
    }
    if Path::new("/run/netns").join(&o.netns).exists() {
        return Err(format!(
            "a lab runs already (namespace {}): `rackboot lab down` first",
            o.netns
        ));
    }
    let started = Instant::now();
    install_packages()?;
    std::fs::create_dir_all(&o.dir)
        .map_err(|e| format!("cannot create {}: {e}", o.dir.display()))?;
    let mut record = json!({"netns": o.netns, "pids": [], "dir": o.dir});
    let save = |r: &Value| std::fs::write(o.dir.join("lab.json"), r.to_string());

    println!("lab: building the deploy ramdisk (Debian's generic kernel with server drivers, busybox-static, rackboot-agent)");
    let ramdisk = o.dir.join("ramdisk");
    // Rebuilt each time (it is this rackboot's agent); the packages stay
    // in the cache. A fresh machine may have no apt lists yet: fetch them
    // once.
    if crate::service::ramdisk::resolve_package(crate::service::ramdisk::DEFAULT_META_PACKAGE)
        .is_err()
    {
        sh(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )?;
    }
    let agent = crate::service::ramdisk::find_agent(o.agent.as_deref())?;
    let built = crate::service::ramdisk::build(&ramdisk, None, &ramdisk.join("cache"), &agent)?;
    println!(
        "lab: ramdisk: initrd {:.1} MiB ({} modules, {} firmware files)",
        built.initrd_bytes as f64 / 1048576.0,
        built.modules,
        built.firmware_files
    );
    let (kernel, initrd) = (built.kernel.clone(), built.initrd.clone());
    println!("lab: building the test image (syslinux + the same kernel; it calls back on its first boot)");
    let image = o.dir.join("tiny.raw");
    let sha = test_image(&image, &kernel, &initrd, &ramdisk)?;

    println!(
        "lab: network namespace {} with bridge br0 (10.99.0.1/24)",
        o.netns
    );
    ip(&["netns", "add", &o.netns])?;
    save(&record).map_err(|e| e.to_string())?;
    let n = |args: &[&str]| -> Result<String, String> {
        let mut all = vec!["-n", o.netns.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    };
    n(&["link", "set", "lo", "up"])?;
    n(&["link", "add", "br0", "type", "bridge", "forward_delay", "0"])?;
    n(&["addr", "add", "10.99.0.1/24", "dev", "br0"])?;
    n(&["link", "set", "br0", "up"])?;

    let mut pids = Vec::new();
    for i in 0..o.nodes {
        let tap = format!("tap{i}");
        n(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        n(&["link", "set", &tap, "master", "br0"])?;
        n(&["link", "set", &tap, "up"])?;
        let vm = o.dir.join(format!("vm{i}"));
        let _ = std::fs::remove_dir_all(&vm);
        std::fs::create_dir_all(vm.join("state")).map_err(|e| e.to_string())?;
        let hw = hardware(o, i);
        // Sparse disks of server sizes: 4 GiB, and 6 GiB for a second one.
        let mut env = format!(
            "TAP={tap}\nMAC={}\nNIC={}\nDISK_CTRL={}\nFIRMWARE={}\nSERIALPORT={}\nSYSSERIAL={}\nINBAND={}\nIPMIPORT={}\n",
            mac(i),
            hw.nic,
            hw.disk,
            hw.firmware,
            serial_port(i),
            system_serial(i),
            if hw.inband { "1" } else { "" },
            inband_port(i)
        );
        for n in 1..=hw.disks {
            let disk = vm.join(format!("disk{n}.raw"));
            let f = std::fs::File::create(&disk).map_err(|e| e.to_string())?;
            f.set_len(if n == 1 { 4 << 30 } else { 6 << 30 })
                .map_err(|e| e.to_string())?;
            let suffix = if n == 1 { String::new() } else { n.to_string() };
            env.push_str(&format!(
                "DISK{suffix}={}\nSERIAL{suffix}={}\n",
                disk.display(),
                disk_serial(i, n)
            ));
        }
        if hw.firmware != "bios" {
            let vars = if hw.firmware == "secureboot" {
                "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
            } else {
                "/usr/share/OVMF/OVMF_VARS_4M.fd"
            };
            std::fs::copy(vars, vm.join("OVMF_VARS.fd"))
                .map_err(|e| format!("{vars}: {e} (apt-get install ovmf)"))?;
        }
        std::fs::write(vm.join("vm.env"), env).map_err(|e| e.to_string())?;
        let chassis = vm.join("chassis.sh");
        std::fs::write(&chassis, VMBMC).map_err(|e| e.to_string())?;
        sh(Command::new("chmod").arg("755").arg(&chassis), "chmod")?;
        // ipmi_sim's LAN configuration (Get LAN Configuration Parameters):
        // the BMC's address and its own MAC, as a real BMC reports them.
        let lancontrol = vm.join("lancontrol.sh");
        std::fs::write(
            &lancontrol,
            format!(
                "#!/bin/sh\n# ipmi_sim's lan_config_program: \"$0 <vm> get|set|check <name>...\"\nshift\nop=$1; shift\n\
                 [ \"$op\" = get ] || exit 0\nfor p in \"$@\"; do case $p in\n\
                   ip_addr) echo ip_addr:10.99.0.1;;\n  ip_addr_src) echo ip_addr_src:static;;\n\
                   mac_addr) echo mac_addr:{};;\n  subnet_mask) echo subnet_mask:255.255.255.0;;\n\
                   *mac_addr) echo \"$p:00:00:00:00:00:00\";;\n  *) echo \"$p:0.0.0.0\";;\nesac; done\n",
                bmc_mac(i)
            ),
        )
        .map_err(|e| e.to_string())?;
        sh(Command::new("chmod").arg("755").arg(&lancontrol), "chmod")?;
        let auths = "none md2 md5 straight";
        std::fs::write(
            vm.join("lan.conf"),
            format!(
                "name \"vm{i}\"\nset_working_mc 0x20\n  startlan 1\n    addr 10.99.0.1 {}\n    priv_limit admin\n\
                 allowed_auths_callback {auths}\n allowed_auths_user {auths}\n allowed_auths_operator {auths}\n allowed_auths_admin {auths}\n\
                 guid a123456789abcdefa123456789abcd{i:02x}\n lan_config_program \"{} {i}\"\n  endlan\n  chassis_control \"{}\"\n\
                 sol \"tcp:127.0.0.1:{}\" 115200\n{}\
                 user 2 true \"admin\" \"password\" admin 10 {auths}\n",
                6230 + i,
                lancontrol.display(),
                chassis.display(),
                sol_port(i),
                if hw.inband {
                    format!("  serial 15 127.0.0.1 {} codec VM ipmb 0x20\n", inband_port(i))
                } else {
                    String::new()
                }
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            vm.join("sim.emu"),
            {
                // The BMC's FRU carries the machine's serial, as a real
                // server's does (the intake joins them by it).
                let fru = fru_image(&system_serial(i));
                let path = vm.join("fru.bin");
                std::fs::write(&path, &fru).map_err(|e| e.to_string())?;
                format!(
                    "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
                     mc_add_fru_data 0x20 0 {} file 0 \"{}\"\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
                    fru.len(),
                    path.display()
                )
            },
        )
        .map_err(|e| e.to_string())?;
        let relay = spawn_in(
            &o.netns,
            &o.binary,
            &[
                "lab",
                "serial-relay",
                "--bmc-port",
                &sol_port(i).to_string(),
                "--vm-port",
                &serial_port(i).to_string(),
            ],
            &vm.join("serial-relay.log"),
        )?;
        pids.push(relay);
        let relay_log = vm.join("serial-relay.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&relay_log)
            .unwrap_or_default()
            .contains("listening")
        {
            if Instant::now() > deadline {
                return Err(format!(
                    "the serial relay of vm{i} did not start: {}",
                    std::fs::read_to_string(&relay_log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (lan, emu, state) = (vm.join("lan.conf"), vm.join("sim.emu"), vm.join("state"));
        let pid = spawn_in(
            &o.netns,
            Path::new("ipmi_sim"),
            &[
                "-n",
                "-c",
                &lan.to_string_lossy(),
                "-f",
                &emu.to_string_lossy(),
                "-s",
                &state.to_string_lossy(),
            ],
            &vm.join("ipmi_sim.log"),
        )?;
        pids.push(pid);
        record["pids"] = json!(pids);
        save(&record).map_err(|e| e.to_string())?;
    }

    println!("lab: starting rackboot on br0 (DHCP, TFTP, HTTP, RA)");
    let state = o.dir.join("state");
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    let config = o.dir.join("rackboot.toml");
    std::fs::write(
        &config,
        format!(
            "[dhcp]\ninterface = \"br0\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.199\"\n\
             [boot]\nsecure_boot_chain = {}\n\
             [deploy]\nkernel = \"{}\"\ninitrd = \"{}\"\n\
             [provision]\nboot_timeout = {}\ndeploy_timeout = 300\npower_on_timeout = 30\nfirst_boot_timeout = 300\n\
             [[images]]\nos_version = \"tiny-1.0\"\nfile = \"{}\"\nsha256 = \"{sha}\"\nfirst_boot_callback = true\n",
            o.secure_boot_chain
                .unwrap_or_else(|| (0..o.nodes).any(|i| hardware(o, i).firmware == "secureboot")),
            kernel.display(),
            initrd.display(),
            o.boot_timeout,
            image.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let daemon = spawn_in(
        &o.netns,
        &o.binary,
        &[
            "serve",
            "--config",
            &config.to_string_lossy(),
            "--state-dir",
            &state.to_string_lossy(),
        ],
        &o.dir.join("rackboot.log"),
    )?;
    pids.push(daemon);
    record["pids"] = json!(pids);
    record["daemon"] = json!(daemon);
    save(&record).map_err(|e| e.to_string())?;
    let socket = state.join("api.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let password = loop {
        if let Ok(p) = std::fs::read_to_string(state.join("admin.password")) {
            if socket.exists() && api(&socket, p.trim(), json!({"action": "DescribeUsers"})).is_ok()
            {
                break p.trim().to_string();
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "rackboot did not start; see {}",
                o.dir.join("rackboot.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !o.provision {
        println!("lab: up (not provisioning); socket {}", socket.display());
        return Ok(());
    }

    let mut ids = Vec::new();
    for i in 0..o.nodes {
        let r = ok(api(
            &socket,
            &password,
            json!({
                "action": "RegisterBMNodes", "hostname": format!("lab{i:02}"), "os_version": "tiny-1.0",
                "cpu_arch": "x86_64", "boot_mode": hardware(o, i).boot_mode(),
                "root_device": {"serial": disk_serial(i, hardware(o, i).disks)},
                "ipmi_network_address": "10.99.0.1", "ipmi_port": 6230 + i,
                "ipmi_username": "admin", "ipmi_password": "password",
                "pxe_network_mac_addr": mac(i),
            }),
        )?)?;
        let id = r["node_ids"][0].as_str().unwrap_or_default().to_string();
        println!(
            "lab: registered lab{i:02} as {id} (MAC {}, BMC 10.99.0.1:{}, {}, OS disk serial {})",
            mac(i),
            6230 + i,
            hardware(o, i).label(),
            disk_serial(i, hardware(o, i).disks)
        );
        ids.push(id);
    }
    let r = ok(api(
        &socket,
        &password,
        json!({"action": "ProvisionBMNodes", "node_ids": ids}),
    )?)?;
    let job = r["job_id"].as_str().unwrap_or_default().to_string();
    println!("lab: ProvisionBMNodes → job {job}");
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last = String::new();
    // When each node was first seen in each status (for time per step).
    let mut seen: Vec<Vec<(String, f64)>> = vec![Vec::new(); ids.len()];
    let provision_started = Instant::now();
    let status = loop {
        let s = ok(api(
            &socket,
            &password,
            json!({"action": "GetProvisionBMNodesStatus", "job_id": job}),
        )?)?;
        let line: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    "{id} {} {}",
                    s["node_progress"][id]["status"]
                        .as_str()
                        .filter(|st| !st.is_empty())
                        .unwrap_or("queued"),
                    s["node_progress"][id]["progress"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let line = format!(
            "[{:>5.1} s] job {} {}: {}",
            started.elapsed().as_secs_f64(),
            s["status"].as_str().unwrap_or("?"),
            s["progress"].as_str().unwrap_or("?"),
            line.join(" | ")
        );
        for (i, id) in ids.iter().enumerate() {
            let st = s["node_progress"][id]["status"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if !st.is_empty() && seen[i].last().map(|(l, _)| l != &st).unwrap_or(true) {
                seen[i].push((st, provision_started.elapsed().as_secs_f64()));
            }
        }
        if line[line.find(']').unwrap_or(0)..] != last[last.find(']').unwrap_or(0)..] {
            println!("{line}");
            last = line;
        }
        if s["status"] == "successful" || s["status"] == "failed" {
            break s;
        }
        if Instant::now() > deadline {
            return Err("the provision did not end within 15 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("\nlab: time per step (from the status, polled every 0.25 s)");
    for (id, steps) in ids.iter().zip(&seen) {
        let parts: Vec<String> = steps
            .windows(2)
            .map(|w| format!("{} {:.1} s", w[0].0, w[1].1 - w[0].1))
            .collect();
        let total = steps.last().map(|(_, t)| *t).unwrap_or(0.0);
        println!(
            "  {id}: {} → {} at {total:.1} s",
            parts.join(", "),
            steps.last().map(|(s, _)| s.as_str()).unwrap_or("?")
        );
    }
    println!("\nlab: job log");
    let log = ok(api(
        &socket,
        &password,
        json!({"action": "GetProvisionBMNodesLog", "job_id": job}),
    )?)?;
    if let Some(lines) = log["log"].as_object() {
        for (k, v) in lines {
            println!("  {k} {}", v.as_str().unwrap_or(""));
        }
    }
    for id in &ids {
        println!("\nlab: boot timeline of {id}");
        let t = ok(api(
            &socket,
            &password,
            json!({"action": "DescribeBootEvents", "node_id": id}),
        )?)?;
        for e in t["event_set"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {} {:<8} {}",
                e["time"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            );
        }
    }
    println!(
        "\nlab: {} in {:.0} s. The lab keeps running (VMs, BMCs on 10.99.0.1:6230+, rackboot in namespace {}):\n  \
         rackboot --state-dir {} describe-bm-nodes\n  rackboot lab down",
        if status["status"] == "successful" { "all nodes active" } else { "the provision FAILED (see the log above)" },
        started.elapsed().as_secs_f64(),
        o.netns,
        state.display()
    );
    if status["status"] == "successful" {
        Ok(())
    } else {
        Err("the provision failed".into())
    }
}

/// `rackboot lab down`: stops what `up` started (by pid) and removes the
/// namespace.
pub fn down(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("lab.json"))
        .map_err(|_| format!("no lab in {} (nothing to take down)", dir.display()))?;
    let record: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let kill = |pid: i32, sig: nix::sys::signal::Signal| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    };
    // VMs first (their pid files), then the BMCs and the daemon.
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if let Ok(pid) = std::fs::read_to_string(entry.path().join("vm.pid")) {
            if let Ok(pid) = pid.trim().parse() {
                kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    for pid in record["pids"].as_array().cloned().unwrap_or_default() {
        if let Some(pid) = pid.as_i64() {
            kill(pid as i32, nix::sys::signal::Signal::SIGTERM);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for pid in record["pids"].as_array().cloned().unwrap_or_default() {
        if let Some(pid) = pid.as_i64() {
            kill(pid as i32, nix::sys::signal::Signal::SIGKILL);
        }
    }
    if let Some(ns) = record["netns"].as_str() {
        let _ = ip(&["netns", "del", ns]);
    }
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("vm") || name == "state" || name == "lab.json" {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            };
        }
    }
    println!(
        "lab: down (the ramdisk and image stay in {} for the next run)",
        dir.display()
    );
    Ok(())
}

/// `rackboot lab serial-relay`: joins a lab VM's serial port to its BMC's
/// SOL. Both connect here (on 127.0.0.1, in the lab's namespace): ipmi_sim's
/// `sol "tcp:…"` to `bmc_port`, QEMU's serial chardev to `vm_port`. A VM
/// restart (every power cycle) then drops only QEMU's side, which
/// reconnects at once; ipmi_sim, which retries a lost connection only
/// every ~10 s, would otherwise miss the firmware's first seconds (the
/// BIOS, PXE and boot loader lines that tell why a boot failed). What one
/// side sends while the other is away is dropped, as on a serial line.
pub fn serial_relay(bmc_port: u16, vm_port: u16) -> Result<(), String> {
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    type Side = Arc<Mutex<Option<TcpStream>>>;
    let bmc: Side = Arc::new(Mutex::new(None));
    let vm: Side = Arc::new(Mutex::new(None));
    let listen = |port: u16| {
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("127.0.0.1:{port}: {e}"))
    };
    let (bmc_listener, vm_listener) = (listen(bmc_port)?, listen(vm_port)?);
    // `lab up` starts the BMC once this line is out (ipmi_sim retries a
    // refused connection only after ~10 s).
    println!("serial-relay: listening on 127.0.0.1:{bmc_port} (BMC) and 127.0.0.1:{vm_port} (VM)");
    let _ = std::io::stdout().flush();
    // Each accepted connection replaces the side's previous one and pumps
    // what it reads to the other side.
    fn serve(listener: TcpListener, mine: Side, other: Side) {
        for conn in listener.incoming().flatten() {
            let _ = conn.set_nodelay(true);
            let Ok(reader) = conn.try_clone() else {
                continue;
            };
            *mine.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
            let other = other.clone();
            std::thread::spawn(move || {
                let mut reader = reader;
                let mut buf = [0u8; 4096];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut o = other.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(out) = o.as_mut() {
                                if out.write_all(&buf[..n]).is_err() {
                                    *o = None;
                                }
                            }
                        }
                    }
                }
            });
        }
    }
    let (b, v) = (bmc.clone(), vm.clone());
    std::thread::spawn(move || serve(vm_listener, v, b));
    serve(bmc_listener, bmc, vm);
    Ok(())
}
