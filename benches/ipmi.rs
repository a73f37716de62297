//! IPMI benchmark (`cargo bench --bench ipmi`; needs ipmitool): a farm of
//! 1,000 fake BMCs (tests/common/fakebmc.rs, in this process on its own
//! thread), then
//! 1. power status of all 1,000 with ipmitool, 8 in parallel (Ironic's
//!    default power-sync workers) — the baseline;
//! 2. the same through rackboot: RefreshBMNodesPowerState over 1,000
//!    registered nodes, from request to the job's end;
//! 3. ScanBMNodes over 4,096 loopback addresses with 100 live BMCs.
//!
//! Prints times, failures, ratios to the baseline and to the goals
//! (< 5 s and ≥ 20× ipmitool for 1,000; < 15 s for the scan), and the
//! daemon's RSS. Environment: BENCH_BMCS (default 1000).

#[path = "../tests/common/fakebmc.rs"]
mod fakebmc;

use serde_json::{json, Value};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port_range(count: u16) -> u16 {
    'search: for base in (21000u16..60000).step_by(1000) {
        for p in base..base + count {
            if UdpSocket::bind(("127.0.0.1", p)).is_err() {
                continue 'search;
            }
        }
        return base;
    }
    panic!("no free range of {count} UDP ports");
}

struct Api {
    rt: tokio::runtime::Runtime,
    socket: std::path::PathBuf,
    password: String,
}

impl Api {
    fn call(&self, mut req: Value) -> Value {
        req["USER_ID"] = json!("admin");
        req["PASSWORD"] = json!(self.password);
        let r = self
            .rt
            .block_on(rackboot::entry::cli::client::call(&self.socket, &req))
            .expect("call");
        assert_eq!(r["ret_code"], 0, "{r}");
        r
    }

    /// Starts a job and waits for its end; returns (seconds, final status).
    fn job(&self, req: Value) -> (f64, Value) {
        let t = Instant::now();
        let r = self.call(req);
        let (id, action) = (r["job_id"].clone(), r["job_action"].clone());
        loop {
            let s = self.call(json!({"action": "GetStatus", "job_action": action, "job_id": id}));
            if s["status"] == "successful" || s["status"] == "failed" {
                return (t.elapsed().as_secs_f64(), s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if Command::new("ipmitool").arg("-V").output().is_err() {
        eprintln!("ipmi bench: ipmitool is needed for the baseline (apt-get install ipmitool)");
        std::process::exit(1);
    }
    let n: u16 = std::env::var("BENCH_BMCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let base = free_port_range(n);
    fakebmc::spawn(fakebmc::addresses(
        n.into(),
        Ipv4Addr::LOCALHOST,
        base,
        None,
    ));
    println!(
        "IPMI benchmark: {n} fake BMCs on 127.0.0.1:{base}-{}",
        base + n - 1
    );

    // 1. ipmitool, 8 in parallel.
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (next, failures) = (next.clone(), failures.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n as usize {
                    return;
                }
                let port = (base as usize + i).to_string();
                let out = Command::new("ipmitool")
                    .args([
                        "-I",
                        "lanplus",
                        "-C",
                        "3",
                        "-H",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-U",
                        "admin",
                        "-P",
                        "password",
                        "chassis",
                        "power",
                        "status",
                    ])
                    .stderr(Stdio::null())
                    .output();
                if !out
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("Chassis Power is"))
                    .unwrap_or(false)
                {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let baseline = t.elapsed().as_secs_f64();
    println!(
        "{:<44} {baseline:>7.2} s  failures {}",
        format!("ipmitool power status x{n}, 8 parallel"),
        failures.load(Ordering::SeqCst)
    );

    // 2. rackboot.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        "[ipmi]\npower_sync_interval = 0\n[api]\nmax_request_bytes = 16777216\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["serve", "--state-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("api.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let api = Api {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        password: std::fs::read_to_string(dir.path().join("admin.password"))
            .unwrap()
            .trim()
            .to_string(),
        socket,
    };
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "hostname": format!("farm{i:04}"), "os_version": "tiny-1.0", "cpu_arch": "x86_64",
                "ipmi_network_address": "127.0.0.1", "ipmi_port": base + i,
                "ipmi_username": "admin", "ipmi_password": "password",
                "pxe_network_mac_addr": format!("52:54:02:00:{:02x}:{:02x}", i >> 8, i & 0xff),
            })
        })
        .collect();
    api.call(json!({"action": "RegisterBMNodes", "bm_nodes": nodes}));
    let (secs, status) = api.job(json!({"action": "RefreshBMNodesPowerState"}));
    let failed = status["node_progress"]
        .as_object()
        .map(|m| m.values().filter(|v| v["ret_code"] != 0).count())
        .unwrap_or(usize::MAX);
    println!(
        "{:<44} {secs:>7.2} s  failures {failed}  vs ipmitool {:.1}x (goal >= 20x)  goal < 5 s ratio {:.2}",
        format!("rackboot RefreshBMNodesPowerState x{n}"),
        baseline / secs,
        secs / 5.0
    );

    // 3. Scan of 4,096 addresses with 100 live BMCs (one every 40 addresses).
    let scan_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = Ipv4Addr::new(127, 2, 0, 1);
    fakebmc::spawn(fakebmc::addresses(100, first, scan_port, Some(40)));
    let (secs, status) = api.job(json!({
        "action": "ScanBMNodes", "ip_start": "127.2.0.0", "ip_end": "127.2.15.255",
        "ipmi_port": scan_port, "ipmi_username": "admin", "ipmi_password": "password",
    }));
    let log =
        api.call(json!({"action": "GetScanBMNodesLog", "job_id": status["job_id"]}))["log"].clone();
    let summary = log
        .as_object()
        .and_then(|m| m.values().next_back())
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<44} {secs:>7.2} s  {}  goal < 15 s ratio {:.2}",
        "rackboot ScanBMNodes 4096 addresses, 100 live",
        summary.as_str().unwrap_or(""),
        secs / 15.0
    );
    println!("{:<44} {:>7.1} MB", "daemon RSS", rss_mb(child.id()));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
}
