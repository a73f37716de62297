//! Test harness: starts the real `rackboot` binary on a temporary state
//! directory, waits for its socket to answer (never a fixed sleep), and talks
//! to it through the real Unix socket.
#![allow(dead_code)]

pub mod fakebmc;
pub mod fakeredfish;
pub mod interactive;
pub mod lab;
pub mod netns;
pub mod sim;
pub mod sshd;

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rackboot");

pub struct Daemon {
    pub dir: tempfile::TempDir,
    /// Network namespace the daemon runs in (its socket is still a file).
    pub netns: Option<String>,
    pub child: Option<Child>,
    pub config: Option<PathBuf>,
    runtime: tokio::runtime::Runtime,
    starts: u32,
    /// Run as under systemd with its stderr on the journal: JOURNAL_STREAM
    /// names the log file (from the next start).
    pub journal_stream: bool,
}

impl Daemon {
    /// Starts a daemon on a fresh state directory with embedded defaults.
    pub fn start() -> Daemon {
        Self::start_with(None, |_| {})
    }

    /// Starts a daemon with `config` (TOML text) if given, after `prepare`
    /// has had the state directory (to seed the database, say).
    pub fn start_with(config: Option<&str>, prepare: impl FnOnce(&Path)) -> Daemon {
        Self::launch(None, config, prepare)
    }

    /// Like [`Daemon::start_with`], with the daemon inside network namespace `ns`.
    pub fn start_in_netns(ns: &str, config: Option<&str>, prepare: impl FnOnce(&Path)) -> Daemon {
        Self::launch(Some(ns), config, prepare)
    }

    fn launch(netns: Option<&str>, config: Option<&str>, prepare: impl FnOnce(&Path)) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        // Tests register BMCs at made-up addresses: the power-sync loop must
        // never poll them unless a test turns it on itself.
        let text = match config {
            None => "[ipmi]\npower_sync_interval = 0\n".to_string(),
            Some(t) if t.contains("power_sync_interval") => t.to_string(),
            Some(t) if t.contains("[ipmi]\n") => {
                t.replacen("[ipmi]\n", "[ipmi]\npower_sync_interval = 0\n", 1)
            }
            Some(t) => format!("{t}\n[ipmi]\npower_sync_interval = 0\n"),
        };
        let p = dir.path().join("rackboot.toml");
        std::fs::write(&p, text).unwrap();
        let config = Some(p);
        let mut d = Daemon {
            dir,
            netns: netns.map(str::to_string),
            child: None,
            config,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            starts: 0,
            journal_stream: false,
        };
        d.spawn();
        d
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("daemon-{}.log", self.starts))
    }

    /// The daemon's log of its current (or last) run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the program: the child's pid is the daemon's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("serve").arg("--state-dir").arg(self.dir.path());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        // RUNTIME_DIRECTORY (set when this runs under a systemd unit) would
        // move the socket out of the test's state directory.
        cmd.env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("JOURNAL_STREAM");
        if self.journal_stream {
            use std::os::unix::fs::MetadataExt;
            let m = log.metadata().unwrap();
            cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rackboot");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the socket answers a request (any ret_code).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("rackboot exited early ({status}):\n{}", self.log());
                }
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
                && self.log().contains("API listening")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin.password"))
            .expect("admin.password")
            .trim()
            .to_string()
    }

    /// Sends `request` as is.
    pub fn raw(&self, request: &Value) -> Value {
        self.runtime
            .block_on(rackboot::entry::cli::client::call(&self.socket(), request))
            .expect("call")
    }

    /// Sends `request` with admin's credentials added.
    pub fn call(&self, request: Value) -> Value {
        let mut m: Map<String, Value> = request.as_object().expect("object").clone();
        m.entry("USER_ID").or_insert(json!("admin"));
        m.entry("PASSWORD").or_insert(json!(self.password()));
        self.raw(&Value::Object(m))
    }

    /// Sends `request` and asserts ret_code 0.
    pub fn ok(&self, request: Value) -> Value {
        let r = self.call(request.clone());
        assert_eq!(r["ret_code"], 0, "request {request} failed: {r}");
        r
    }

    /// Sends a raw body over HTTP with curl-like framing (for non-JSON bodies).
    pub fn post_bytes(&self, body: &[u8]) -> (u16, Value) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json_start = text.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0);
        let value = serde_json::from_str(&text[json_start..]).unwrap_or(Value::Null);
        (status, value)
    }

    /// SIGTERM and wait; returns the exit status and the time it took.
    pub fn stop(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let status = child.wait().unwrap();
        (status, t.elapsed())
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        if self.child.is_some() {
            let (status, _) = self.stop();
            assert!(
                status.success(),
                "daemon exited with {status}:\n{}",
                self.log()
            );
        }
        self.spawn();
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--state-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("RACKBOOT_USER")
            .env_remove("RACKBOOT_PASSWORD")
            .env_remove("RACKBOOT_SOCKET")
            .output()
            .expect("run cli")
    }

    /// Everything an operator could see through the API, for "nothing
    /// changed" checks.
    pub fn snapshot(&self) -> Value {
        let strip = |mut v: Value| {
            if let Some(m) = v.as_object_mut() {
                m.remove("action");
            }
            v
        };
        json!({
            "nodes": strip(self.ok(json!({"action": "DescribeBMNodes"}))),
            "users": strip(self.ok(json!({"action": "DescribeUsers"}))),
            "messages": strip(self.ok(json!({"action": "DescribeMessages"}))),
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One valid node's flat fields; `i` makes hostname, MAC and BMC unique.
pub fn node(i: u32) -> Value {
    json!({
        "os_version": "14.04.5",
        "cpu_arch": "x86_64",
        "hostname": format!("rack1n{i:05}"),
        "ipmi_network_address": format!("10.{}.{}.{}", 20 + i / 65536, (i / 256) % 256, i % 256),
        "ipmi_username": "ADMIN",
        "ipmi_password": "ADMIN",
        "pxe_network_mac_addr": format!("52:54:00:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
        "mgmt_network_address": format!("172.31.{}.{}", (i / 250) % 250, i % 250 + 1),
        "mgmt_network_netmask": "255.255.0.0",
        "mgmt_network_gateway": "172.31.255.254",
        "os_disk_name": "sda",
    })
}

/// Registers `count` nodes starting at index `from`; returns their ids.
pub fn register(d: &Daemon, from: u32, count: u32) -> Vec<String> {
    let nodes: Vec<Value> = (from..from + count).map(node).collect();
    let r = d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": nodes}));
    r["node_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

pub fn run_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The statically linked deploy-ramdisk agent that `bash tests/run.sh`
/// builds before the tests (`cargo rustc --release -p rackboot-agent …`).
pub fn agent() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rackboot"));
    let agent = bin
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
