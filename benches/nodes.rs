//! Node collection benchmark (`cargo bench --bench nodes`; needs root for
//! nothing, but needs openssh-server and openssh-client): 50 real sshd hosts
//! on loopback addresses spread over a 1,024-address range, then
//! 1. the baseline: `ssh host '<the collection commands>'` for each host,
//!    8 in parallel (OpenSSH client, one connection per host);
//! 2. rackboot: AddNodes over the 1,024 addresses, from the request to the
//!    end of its CollectNodes job.
//!
//! Prints both times and the ratio (goal: < 15 s and ≥ 5× the baseline).

#[path = "../tests/common/sshd.rs"]
mod sshd;

use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts: Vec<Ipv4Addr> = (0..50u32)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 3, 0, 1)) + i * 20))
        .collect();
    let port = sshd::common_port(&hosts);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        format!("[ssh]\nport = {port}\n[ipmi]\npower_sync_interval = 0\n"),
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
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let password = std::fs::read_to_string(dir.path().join("admin.password"))
        .unwrap()
        .trim()
        .to_string();
    let call = |mut req: Value| -> Value {
        req["USER_ID"] = json!("admin");
        req["PASSWORD"] = json!(password);
        let r = rt
            .block_on(rackboot::entry::cli::client::call(&socket, &req))
            .unwrap();
        assert_eq!(r["ret_code"], 0, "{r}");
        r
    };
    let key = format!(
        "{}\n",
        call(json!({"action": "DescribeSSHKey"}))["public_key"]
            .as_str()
            .unwrap()
    );
    let key_file = dir.path().join("ssh/id_ed25519");
    let servers: Vec<sshd::Sshd> = hosts
        .iter()
        .map(|ip| sshd::Sshd::start(*ip, port, &key, sshd::Quirk::None))
        .collect();
    println!(
        "node collection benchmark: {} sshd hosts over 127.3.0.0-127.3.3.255 port {port}",
        servers.len()
    );

    // 1. Baseline: OpenSSH, 8 in parallel.
    let commands: Vec<&str> = rackboot::foundation::inventory::COMMANDS
        .iter()
        .map(|(_, c)| *c)
        .collect();
    let script = commands.join("; echo ---; ");
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (next, failures, hosts, key_file, script) = (
                next.clone(),
                failures.clone(),
                hosts.clone(),
                key_file.clone(),
                script.clone(),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(ip) = hosts.get(i) else { return };
                let ok = Command::new("ssh")
                    .args([
                        "-q",
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                        "-i",
                    ])
                    .arg(&key_file)
                    .args(["-p", &port.to_string(), &format!("root@{ip}"), &script])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok {
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
        "{:<48} {baseline:>6.2} s  failures {}",
        "ssh loop, 8 parallel, 50 hosts",
        failures.load(Ordering::SeqCst)
    );

    // 2. rackboot AddNodes over 1,024 addresses.
    let t = Instant::now();
    let r = call(json!({"action": "AddNodes", "ip_start": "127.3.0.0", "ip_end": "127.3.3.255"}));
    let job = r["job_id"].clone();
    let status = loop {
        let s = call(json!({"action": "GetStatus", "job_action": "CollectNodes", "job_id": job}));
        if s["status"] == "successful" || s["status"] == "failed" {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = t.elapsed().as_secs_f64();
    let failed = status["node_progress"]
        .as_object()
        .map(|m| m.values().filter(|v| v["ret_code"] != 0).count())
        .unwrap_or(0);
    println!(
        "{:<48} {secs:>6.2} s  added {}  failed {failed}  vs ssh loop {:.1}x (goal >= 5x)  goal < 15 s ratio {:.2}",
        "rackboot AddNodes 1024 addresses, 50 live",
        r["total_count"],
        baseline / secs,
        secs / 15.0
    );
    drop(servers);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
}
