//! What the agent does to a disk after (or instead of) writing an image:
//! re-reading its partition table, finding the installed OS's root file
//! system and leaving the cloud-init NoCloud seed in it, and wiping disks
//! for UnprovisionBMNodes (metadata at both ends, or every byte).

use serde::Deserialize;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `BLKRRPART`: re-read the partition table.
const BLKRRPART: libc::c_ulong = 0x125f;
/// `BLKZEROOUT`: zero a byte range (offset, length).
const BLKZEROOUT: libc::c_ulong = 0x127f;
const MIB: u64 = 1 << 20;

/// The NoCloud seed's three files (rendered by the daemon).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Seed {
    #[serde(rename = "meta-data")]
    pub meta_data: String,
    #[serde(rename = "user-data")]
    pub user_data: String,
    #[serde(rename = "network-config")]
    pub network_config: String,
}

/// A partition of a disk, as sysfs lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub name: String,
    /// Start and size in bytes.
    pub start: u64,
    pub size: u64,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The partitions of `disk` under `sys_block` (`/sys/block`), largest
/// first.
pub fn partitions(sys_block: &Path, disk: &str) -> Vec<Partition> {
    let dir = sys_block.join(disk);
    let mut found: Vec<Partition> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("partition").is_file())
        .filter_map(|e| {
            let p = e.path();
            Some(Partition {
                name: e.file_name().to_string_lossy().into_owned(),
                start: read_u64(&p.join("start"))? * 512,
                size: read_u64(&p.join("size"))? * 512,
            })
        })
        .collect();
    found.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    found
}

/// Asks the kernel to re-read `file`'s partition table (it was just
/// written), retrying while the disk is busy.
pub fn reread(file: &File) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..10 {
        // SAFETY: BLKRRPART takes no argument.
        if unsafe { libc::ioctl(file.as_raw_fd(), BLKRRPART as _, 0) } == 0 {
            return Ok(());
        }
        last = std::io::Error::last_os_error().to_string();
        std::thread::sleep(Duration::from_millis(300));
    }
    Err(format!(
        "the kernel could not re-read the partition table: {last}"
    ))
}

fn c(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap_or_default()
}

/// Mounts `dev` at `at` as one of the file systems an installed Linux
/// root uses; the type that worked.
fn mount_any(dev: &Path, at: &Path) -> Result<&'static str, String> {
    let mut errors = Vec::new();
    for fstype in ["ext4", "xfs"] {
        let (s, t, f) = (
            c(&dev.to_string_lossy()),
            c(&at.to_string_lossy()),
            c(fstype),
        );
        // SAFETY: valid NUL-terminated strings that outlive the call.
        if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) } == 0 {
            return Ok(fstype);
        }
        errors.push(format!("{fstype}: {}", std::io::Error::last_os_error()));
    }
    Err(errors.join(", "))
}

fn umount(at: &Path) {
    let t = c(&at.to_string_lossy());
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::umount2(t.as_ptr(), 0) };
}

/// Writes `seed` into the installed OS's root file system on `disk`: the
/// partition (largest first) holding `etc/os-release` or
/// `usr/lib/os-release` gets `/var/lib/cloud/seed/nocloud/`. `load` loads
/// a kernel module by name (the file systems). Returns where it went, or
/// why nowhere.
pub fn write_seed(
    disk: &str,
    seed: &Seed,
    load: &mut dyn FnMut(&str) -> bool,
) -> Result<String, String> {
    // The file systems and the crc32c they checksum with (the kernel asks
    // for it by name, and the ramdisk has no modprobe to answer).
    for m in ["crc32c_intel", "crc32c_generic", "ext4", "xfs"] {
        load(m);
    }
    // The partition nodes appear shortly after the table is re-read.
    let mut parts = Vec::new();
    for _ in 0..20 {
        parts = partitions(Path::new("/sys/block"), disk);
        if !parts.is_empty()
            && parts
                .iter()
                .all(|p| Path::new("/dev").join(&p.name).exists())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if parts.is_empty() {
        return Err(format!(
            "/dev/{disk} has no partitions after the image was written: no place for the cloud-init seed"
        ));
    }
    let at = PathBuf::from("/mnt/rackboot-root");
    std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
    let mut tried = Vec::new();
    for p in &parts {
        let dev = Path::new("/dev").join(&p.name);
        let fstype = match mount_any(&dev, &at) {
            Ok(t) => t,
            Err(e) => {
                tried.push(format!("{} ({e})", p.name));
                continue;
            }
        };
        let is_root = at.join("etc/os-release").exists() || at.join("usr/lib/os-release").exists();
        if !is_root {
            umount(&at);
            tried.push(format!("{} ({fstype}, not a root file system)", p.name));
            continue;
        }
        let result = put_seed(&at, seed);
        umount(&at);
        return result.map(|()| format!("{} ({fstype})", p.name));
    }
    Err(format!(
        "no Linux root file system on /dev/{disk} for the cloud-init seed; partitions: {}",
        tried.join(", ")
    ))
}

/// Writes the seed's files under `root` (user data may hold secrets: 0600).
pub fn put_seed(root: &Path, seed: &Seed) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = root.join("var/lib/cloud/seed/nocloud");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text, mode) in [
        ("meta-data", &seed.meta_data, 0o644),
        ("network-config", &seed.network_config, 0o600),
        ("user-data", &seed.user_data, 0o600),
    ] {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The byte ranges a metadata wipe clears on a disk of `size` bytes with
/// `parts`: the first and last MiB of the disk (MBR, both GPT copies) and
/// of every partition (file-system, LVM and RAID signatures), clipped.
pub fn metadata_ranges(size: u64, parts: &[Partition]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut both_ends = |start: u64, len: u64| {
        let n = len.min(MIB);
        out.push((start, n));
        if len > MIB {
            out.push((start + len - n, n));
        }
    };
    both_ends(0, size);
    for p in parts {
        if p.start < size {
            both_ends(p.start, p.size.min(size - p.start));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Zeroes `[offset, offset+len)` of `file`: BLKZEROOUT (the device clears
/// it without data moving when it can), else plain writes.
fn zero(file: &mut File, offset: u64, len: u64) -> Result<(), String> {
    let range = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64s from `range`.
    if unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) } == 0 {
        return Ok(());
    }
    let zeros = vec![0u8; MIB as usize];
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        file.write_all(&zeros[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    Ok(())
}

/// Wipes `disk` as `how` says (`metadata` or `zero`), telling `progress`
/// (bytes done, bytes to do); then the kernel re-reads the (now empty)
/// partition table.
pub fn wipe(disk: &str, how: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<u64, String> {
    if disk.is_empty() || disk.contains('/') {
        return Err(format!("the daemon named no usable disk (`{disk}`)"));
    }
    let size = read_u64(&Path::new("/sys/block").join(disk).join("size"))
        .ok_or_else(|| format!("no disk /dev/{disk} on this machine"))?
        * 512;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new("/dev").join(disk))
        .map_err(|e| format!("cannot open /dev/{disk}: {e}"))?;
    let ranges = match how {
        "metadata" => metadata_ranges(size, &partitions(Path::new("/sys/block"), disk)),
        "zero" => {
            let chunk = 256 * MIB;
            (0..size.div_ceil(chunk))
                .map(|i| (i * chunk, chunk.min(size - i * chunk)))
                .collect()
        }
        other => return Err(format!("unknown wipe `{other}`")),
    };
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    let mut done = 0;
    for (offset, len) in ranges {
        zero(&mut file, offset, len).map_err(|e| format!("wiping /dev/{disk} at {offset}: {e}"))?;
        done += len;
        progress(done, total);
    }
    file.sync_all()
        .map_err(|e| format!("flushing /dev/{disk}: {e}"))?;
    // The partitions are gone: tell the kernel (best effort: a busy disk
    // keeps its old view until reboot, the bytes are wiped anyway).
    let _ = reread(&file);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_wipe_covers_both_ends_of_the_disk_and_of_each_partition() {
        let parts = vec![
            Partition {
                name: "sda1".into(),
                start: MIB,
                size: 100 * MIB,
            },
            Partition {
                name: "sda2".into(),
                start: 101 * MIB,
                size: 512 * 1024,
            },
        ];
        let r = metadata_ranges(1024 * MIB, &parts);
        assert_eq!(
            r,
            vec![
                (0, MIB),
                (MIB, MIB),
                (100 * MIB, MIB),
                (101 * MIB, 512 * 1024),
                (1023 * MIB, MIB)
            ]
        );
        // A tiny disk: one range, never past its end.
        assert_eq!(metadata_ranges(4096, &[]), vec![(0, 4096)]);
    }

    #[test]
    fn partitions_are_read_from_sysfs_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        for (name, start, size) in [("sda1", 2048u64, 1000u64), ("sda2", 4096, 9000)] {
            let p = dir.path().join("sda").join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("partition"), "1\n").unwrap();
            std::fs::write(p.join("start"), format!("{start}\n")).unwrap();
            std::fs::write(p.join("size"), format!("{size}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("sda/queue")).unwrap();
        let parts = partitions(dir.path(), "sda");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "sda2");
        assert_eq!((parts[0].start, parts[0].size), (4096 * 512, 9000 * 512));
    }

    #[test]
    fn the_seed_lands_where_nocloud_looks_with_user_data_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed {
            meta_data: "instance-id: x\n".into(),
            user_data: "#cloud-config\n".into(),
            network_config: "version: 2\n".into(),
        };
        put_seed(dir.path(), &seed).unwrap();
        let d = dir.path().join("var/lib/cloud/seed/nocloud");
        assert_eq!(
            std::fs::read_to_string(d.join("meta-data")).unwrap(),
            "instance-id: x\n"
        );
        let mode = std::fs::metadata(d.join("user-data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
