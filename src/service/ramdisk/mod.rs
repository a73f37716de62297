//! `rackboot ramdisk build`: the deploy ramdisk, from Debian's cloud kernel
//! package (downloaded with `apt-get download`, unpacked with `dpkg -x`,
//! never installed) and busybox-static. Output: `vmlinuz` and
//! `initrd.img` (a gzip'd newc cpio written here: `/init` from
//! `init.sh`, busybox, the virtio/e1000 modules and a udhcpc script).
//! What the ramdisk does on the wire is documented in `init.sh` and in
//! pxe-templates/README.md (callbacks). `iso` packs it, with a node's boot
//! configs, into a bootable ISO for virtual-media deploys.

pub mod iso;

use std::path::{Path, PathBuf};
use std::process::Command;

const INIT: &str = include_str!("init.sh");
const UDHCPC: &str = include_str!("udhcpc.sh");

/// Modules loaded at boot, in load order (lab facts: virtio_ring before
/// virtio fails with "unknown symbol"); missing ones are skipped.
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "e1000",
];

/// The kernel package `linux-image-cloud-amd64` points at (the cloud
/// flavour has virtio built as modules and boots fast under QEMU).
pub const DEFAULT_META_PACKAGE: &str = "linux-image-cloud-amd64";

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

/// The concrete kernel package behind a meta package (`apt-cache depends`).
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

/// Builds the ramdisk into `out` (created), downloading `package` into
/// `cache` unless it is there. Returns (vmlinuz, initrd.img).
pub fn build(out: &Path, package: &str, cache: &Path) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let busybox = Path::new("/bin/busybox");
    let ldd = Command::new("ldd").arg(busybox).output();
    let is_static = ldd
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).contains("not a dynamic")
                || String::from_utf8_lossy(&o.stderr).contains("not a dynamic")
        })
        .unwrap_or(false);
    if !busybox.exists() || !is_static {
        return Err("a static /bin/busybox is needed: apt-get install busybox-static".into());
    }
    let deb = match find_deb(cache, package) {
        Some(d) => d,
        None => {
            run(
                Command::new("apt-get")
                    .args(["download", package])
                    .current_dir(cache),
                "apt-get download",
            )?;
            find_deb(cache, package).ok_or("apt-get download wrote no .deb")?
        }
    };
    let unpacked = Unpacked(cache.join(format!("unpacked-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&unpacked.0);
    run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked.0),
        "dpkg -x",
    )?;
    let boot = unpacked.0.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(|e| format!("the package has no /boot: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the package has no /boot/vmlinuz-*")?;
    let mut modules = Vec::new();
    let mut stack = vec![unpacked.0.join("lib/modules")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                if MODULES.contains(&name) {
                    modules.push((name.to_string(), p));
                }
            }
        }
    }
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
    ] {
        archive.dir(d);
    }
    archive.char_device("dev/console", 5, 1);
    archive.file("init", 0o755, INIT.as_bytes());
    archive.file("udhcpc.sh", 0o755, UDHCPC.as_bytes());
    archive.file(
        "bin/busybox",
        0o755,
        &std::fs::read(busybox).map_err(|e| e.to_string())?,
    );
    for (name, path) in &modules {
        archive.file(
            &format!("lib/modules/{name}.ko"),
            0o644,
            &std::fs::read(path).map_err(|e| e.to_string())?,
        );
    }
    let cpio = archive.finish();
    let kernel_out = out.join("vmlinuz");
    let initrd_out = out.join("initrd.img");
    std::fs::copy(&vmlinuz, &kernel_out)
        .map_err(|e| format!("cannot write {}: {e}", kernel_out.display()))?;
    let mut gz = Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    let mut stdin = gz.stdin.take().ok_or("gzip has no stdin")?;
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &cpio));
    let compressed = gz.wait_with_output().map_err(|e| e.to_string())?;
    writer
        .join()
        .map_err(|_| "gzip writer panicked")?
        .map_err(|e| e.to_string())?;
    let tmp = out.join(".initrd.img.tmp");
    std::fs::write(&tmp, &compressed.stdout).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &initrd_out).map_err(|e| e.to_string())?;
    tracing::info!(modules = modules.len(), "ramdisk built");
    Ok((kernel_out, initrd_out))
}

/// The unpacked package, removed when done.
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
        while self.out.len() % 4 != 0 {
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
