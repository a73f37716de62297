//! The deploy ramdisk as a bootable ISO, for virtual-media deploys: one per
//! node (its boot configs carry the node's deploy token and network
//! settings), booting under legacy BIOS (ISOLINUX, El Torito, isohybrid)
//! and UEFI (a FAT El Torito image holding a standalone GRUB that finds the
//! CD and reads its `boot/grub/grub.cfg`). The GRUB image is the same for
//! every node and built once (`efiboot.img` in the cache folder); the ISO
//! itself is written by `xorriso` from files mapped in place (`-graft-points`,
//! nothing copied but the two small configs). Debian packages: xorriso,
//! isolinux, syslinux-common, grub-efi-amd64-bin, mtools, dosfstools.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where ISOLINUX and its loader live on Debian (isolinux, syslinux-common).
const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
const ISOHDPFX: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
const LDLINUX: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
/// GRUB's x86_64 UEFI modules (grub-efi-amd64-bin).
const GRUB_EFI_MODULES: &str = "/usr/lib/grub/x86_64-efi";
/// A file only rackboot's ISOs hold: GRUB finds the CD by it.
const MARKER: &str = "rackboot-vmedia";

/// The Debian packages the ISO needs.
pub const PACKAGES: &str = "xorriso isolinux syslinux-common grub-efi-amd64-bin mtools dosfstools";

/// What one node's ISO holds.
pub struct IsoSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// `vmedia/grub.cfg`, rendered for the node.
    pub grub_cfg: &'a str,
    /// `vmedia/isolinux.cfg`, rendered for the node.
    pub isolinux_cfg: &'a str,
    /// A label for the volume (the node id).
    pub label: &'a str,
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(inside: &Path, prefix: &str) -> Result<Scratch, String> {
        let p = inside.join(format!(
            "{prefix}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Scratch(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "{what}: cannot run {:?} ({e}); install {PACKAGES}",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!(
            "{what} failed: {}",
            last.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(())
}

/// Checks that every file the ISO needs from the system is there.
pub fn check_tools() -> Result<(), String> {
    for f in [ISOLINUX_BIN, ISOHDPFX, LDLINUX] {
        if !Path::new(f).is_file() {
            return Err(format!("{f} is missing: install {PACKAGES}"));
        }
    }
    if !Path::new(GRUB_EFI_MODULES).join("normal.mod").is_file() {
        return Err(format!("{GRUB_EFI_MODULES} is missing: install {PACKAGES}"));
    }
    for tool in ["xorriso", "grub-mkstandalone", "mkfs.vfat", "mcopy", "mmd"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).is_file()
            || Path::new("/sbin").join(tool).is_file();
        if !found {
            return Err(format!("{tool} is missing: install {PACKAGES}"));
        }
    }
    Ok(())
}

/// The UEFI El Torito image (FAT with `EFI/BOOT/BOOTX64.EFI`, a standalone
/// GRUB whose built-in config finds the CD by its marker file and reads the
/// CD's `boot/grub/grub.cfg`), built once into `cache`.
pub fn efi_image(cache: &Path) -> Result<PathBuf, String> {
    let img = cache.join("efiboot.img");
    if img.is_file() {
        return Ok(img);
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let work = Scratch::new(cache, "efiboot")?;
    let embedded = work.path().join("embedded.cfg");
    std::fs::write(
        &embedded,
        format!(
            "search --no-floppy --set=root --file /{MARKER}\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let efi = work.path().join("BOOTX64.EFI");
    run(
        Command::new("grub-mkstandalone")
            .args(["-O", "x86_64-efi", "-d", GRUB_EFI_MODULES])
            .arg("--modules=part_gpt part_msdos iso9660 search search_fs_file configfile normal linux serial terminal echo test")
            .args(["--locales=", "--fonts=", "--themes="])
            .arg("-o")
            .arg(&efi)
            .arg(format!("boot/grub/grub.cfg={}", embedded.display())),
        "grub-mkstandalone",
    )?;
    let size = std::fs::metadata(&efi).map_err(|e| e.to_string())?.len();
    // FAT12/16 with room to spare (KiB).
    let kib = (size / 1024 + 512).max(1440);
    let tmp = work.path().join("efiboot.img");
    run(
        Command::new("mkfs.vfat")
            .args(["-C", "-n", "RACKBOOT"])
            .arg(&tmp)
            .arg(kib.to_string()),
        "mkfs.vfat",
    )?;
    let i = tmp.to_string_lossy().to_string();
    run(
        Command::new("mmd").args(["-i", &i, "::/EFI", "::/EFI/BOOT"]),
        "mmd",
    )?;
    run(
        Command::new("mcopy")
            .args(["-i", &i])
            .arg(&efi)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
        "mcopy",
    )?;
    std::fs::rename(&tmp, &img).map_err(|e| e.to_string())?;
    Ok(img)
}

/// Writes the ISO of `spec` to `out` (atomically: a temporary file renamed).
pub fn build(spec: &IsoSpec<'_>, cache: &Path, out: &Path) -> Result<(), String> {
    check_tools()?;
    for f in [spec.kernel, spec.initrd] {
        if !f.is_file() {
            return Err(format!(
                "{} is missing: build the deploy ramdisk (rackboot ramdisk build) or set [deploy] kernel/initrd",
                f.display()
            ));
        }
    }
    let efi = efi_image(cache)?;
    let dir = out
        .parent()
        .ok_or_else(|| format!("{}: no folder", out.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let work = Scratch::new(dir, ".iso")?;
    let grub = work.path().join("grub.cfg");
    let isolinux = work.path().join("isolinux.cfg");
    let marker = work.path().join(MARKER);
    std::fs::write(&grub, spec.grub_cfg).map_err(|e| e.to_string())?;
    std::fs::write(&isolinux, spec.isolinux_cfg).map_err(|e| e.to_string())?;
    std::fs::write(&marker, format!("{}\n", spec.label)).map_err(|e| e.to_string())?;
    let tmp = work.path().join("out.iso");
    let graft = |inside: &str, from: &Path| format!("{inside}={}", from.display());
    let label: String = spec
        .label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect::<String>()
        .to_ascii_uppercase();
    run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-iso-level", "3", "-J", "-R"])
            .args(["-V", &format!("RB_{label}")])
            .args(["-isohybrid-mbr", ISOHDPFX])
            .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
            .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
            .args(["-eltorito-alt-boot", "-e", "efiboot.img", "-no-emul-boot"])
            .arg("-isohybrid-gpt-basdat")
            .arg("-o")
            .arg(&tmp)
            .arg("-graft-points")
            .arg(graft("isolinux/isolinux.bin", Path::new(ISOLINUX_BIN)))
            .arg(graft("isolinux/ldlinux.c32", Path::new(LDLINUX)))
            .arg(graft("isolinux/isolinux.cfg", &isolinux))
            .arg(graft("boot/grub/grub.cfg", &grub))
            .arg(graft("boot/vmlinuz", spec.kernel))
            .arg(graft("boot/initrd.img", spec.initrd))
            .arg(graft("efiboot.img", &efi))
            .arg(graft(MARKER, &marker)),
        "xorriso",
    )?;
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}
