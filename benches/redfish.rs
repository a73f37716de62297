//! Redfish benchmark (`cargo bench --bench redfish`; needs the venv that
//! tests/run.sh creates, with redfishtool): a FAKE farm of 1,000 Redfish
//! BMCs with TLS (tests/common/fakeredfish.rs, in this process on its own
//! threads; a certificate of its own test CA, sessions offered), then
//! 1. power status of all 1,000 with redfishtool (`Systems -I 1 get -P
//!    PowerState` over HTTPS, one process per BMC as a user scripts it),
//!    8 in parallel — the reference;
//! 2. the same through rackboot: RefreshBMNodesPowerState over 1,000
//!    registered `redfish://` nodes (certificates verified against the CA in
//!    `redfish.ca_file`; one Redfish session per BMC, deleted), from request
//!    to the job's end.
//!
//! Prints times, failures, the ratio to the reference and to the goals
//! (≥ 20× redfishtool, < 5 s), the sessions left open on the farm (0) and
//! the daemon's RSS. Environment: BENCH_BMCS (default 1000).

#[path = "../tests/common/fakeredfish.rs"]
mod fakeredfish;

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REDFISHTOOL: &str = "/var/cache/rackboot-tests/redfish-venv/bin/redfishtool";

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
    if !std::path::Path::new(REDFISHTOOL).exists() {
        eprintln!("redfish bench: {REDFISHTOOL} is missing: run tests/run.sh as root (it creates the venv)");
        std::process::exit(1);
    }
    let n: usize = std::env::var("BENCH_BMCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let farm = fakeredfish::start(
        n,
        fakeredfish::Options {
            require_etag: false,
            async_resets: false,
            max_sessions: 16,
            ..Default::default()
        },
    );
    println!("Redfish benchmark: {n} fake BMCs (HTTPS, sessions) on 127.0.0.1, ephemeral ports");
    let ports: Vec<u16> = farm.bmcs.iter().map(|b| b.addr.port()).collect();

    // 1. redfishtool, 8 in parallel.
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(ports);
    let t = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (next, failures, ports) = (next.clone(), failures.clone(), ports.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= ports.len() {
                    return;
                }
                let out = Command::new(REDFISHTOOL)
                    .args([
                        "-r",
                        &format!("127.0.0.1:{}", ports[i]),
                        "-u",
                        "admin",
                        "-p",
                        "password",
                    ])
                    .args([
                        "-S",
                        "Always",
                        "Systems",
                        "-I",
                        "1",
                        "get",
                        "-P",
                        "PowerState",
                    ])
                    .stderr(Stdio::null())
                    .output();
                if !out
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("PowerState"))
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
        "{:<48} {baseline:>7.2} s  failures {}",
        format!("redfishtool power status x{n}, 8 parallel"),
        failures.load(Ordering::SeqCst)
    );

    // 2. rackboot.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &farm.ca_pem).unwrap();
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        format!(
            "[ipmi]\npower_sync_interval = 0\n[api]\nmax_request_bytes = 16777216\n[redfish]\nca_file = \"{}\"\n",
            ca.display()
        ),
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
    let nodes: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            json!({
                "hostname": format!("rf{i:04}"), "os_version": "tiny-1.0", "cpu_arch": "x86_64",
                "bmc_address": format!("redfish://127.0.0.1:{port}/redfish/v1/Systems/1"),
                "ipmi_username": "admin", "ipmi_password": "password",
                "pxe_network_mac_addr": format!("52:54:03:00:{:02x}:{:02x}", i >> 8, i & 0xff),
            })
        })
        .collect();
    let t = Instant::now();
    api.call(json!({"action": "RegisterBMNodes", "bm_nodes": nodes}));
    // Registration reads every node's inventory in the background: let it end.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = api.call(json!({"action": "DescribeBMNodes"}));
        let done = all["node_set"]
            .as_array()
            .map(|a| a.iter().filter(|n| n["bmc_inventory_time"] != "").count())
            .unwrap_or(0);
        if done == n {
            break;
        }
        assert!(Instant::now() < deadline, "inventories: {done} of {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{:<48} {:>7.2} s",
        format!("rackboot register + inventory x{n} (background)"),
        t.elapsed().as_secs_f64()
    );
    let (secs, status) = api.job(json!({"action": "RefreshBMNodesPowerState"}));
    let failed = status["node_progress"]
        .as_object()
        .map(|m| m.values().filter(|v| v["ret_code"] != 0).count())
        .unwrap_or(usize::MAX);
    println!(
        "{:<48} {secs:>7.2} s  failures {failed}  vs redfishtool {:.1}x (goal >= 20x)  goal < 5 s ratio {:.2}",
        format!("rackboot RefreshBMNodesPowerState x{n}"),
        baseline / secs,
        secs / 5.0
    );
    let open: usize = farm.bmcs.iter().map(|b| b.open_sessions()).sum();
    let logins: usize = farm.bmcs.iter().map(|b| b.with(|s| s.logins)).sum();
    println!(
        "{:<48} {open} open of {logins} created",
        "Redfish sessions left on the farm"
    );
    println!("{:<48} {:>7.1} MB", "daemon RSS", rss_mb(child.id()));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
}
