//! Power and boot device through the API against a second, independent BMC
//! implementation: pyghmi's (tests/data/pyghmi_bmc.py), cross-checked with
//! ipmitool. pyghmi answers a cipher-suite-17 request with suite 3's
//! algorithms: the client must fall back to 3 at once.

mod common;

use common::Daemon;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Pyghmi {
    child: Child,
    port: u16,
}

impl Pyghmi {
    fn start() -> Pyghmi {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/pyghmi_bmc.py"
            ))
            .args(["127.0.0.1", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "pyghmi BMC did not start (tests/run.sh installs pyghmi): {line}"
        );
        Pyghmi { child, port }
    }

    fn ipmitool(&self, args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
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
}

impl Drop for Pyghmi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_job(d: &Daemon, request: Value) -> Value {
    let r = d.ok(request);
    let (id, action) = (r["job_id"].clone(), r["job_action"].clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_action": action, "job_id": id}));
        if s["status"] == "successful" || s["status"] == "failed" {
            return s;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn power_and_boot_device_through_the_api_on_a_pyghmi_bmc() {
    let bmc = Pyghmi::start();
    let d = Daemon::start_with(Some("[ipmi]\npower_sync_interval = 0\n"), |_| {});
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "pyghmi01", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_port": bmc.port, "ipmi_username": "admin",
        "ipmi_password": "password", "pxe_network_mac_addr": "52:54:00:77:00:01",
    }));
    let id = r["node_ids"][0].clone();

    let started = Instant::now();
    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{s}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "suite 17 → 3 fallback was slow: {:?}",
        started.elapsed()
    );
    assert!(bmc
        .ipmitool(&["chassis", "power", "status"])
        .contains("Chassis Power is on"));

    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "pxe"}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert!(bmc
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Force PXE"));
    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "disk"}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert!(bmc
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Hard-Drive"));

    let s = run_job(&d, json!({"action": "StopBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{s}");
    assert!(bmc
        .ipmitool(&["chassis", "power", "status"])
        .contains("Chassis Power is off"));
    let s = run_job(
        &d,
        json!({"action": "RestartBMNodes", "node_ids": [id], "force": 1}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert!(bmc
        .ipmitool(&["chassis", "power", "status"])
        .contains("Chassis Power is on"));
    let n = d.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}));
    assert_eq!(n["node_set"][0]["power_state"], "on");
}
