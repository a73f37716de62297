//! rackboot-agent: the program of rackboot's deploy ramdisk (`/init` mounts
//! /proc, /sys, /dev and runs it). It loads the drivers the hardware needs
//! by modalias coldplug, brings up the provisioning NIC (the one whose MAC
//! is `BOOTIF`), reports the machine's inventory, and in deploy mode writes
//! the image the daemon's answer names to the disk it chose (root-device
//! hints), with progress and a checksum, then reports `done`. Every step
//! prints a `rackboot-agent:` line on the console; a failure is also
//! reported to the daemon (`failed`) whenever the network is up.

mod bmc;
mod cmdline;
mod disks;
mod inventory;
mod modules;
mod net;
mod report;
mod scsi;
mod write;

use cmdline::{Args, Mode};
use report::{Plan, Reporter};
use std::path::Path;
use std::time::{Duration, Instant};

fn say(line: &str) {
    println!("rackboot-agent: {line}");
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn mount(source: &str, target: &str, fstype: &str) -> Result<(), String> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
    let (s, t, f) = (c(source)?, c(target)?, c(fstype)?);
    // SAFETY: all three are valid NUL-terminated strings that outlive the call.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// The callback URL a deploy left in sector 1 of one of the disks
/// (`rackboot-firstboot <url>`), for the lab's test image.
fn firstboot_callback() -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    for d in inventory::disks(Path::new("/")) {
        let Ok(mut f) = std::fs::File::open(Path::new("/dev").join(&d.name)) else {
            continue;
        };
        let mut sector = [0u8; 512];
        if f.seek(SeekFrom::Start(512)).is_ok() && f.read_exact(&mut sector).is_ok() {
            let text = String::from_utf8_lossy(&sector);
            if let Some(rest) = text.strip_prefix("rackboot-firstboot ") {
                let url = rest.split(['\n', '\0']).next().unwrap_or("").trim();
                if url.starts_with("http://") {
                    return Some(url.to_string());
                }
            }
        }
    }
    None
}

fn main() {
    if let Err(e) = run() {
        say(&format!("stopped: {e}"));
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let started = Instant::now();
    let cmdline =
        std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    let mut args = Args::parse(&cmdline)?;
    say(&format!(
        "{} starting, mode {:?}, {:.1} s after kernel start",
        env!("CARGO_PKG_VERSION"),
        args.mode,
        uptime()
    ));

    let index = modules::Index::parse(
        &std::fs::read_to_string("/lib/modules/rackboot.modules").unwrap_or_default(),
    );
    let mut loader = modules::Loader::new(index, "/lib/modules".into());
    if Path::new("/sys/firmware/efi").exists() {
        loader.load("efivarfs");
        let _ = mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs");
    }
    loader.coldplug(Duration::from_millis(1500), Duration::from_secs(60));
    say(&format!(
        "loaded {} of {} module(s) by modalias in {:.1} s: {}",
        loader.loaded.len(),
        loader.index.len(),
        started.elapsed().as_secs_f64(),
        loader.loaded.join(" ")
    ));
    for f in &loader.failed {
        say(&format!("module failed: {f}"));
    }

    if args.mode == Mode::Firstboot {
        args.callback = firstboot_callback()
            .ok_or("first boot: no rackboot-firstboot callback URL in sector 1 of any disk")?;
    }
    let nics = inventory::nics(Path::new("/"));
    let iface = net::up(&args, &nics, &mut |m| loader.load(m))?;
    say(&format!("network up on {iface}"));
    let reporter = Reporter::new(&args.callback);
    if args.mode == Mode::Firstboot {
        reporter.event("booted", &[])?;
        say("booted from disk; rackboot was told");
        return Ok(());
    }

    let mut inv = inventory::collect(Path::new("/"));
    inv.bmc = bmc::read(&mut |m| loader.load(m));
    if let Some(b) = &inv.bmc {
        say(&format!(
            "BMC in-band: LAN channel {} at {} (MAC {})",
            b.channel, b.ip, b.mac
        ));
    }
    say(&format!(
        "{} disk(s): {}; {} NIC(s); boot mode {}{}",
        inv.disks.len(),
        inv.disks
            .iter()
            .map(|d| format!(
                "{} {} MiB {} {}",
                d.name,
                d.size_bytes >> 20,
                d.driver,
                d.serial
            ))
            .collect::<Vec<_>>()
            .join(", "),
        inv.nics.len(),
        inv.boot_mode,
        if inv.secure_boot {
            ", Secure Boot on"
        } else {
            ""
        }
    ));
    let json = serde_json::to_string(&inv).map_err(|e| e.to_string())?;
    let plan = reporter.inventory(&json)?;
    match (args.mode, plan) {
        (
            Mode::Deploy,
            Plan::Deploy {
                disk,
                why,
                image,
                first_boot,
                seed,
            },
        ) => {
            say(&format!("writing {} to /dev/{disk} ({why})", image.path));
            let result = deploy(
                &reporter,
                &args,
                &disk,
                &image,
                first_boot,
                seed.as_ref(),
                &mut |m| loader.load(m),
            );
            match result {
                Ok(bytes) => {
                    reporter.event("done", &[])?;
                    say(&format!(
                        "image written ({bytes} bytes) in {:.1} s; waiting for rackboot to power-cycle this machine",
                        started.elapsed().as_secs_f64()
                    ));
                    Ok(())
                }
                Err(e) => {
                    let _ = reporter.event("failed", &[("message", &e)]);
                    Err(e)
                }
            }
        }
        (Mode::Clean, Plan::Wipe { disks, how }) => {
            for disk in &disks {
                say(&format!("wiping /dev/{disk} ({how})"));
                let t = Instant::now();
                let result = disks::wipe(disk, &how, &mut |done, total| {
                    if how == "zero" {
                        let _ = reporter.event(
                            "progress",
                            &[("bytes", &done.to_string()), ("total", &total.to_string())],
                        );
                    }
                });
                match result {
                    Ok(bytes) => say(&format!(
                        "/dev/{disk}: {} MiB zeroed in {:.1} s",
                        bytes >> 20,
                        t.elapsed().as_secs_f64()
                    )),
                    Err(e) => {
                        let _ = reporter.event("failed", &[("message", &e)]);
                        return Err(e);
                    }
                }
            }
            reporter.event("done", &[])?;
            say(&format!(
                "{} disk(s) wiped; waiting for rackboot to power this machine off",
                disks.len()
            ));
            Ok(())
        }
        (Mode::Clean, _) => {
            Err("the daemon sent no wipe plan (is the node still cleaning?)".into())
        }
        (Mode::Deploy, Plan::Wait) => {
            Err("the daemon sent no image to write (is the node still provisioning?)".into())
        }
        _ => {
            reporter.event("done", &[])?;
            say("inventory sent");
            Ok(())
        }
    }
}

fn deploy(
    reporter: &Reporter,
    args: &Args,
    disk: &str,
    image: &report::Image,
    first_boot: bool,
    seed: Option<&disks::Seed>,
    load: &mut dyn FnMut(&str) -> bool,
) -> Result<u64, String> {
    if disk.is_empty() || disk.contains('/') {
        return Err(format!("the daemon named no usable disk (`{disk}`)"));
    }
    let dev = Path::new("/dev").join(disk);
    let sectors: u64 = std::fs::read_to_string(Path::new("/sys/block").join(disk).join("size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("no disk /dev/{disk} on this machine"))?;
    if image.virtual_size > sectors * 512 {
        return Err(format!(
            "the image ({} bytes) is larger than /dev/{disk} ({} bytes)",
            image.virtual_size,
            sectors * 512
        ));
    }
    let url = if image.path.starts_with("http://") {
        image.path.clone()
    } else {
        format!("{}{}", args.origin(), image.path)
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .map_err(|e| format!("cannot open /dev/{disk}: {e}"))?;
    let mut target = write::Disk { file };
    let job = write::Job {
        extents: &image.extents,
        virtual_size: image.virtual_size,
        digest: &image.digest,
    };
    let mut source = write::Http {
        agent: report::agent(),
        url: url.clone(),
    };
    say(&format!(
        "{} MiB of data in {} extent(s) over a {} MiB image",
        image.data_bytes >> 20,
        image.extents.len(),
        image.virtual_size >> 20
    ));
    let bytes = write::write_image(&job, &mut source, &mut target, &mut |done, total| {
        if total > 0 {
            let _ = reporter.event(
                "progress",
                &[("bytes", &done.to_string()), ("total", &total.to_string())],
            );
        }
    })?;
    let mut file = target.file;
    file.sync_all()
        .map_err(|e| format!("flushing /dev/{disk}: {e}"))?;
    // The installed OS's cloud-init seed (hostname, keys, network) goes into
    // its root file system; an image without one (not Linux) gets none.
    let mut seeded = false;
    if let Some(seed) = seed {
        // A disk the kernel cannot re-read (busy) gets no seed; the image
        // is written all the same.
        match disks::reread(&file).and_then(|()| disks::write_seed(disk, seed, load)) {
            Ok(at) => {
                seeded = true;
                say(&format!("cloud-init seed written to {at}"));
                let _ = reporter.event(
                    "log",
                    &[("message", &format!("cloud-init seed written to {at}"))],
                );
            }
            Err(e) => {
                say(&format!("no cloud-init seed: {e}"));
                let _ = reporter.event("log", &[("message", &format!("no cloud-init seed: {e}"))]);
            }
        }
    }
    // The lab's test image (no cloud-init) finds its first-boot callback in
    // sector 1; never over a GPT header.
    let gpt = {
        use std::io::{Read, Seek, SeekFrom};
        let mut head = [0u8; 8];
        file.seek(SeekFrom::Start(512))
            .and_then(|_| file.read_exact(&mut head))
            .is_ok()
            && &head == b"EFI PART"
    };
    if first_boot && !seeded && !gpt {
        use std::io::{Seek, SeekFrom, Write};
        let mut sector = format!("rackboot-firstboot {}\n", args.callback).into_bytes();
        sector.resize(512, 0);
        file.seek(SeekFrom::Start(512))
            .and_then(|_| file.write_all(&sector))
            .map_err(|e| format!("cannot leave the first-boot note on /dev/{disk}: {e}"))?;
    }
    file.sync_all()
        .map_err(|e| format!("flushing /dev/{disk}: {e}"))?;
    Ok(bytes)
}
