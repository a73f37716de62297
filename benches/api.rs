//! API benchmark (`cargo bench --bench api`): starts the release daemon on a
//! temporary state directory, registers 10,000 BMNodes through the socket,
//! then measures DescribeBMNodes of all nodes, of a 100-node filter and of
//! one node by id (p50/p99, each a new connection as curl would make), and
//! the daemon's RSS. Prints each figure next to the target and the
//! ratio figure/target (< 1 is better than the target).
//!
//! Environment: BENCH_NODES (default 10000), BENCH_ROUNDS_ALL (default 50).

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn node(i: u32) -> Value {
    json!({
        "os_version": "14.04.5", "cpu_arch": "x86_64",
        "hostname": format!("bench{i:06}"),
        "ipmi_network_address": format!("10.{}.{}.{}", 20 + i / 65536, (i / 256) % 256, i % 256),
        "ipmi_username": "ADMIN", "ipmi_password": "ADMIN",
        "pxe_network_mac_addr": format!("52:54:01:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
        "mgmt_network_address": format!("172.31.{}.{}", (i / 250) % 250, i % 250 + 1),
        "mgmt_network_netmask": "255.255.0.0", "mgmt_network_gateway": "172.31.255.254",
        "os_disk_name": "sda", "brand": "dell", "serial_number": format!("SN{i:08}"),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Run<'a> {
    rt: tokio::runtime::Runtime,
    socket: &'a Path,
    password: String,
}

impl Run<'_> {
    /// One request on a new connection; the time covers the exchange up to
    /// the last byte of the answer (as curl would see it), not our parsing.
    fn call(&self, mut req: Value) -> (Value, Duration) {
        req["USER_ID"] = json!("admin");
        req["PASSWORD"] = json!(self.password);
        let t = Instant::now();
        let bytes = self
            .rt
            .block_on(rackboot::entry::cli::client::call_raw(self.socket, &req))
            .expect("call");
        let took = t.elapsed();
        let r: Value = serde_json::from_slice(&bytes).expect("JSON answer");
        assert_eq!(r["ret_code"], 0, "{}", r["message"]);
        (r, took)
    }

    fn measure(&self, name: &str, rounds: usize, target_ms: f64, req: &Value) {
        let _ = self.call(req.clone()); // warm-up
        let mut times: Vec<Duration> = (0..rounds).map(|_| self.call(req.clone()).1).collect();
        times.sort();
        let p50 = percentile(&times, 0.5).as_secs_f64() * 1000.0;
        let p99 = percentile(&times, 0.99).as_secs_f64() * 1000.0;
        println!(
            "{name:<34} p50 {p50:>8.3} ms  p99 {p99:>8.3} ms  target p50 < {target_ms} ms  ratio {:.2}",
            p50 / target_ms
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / test harness probing
    }
    let nodes: u32 = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds_all: usize = std::env::var("BENCH_ROUNDS_ALL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    // The nodes' BMC addresses are made up: no power-sync polling.
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let password = std::fs::read_to_string(dir.path().join("admin.password"))
        .unwrap()
        .trim()
        .to_string();
    let run = Run {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        socket: &socket,
        password,
    };
    println!(
        "rackboot API benchmark: {nodes} BMNodes, daemon pid {}",
        child.id()
    );
    let rss_idle = rss_kib(child.id(), "VmRSS:");

    let t = Instant::now();
    let mut ids: Vec<String> = Vec::new();
    for start in (0..nodes).step_by(1000) {
        let batch: Vec<Value> = (start..(start + 1000).min(nodes)).map(node).collect();
        let (r, _) = run.call(json!({"action": "RegisterBMNodes", "bm_nodes": batch}));
        ids.extend(
            r["node_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    let reg = t.elapsed().as_secs_f64();
    println!(
        "{:<34} {reg:.2} s ({:.0} nodes/s, batches of 1000)",
        "RegisterBMNodes",
        nodes as f64 / reg
    );

    run.measure(
        &format!("DescribeBMNodes all {nodes}"),
        rounds_all,
        50.0,
        &json!({"action": "DescribeBMNodes"}),
    );
    let hundred: Vec<&String> = ids
        .iter()
        .step_by((ids.len() / 100).max(1))
        .take(100)
        .collect();
    run.measure(
        "DescribeBMNodes 100 by node_ids",
        200,
        5.0,
        &json!({"action": "DescribeBMNodes", "node_ids": hundred}),
    );
    run.measure(
        "DescribeBMNodes status filter+limit",
        200,
        5.0,
        &json!({"action": "DescribeBMNodes", "status": "new", "limit": 100}),
    );
    run.measure(
        "DescribeBMNodes one by id",
        2000,
        1.0,
        &json!({"action": "DescribeBMNodes", "node_ids": [ids[ids.len() / 2]]}),
    );

    let rss = rss_kib(child.id(), "VmRSS:");
    let hwm = rss_kib(child.id(), "VmHWM:");
    println!(
        "{:<34} idle {:.1} MB, now {:.1} MB, peak {:.1} MB  target < 50 MB  ratio {:.2}",
        "daemon RSS",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0 / 50.0
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
}
