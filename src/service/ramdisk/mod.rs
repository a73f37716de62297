//! `rackboot ramdisk build`: the deploy ramdisk, for real servers. From
//! Debian's packages (downloaded with `apt-get download`, unpacked with
//! `dpkg -x`, never installed):
//!
//! - the generic kernel (`linux-image-amd64`, signed for Secure Boot) and
//!   its drivers for Ethernet NICs (PCI and USB), SATA/AHCI, SAS/RAID HBAs
//!   (megaraid_sas, mpt3sas, smartpqi, …), SCSI, NVMe (and Intel VMD), virtio
//!   and USB hosts, VLANs, efivarfs and in-band IPMI — with every module
//!   they depend on, and the firmware files they name that Debian's main
//!   archive carries (`firmware-linux-free`);
//! - busybox-static (the shell of `/init`, `udhcpc`, `ip`);
//! - rackboot's agent (`rackboot-agent`, statically linked), which loads
//!   what the hardware needs by modalias coldplug from the module index
//!   written here (`lib/modules/rackboot.modules`, read from each module's
//!   own `.modinfo`), brings up the PXE NIC, reports, writes the image;
//! - for Secure Boot, beside the ramdisk: `shimx64.efi` (`shim-signed`) and
//!   `grubx64.efi`, the signed GRUB netboot image (`grub-efi-amd64-signed`),
//!   which shim loads next to itself.
//!
//! Output: `vmlinuz`, `initrd.img` (a gzip'd newc cpio written by [`Cpio`]),
//! `shimx64.efi`, `grubx64.efi`.
//!
//! `iso` packs it, with a node's boot configs, into a bootable ISO for
//! virtual-media deploys.

pub mod iso;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const INIT: &str = include_str!("init.sh");
const UDHCPC: &str = include_str!("udhcpc.sh");

/// The kernel meta package: Debian's generic kernel, with drivers for
/// server hardware as modules (the cloud kernel has none of them).
pub const DEFAULT_META_PACKAGE: &str = "linux-image-amd64";

/// Module folders (under `lib/modules/<version>/kernel/`) shipped whole;
/// what they depend on comes along wherever it lives.
const MODULE_DIRS: &[&str] = &[
    "drivers/net/ethernet/",
    "drivers/net/usb/",
    "drivers/net/phy/",
    "drivers/net/mdio/",
    "drivers/net/pcs/",
    "drivers/net/vmxnet3/",
    "drivers/net/virtio_net.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/mii.ko",
    "drivers/net/mdio.ko",
    "drivers/ata/",
    "drivers/scsi/",
    "drivers/message/fusion/",
    "drivers/nvme/host/",
    "drivers/pci/controller/vmd.ko",
    "drivers/virtio/",
    "drivers/block/virtio_blk.ko",
    "drivers/usb/host/",
    "drivers/usb/storage/",
    "drivers/char/ipmi/",
    "net/8021q/",
    "fs/efivarfs/",
    // The installed OS's root file system, where the cloud-init seed goes.
    "fs/ext4/",
    "fs/xfs/",
    // Their checksums: the crypto API's crc32c (a module on Debian's
    // kernel, requested by name, which needs modprobe: the agent loads them).
    "crypto/crc32c_generic.ko",
    "arch/x86/crypto/crc32c-intel.ko",
];

/// Left out of `drivers/scsi/`: Fibre Channel, FCoE and iSCSI initiators
/// (SAN boot is out of scope; they are a third of the folder).
const MODULE_SKIP: &[&str] = &[
    "drivers/scsi/qla2xxx/",
    "drivers/scsi/qla4xxx/",
    "drivers/scsi/lpfc/",
    "drivers/scsi/bfa/",
    "drivers/scsi/qedf/",
    "drivers/scsi/qedi/",
    "drivers/scsi/fcoe/",
    "drivers/scsi/libfc/",
    "drivers/scsi/csiostor/",
    "drivers/scsi/fnic/",
    "drivers/scsi/be2iscsi/",
    "drivers/scsi/bnx2fc/",
    "drivers/scsi/bnx2i/",
    "drivers/scsi/cxgbi/",
    "drivers/scsi/elx/",
];

/// Where `rackboot ramdisk build` writes by default.
pub const DEFAULT_OUT: &str = "/var/lib/rackboot/ramdisk";

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub package: String,
    pub initrd_bytes: u64,
    pub modules: usize,
    pub firmware_files: usize,
    /// `shimx64.efi` and `grubx64.efi`, for `[boot] secure_boot_chain`.
    pub shim: PathBuf,
    pub grub: PathBuf,
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
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

/// The concrete package behind a meta package (`apt-cache depends`).
pub fn resolve_package(meta: &str) -> Result<String, String> {
    let out = run(
        Command::new("apt-cache").args(["depends", meta]),
        "apt-cache depends",
    )?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains('<'))
        .map(str::to_string)
        .ok_or_else(|| format!("{meta} depends on no linux-image package: run `apt-get update`, or pass --kernel-package"))
}

/// The agent to put into the ramdisk: `explicit`, else `rackboot-agent`
/// beside this program, else the packaged one.
pub fn find_agent(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            tried.push(dir.join("rackboot-agent"));
        }
    }
    tried.push(PathBuf::from("/usr/lib/rackboot/rackboot-agent"));
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "no rackboot-agent found (looked at {}): build it with `cargo rustc --release -p rackboot-agent --bin rackboot-agent -- -C target-feature=+crt-static`, or pass --agent",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// Whether the ELF file `bytes` asks for a program interpreter (is
/// dynamically linked).
fn is_dynamic(bytes: &[u8]) -> Result<bool, String> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let elf = ElfFile64::<object::Endianness>::parse(bytes)
        .map_err(|e| format!("not an x86-64 ELF program: {e}"))?;
    let endian = elf.endian();
    Ok(elf
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP))
}

/// A `.deb` of `package` in `cache`, downloaded when missing.
fn fetch_deb(cache: &Path, package: &str) -> Result<PathBuf, String> {
    if let Some(d) = find_deb(cache, package) {
        return Ok(d);
    }
    run(
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(cache),
        &format!("apt-get download {package}"),
    )?;
    find_deb(cache, package).ok_or_else(|| format!("apt-get download wrote no .deb of {package}"))
}

/// Unpacks `deb` into a fresh folder under `cache` (removed on drop).
fn unpack(deb: &Path, cache: &Path, tag: &str) -> Result<Unpacked, String> {
    let dir = Unpacked(cache.join(format!("unpacked-{tag}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    run(
        Command::new("dpkg").arg("-x").arg(deb).arg(&dir.0),
        "dpkg -x",
    )?;
    Ok(dir)
}

/// What a module's `.modinfo` says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModInfo {
    pub name: String,
    pub depends: Vec<String>,
    pub aliases: Vec<String>,
    pub firmware: Vec<String>,
}

/// Reads the `.modinfo` section of a module file.
pub fn modinfo(bytes: &[u8]) -> Result<ModInfo, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF module: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("the module has no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    let mut info = ModInfo::default();
    for field in data.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(field);
        let Some((k, v)) = text.split_once('=') else {
            continue;
        };
        // The kernel treats `-` and `_` in module names alike; `depends`
        // may spell a name with `-` (t10-pi) that `name` spells with `_`.
        match k {
            "name" => info.name = v.replace('-', "_"),
            "depends" => {
                info.depends = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|d| d.replace('-', "_"))
                    .collect()
            }
            "alias" => info.aliases.push(v.to_string()),
            "firmware" => info.firmware.push(v.to_string()),
            _ => {}
        }
    }
    Ok(info)
}

/// Every `.ko` under `dir`, by path relative to it.
fn module_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .map_err(|e| format!("{}: {e}", d.display()))?
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ko") {
                let rel = p.strip_prefix(dir).map_err(|e| e.to_string())?;
                out.insert(rel.to_string_lossy().into_owned(), p);
            }
        }
    }
    Ok(out)
}

fn wanted(rel: &str) -> bool {
    let rel = rel.strip_prefix("kernel/").unwrap_or(rel);
    MODULE_DIRS.iter().any(|d| rel.starts_with(d))
        && !MODULE_SKIP.iter().any(|d| rel.starts_with(d))
}

/// Builds the ramdisk into `out` (created), with `.deb`s cached in `cache`.
/// `package` is the kernel package (resolved from [`DEFAULT_META_PACKAGE`]
/// when `None`); `agent` is the statically linked `rackboot-agent`.
pub fn build(
    out: &Path,
    package: Option<&str>,
    cache: &Path,
    agent: &Path,
) -> Result<Built, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let agent_bytes = std::fs::read(agent)
        .map_err(|e| format!("cannot read the agent {}: {e}", agent.display()))?;
    if is_dynamic(&agent_bytes).map_err(|e| format!("{}: {e}", agent.display()))? {
        return Err(format!(
            "{} is dynamically linked, and the ramdisk has no C library: build it with `cargo rustc --release -p rackboot-agent --bin rackboot-agent -- -C target-feature=+crt-static`",
            agent.display()
        ));
    }
    let busybox = Path::new("/bin/busybox");
    let busybox_bytes = std::fs::read(busybox).map_err(|_| {
        "a static /bin/busybox is needed: apt-get install busybox-static".to_string()
    })?;
    if is_dynamic(&busybox_bytes).unwrap_or(true) {
        return Err("/bin/busybox is dynamically linked: apt-get install busybox-static".into());
    }
    let package = match package {
        Some(p) => p.to_string(),
        None => resolve_package(DEFAULT_META_PACKAGE)?,
    };
    let kernel_deb = fetch_deb(cache, &package)?;
    let kernel = unpack(&kernel_deb, cache, "kernel")?;
    let vmlinuz = std::fs::read_dir(kernel.0.join("boot"))
        .map_err(|e| format!("{package} has no /boot: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("{package} has no /boot/vmlinuz-*"))?;
    let version = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let tree = kernel.0.join("lib/modules").join(&version);
    let files = module_files(&tree)?;

    // Every module's .modinfo, by module name.
    let mut infos: BTreeMap<String, (String, ModInfo)> = BTreeMap::new();
    for (rel, path) in &files {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let mut info = modinfo(&bytes).map_err(|e| format!("{rel}: {e}"))?;
        if info.name.is_empty() {
            info.name = Path::new(rel)
                .file_stem()
                .map(|s| s.to_string_lossy().replace('-', "_"))
                .unwrap_or_default();
        }
        infos.insert(info.name.clone(), (rel.clone(), info));
    }
    // The wanted folders, and what they depend on.
    let mut chosen: BTreeSet<String> = infos
        .values()
        .filter(|(rel, _)| wanted(rel))
        .map(|(_, i)| i.name.clone())
        .collect();
    let mut todo: Vec<String> = chosen.iter().cloned().collect();
    while let Some(n) = todo.pop() {
        for d in infos
            .get(&n)
            .map(|(_, i)| i.depends.clone())
            .unwrap_or_default()
        {
            if infos.contains_key(&d) && chosen.insert(d.clone()) {
                todo.push(d);
            }
        }
    }

    // Firmware the chosen modules name, as far as Debian main has it.
    let firmware_deb = fetch_deb(cache, "firmware-linux-free")?;
    let firmware = unpack(&firmware_deb, cache, "firmware")?;
    let fw_root = firmware.0.join("lib/firmware");

    let mut archive = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "lib",
        "lib/modules",
        "lib/firmware",
    ] {
        archive.dir(d);
    }
    archive.char_device("dev/console", 5, 1);
    archive.file("init", 0o755, INIT.as_bytes());
    archive.file("udhcpc.sh", 0o755, UDHCPC.as_bytes());
    archive.file("bin/busybox", 0o755, &busybox_bytes);
    archive.file("bin/rackboot-agent", 0o755, &agent_bytes);
    let mut index = String::new();
    let mut dirs = BTreeSet::new();
    let mut firmware_files = BTreeSet::new();
    for name in &chosen {
        let (rel, info) = &infos[name];
        for (i, _) in rel.match_indices('/') {
            dirs.insert(format!("lib/modules/{}", &rel[..i]));
        }
        index.push_str(&format!("module {name} {rel} {}\n", info.depends.join(",")));
        for a in &info.aliases {
            index.push_str(&format!("alias {a} {name}\n"));
        }
        for f in &info.firmware {
            if fw_root.join(f).is_file() {
                firmware_files.insert(f.clone());
            }
        }
    }
    for f in &firmware_files {
        for (i, _) in f.match_indices('/') {
            dirs.insert(format!("lib/firmware/{}", &f[..i]));
        }
    }
    for d in &dirs {
        archive.dir(d);
    }
    for name in &chosen {
        let (rel, _) = &infos[name];
        let bytes = std::fs::read(&files[rel]).map_err(|e| e.to_string())?;
        archive.file(&format!("lib/modules/{rel}"), 0o644, &bytes);
    }
    archive.file("lib/modules/rackboot.modules", 0o644, index.as_bytes());
    for f in &firmware_files {
        let bytes = std::fs::read(fw_root.join(f)).map_err(|e| e.to_string())?;
        archive.file(&format!("lib/firmware/{f}"), 0o644, &bytes);
    }
    let cpio = archive.finish();

    let kernel_out = out.join("vmlinuz");
    let initrd_out = out.join("initrd.img");
    copy_atomically(&vmlinuz, &kernel_out)?;
    let compressed = gzip(&cpio)?;
    let tmp = out.join(".initrd.img.tmp");
    std::fs::write(&tmp, &compressed).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &initrd_out).map_err(|e| e.to_string())?;

    // The Secure Boot chain's first two links, from Debian's signed packages.
    let shim_deb = fetch_deb(cache, "shim-signed")?;
    let grub_deb = fetch_deb(cache, "grub-efi-amd64-signed")?;
    let shim_dir = unpack(&shim_deb, cache, "shim")?;
    let grub_dir = unpack(&grub_deb, cache, "grub")?;
    let (shim, grub) = (out.join("shimx64.efi"), out.join("grubx64.efi"));
    copy_atomically(&shim_dir.0.join("usr/lib/shim/shimx64.efi.signed"), &shim)?;
    copy_atomically(
        &grub_dir
            .0
            .join("usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"),
        &grub,
    )?;
    copy_atomically(
        &grub_dir
            .0
            .join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
        &out.join("grubx64-disk.efi"),
    )?;
    tracing::info!(
        modules = chosen.len(),
        firmware = firmware_files.len(),
        "ramdisk built"
    );
    Ok(Built {
        kernel: kernel_out,
        initrd: initrd_out,
        package,
        initrd_bytes: compressed.len() as u64,
        modules: chosen.len(),
        firmware_files: firmware_files.len(),
        shim,
        grub,
    })
}

fn copy_atomically(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// `gzip -6` of `data` (the kernel unpacks it; gzip is on every machine).
fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut gz = Command::new("gzip")
        .args(["-6", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    let mut stdin = gz.stdin.take().ok_or("gzip has no stdin")?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let compressed = gz.wait_with_output().map_err(|e| e.to_string())?;
    writer
        .join()
        .map_err(|_| "gzip writer panicked")?
        .map_err(|e| e.to_string())?;
    if !compressed.status.success() {
        return Err("gzip failed".into());
    }
    Ok(compressed.stdout)
}

/// An unpacked package, removed when done.
struct Unpacked(PathBuf);

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn find_deb(cache: &Path, package: &str) -> Option<PathBuf> {
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
}

/// A newc cpio archive, as the kernel unpacks an initramfs.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, &[], (major, minor));
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpio_archive_is_newc_that_cpio_itself_lists() {
        let mut c = Cpio::default();
        c.dir("bin");
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.char_device("dev/console", 5, 1);
        let bytes = c.finish();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        // Names are NUL-terminated and padded; the trailer ends it.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("init\0") && text.contains("TRAILER!!!\0"));
        if let Ok(mut child) = Command::new("cpio")
            .args(["-t", "-v"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
            let out = child.wait_with_output().unwrap();
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(
                listing.contains("init") && listing.contains("dev/console"),
                "{listing}"
            );
        }
    }
}
