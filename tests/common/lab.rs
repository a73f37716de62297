//! The built-in lab (`rackboot lab up`) as tests drive it: a temporary
//! folder and namespace per lab, the API of its daemon, ipmitool against
//! its VMs' BMCs, and what a disk file holds; `lab down` on drop.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rackboot");

/// The kernel package cache, filled once (the first build downloads the
/// .deb); each lab builds its own ramdisk from it.
pub fn ramdisk() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-ramdisk");
    if !dir.join("cache").exists() {
        let out = Command::new(BIN)
            .args(["ramdisk", "build", "--out"])
            .arg(&dir)
            .arg("--agent")
            .arg(super::agent())
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

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub netns: String,
}

impl Lab {
    pub fn up(tag: &str, args: &[&str]) -> (Lab, String) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the lab test needs root (CI is root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("ramdisk/cache");
        std::fs::create_dir_all(&cache).unwrap();
        for deb in std::fs::read_dir(ramdisk().join("cache"))
            .unwrap()
            .flatten()
        {
            if deb.path().extension().is_some_and(|e| e == "deb") {
                std::fs::copy(deb.path(), cache.join(deb.file_name())).unwrap();
            }
        }
        let netns = format!("rbt-lab{tag}-{}", std::process::id());
        let lab = Lab { dir, netns };
        let out = Command::new(BIN)
            .args(["lab", "up", "--dir"])
            .arg(lab.dir.path())
            .arg("--agent")
            .arg(super::agent())
            .args(["--netns", &lab.netns])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "lab up failed:\n{text}\ndaemon log:\n{}",
            std::fs::read_to_string(lab.dir.path().join("rackboot.log")).unwrap_or_default()
        );
        (lab, text)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn api(&self, request: Value) -> Value {
        let password = std::fs::read_to_string(self.path("state/admin.password")).unwrap();
        rackboot::entry::lab::api(&self.path("state/api.sock"), password.trim(), request).unwrap()
    }

    pub fn ok(&self, request: Value) -> Value {
        let r = self.api(request.clone());
        assert_eq!(r["ret_code"], 0, "{request} → {r}");
        r
    }

    pub fn ipmitool(&self, vm: u32, args: &[&str]) -> String {
        let port = (6230 + vm).to_string();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "ipmitool",
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                "10.99.0.1",
                "-p",
                &port,
                "-U",
                "admin",
                "-P",
                "password",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn vm_running(&self, vm: u32) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.path(&format!("vm{vm}/vm.pid"))) else {
            return false;
        };
        let pid: i32 = pid.trim().parse().unwrap_or(0);
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }

    pub fn wait_job(&self, job: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.ok(json!({"action": "GetStatus", "job_id": job, "job_action": self.ok(json!({"action": "GetStatus", "job_id": job, "job_action": "ProvisionBMNodes"})).get("job_action").and_then(Value::as_str).unwrap_or("ProvisionBMNodes")}));
            if s["status"] == "successful" || s["status"] == "failed" {
                return s;
            }
            assert!(Instant::now() < deadline, "job {job} still running: {s}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["lab", "down", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// The first `n` bytes of a (sparse, large) disk file.
pub fn head(path: &Path, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    std::io::Read::read_exact(&mut std::fs::File::open(path).unwrap(), &mut out).unwrap();
    out
}

/// Whether disk `a` holds image `b`, but for sector 1, where the deploy
/// leaves the first-boot callback URL.
pub fn holds_image(a: &Path, b: &Path) -> bool {
    let b = std::fs::read(b).unwrap();
    let a = head(a, b.len());
    a.len() >= b.len()
        && a[..512] == b[..512]
        && a[1024..b.len()] == b[1024..]
        && String::from_utf8_lossy(&a[512..1024])
            .starts_with("rackboot-firstboot http://10.99.0.1:8080/callback/")
}
