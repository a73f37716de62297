//! The virtual-media ISO boots under both firmwares: built from the deploy
//! ramdisk (`rackboot ramdisk build`) and a node's rendered boot configs,
//! it is booted by QEMU (TCG) from its CD drive under SeaBIOS (ISOLINUX)
//! and under OVMF (UEFI, GRUB), and each time the kernel runs with the
//! deploy ramdisk's command line — the iPXE script's arguments plus the
//! network settings — as the serial console shows.

use rackboot::foundation::config::Config;
use rackboot::foundation::templates::{BootVars, Mode, NetVars, NodeVars, Templates, Urls};
use rackboot::service::ramdisk::iso;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rackboot");

/// The deploy ramdisk, built once per target folder (shared with
/// tests/lab.rs's cache folder when it exists).
fn ramdisk() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmedia-ramdisk");
    if !dir.join("vmlinuz").exists() {
        let out = Command::new(BIN)
            .args(["ramdisk", "build", "--out"])
            .arg(&dir)
            .arg("--agent")
            .arg(agent())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ramdisk build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// The statically linked agent tests/run.sh builds before the tests.
fn agent() -> PathBuf {
    let agent = Path::new(BIN)
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.join("release/rackboot-agent"))
        .expect("the rackboot binary lives in target/<profile>/");
    assert!(
        agent.is_file(),
        "{} is missing: build it with `cargo rustc --release -p rackboot-agent --bin rackboot-agent -- -C target-feature=+crt-static` (tests/run.sh does)",
        agent.display()
    );
    agent
}

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots `iso` from the CD drive (UEFI with OVMF when `uefi`) until the
/// kernel prints its command line; returns the serial console.
fn boot(iso: &Path, uefi: bool, dir: &Path) -> String {
    let serial = dir.join(if uefi { "uefi.log" } else { "bios.log" });
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-nographic",
        "-nodefaults",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .arg("-cdrom")
    .arg(iso)
    .args(["-boot", "d"]);
    if uefi {
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).expect("ovmf installed");
        cmd.args([
            "-drive",
            "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        ])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    let _vm = Qemu(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 installed"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).to_string();
        if text.contains("Command line:") && text.contains("rackboot.node=") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the {} boot never reached the kernel:\n{text}",
            if uefi { "UEFI" } else { "BIOS" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_virtual_media_iso_boots_under_bios_and_uefi() {
    let ramdisk = ramdisk();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(&format!(
        "[deploy]\nkernel = \"{0}/vmlinuz\"\ninitrd = \"{0}/initrd.img\"\n",
        ramdisk.display()
    ))
    .unwrap();
    let node = NodeVars {
        node_id: "n-ISOTEST1".into(),
        hostname: "iso01".into(),
        mac: "52:54:00:98:00:42".into(),
        cpu_arch: "x86_64".into(),
        os_disk_name: "vda".into(),
        os_version: String::new(),
        mgmt: NetVars {
            address: "10.98.0.42".into(),
            netmask: "255.255.255.0".into(),
            gateway: "10.98.0.1".into(),
            ..Default::default()
        },
        public: NetVars::default(),
    };
    let urls = Urls {
        address: "10.98.0.1",
        http_port: 8080,
    };
    let vars = BootVars::new(Mode::Inspect, &node, None, &cfg, &urls, "t0k3n");
    let t = Templates::load(None).unwrap();
    let grub = t.render("vmedia/grub.cfg", &vars).unwrap();
    let isolinux = t.render("vmedia/isolinux.cfg", &vars).unwrap();
    let out = dir.path().join("deploy.iso");
    let started = Instant::now();
    iso::build(
        &iso::IsoSpec {
            kernel: &ramdisk.join("vmlinuz"),
            initrd: &ramdisk.join("initrd.img"),
            grub_cfg: &grub,
            isolinux_cfg: &isolinux,
            label: "n-ISOTEST1",
        },
        &dir.path().join("cache"),
        &out,
    )
    .unwrap();
    println!(
        "ISO built in {:?} ({} bytes)",
        started.elapsed(),
        std::fs::metadata(&out).unwrap().len()
    );
    let want = "rackboot.mode=inspect rackboot.node=n-ISOTEST1 rackboot.callback=http://10.98.0.1:8080/callback/n-ISOTEST1/t0k3n BOOTIF=01-52-54-00-98-00-42 rackboot.ip=10.98.0.42/24 rackboot.gateway=10.98.0.1";
    for uefi in [false, true] {
        let serial = boot(&out, uefi, dir.path());
        let line = serial
            .lines()
            .find(|l| l.contains("Command line:"))
            .unwrap()
            .to_string();
        assert!(line.contains(want), "{line}");
        assert!(line.contains("console=ttyS0,115200"), "{line}");
        // Which loader booted it: ISOLINUX under SeaBIOS, GRUB under OVMF.
        if uefi {
            assert!(!serial.contains("ISOLINUX"), "{serial}");
        } else {
            assert!(serial.contains("ISOLINUX"), "{serial}");
        }
    }
}
