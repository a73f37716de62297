//! Power actions through the daemon's API against real BMCs (ipmi_sim on
//! loopback), cross-checked with ipmitool; failures end with their own
//! ret_code and catalogue message within the configured bound.

mod common;

use common::sim::Sim;
use common::Daemon;
use serde_json::{json, Value};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const CONFIG: &str = "[ipmi]\ntimeout_ms = 1000\nattempts = 2\npower_sync_interval = 0\nunreachable_backoff = 0\nqueue_per_bmc = 64\n";

fn register(d: &Daemon, host: &str, port: u16, password: &str, mac_last: u8) -> String {
    let r = d.ok(json!({
        "action": "RegisterBMNodes",
        "hostname": host, "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_port": port,
        "ipmi_username": "admin", "ipmi_password": password,
        "pxe_network_mac_addr": format!("52:54:00:99:00:{mac_last:02x}"),
    }));
    r["node_ids"][0].as_str().unwrap().to_string()
}

/// Starts `request` and waits for its job to end; returns GetStatus and GetLog.
fn run_job(d: &Daemon, request: Value) -> (Value, Value) {
    let r = d.ok(request);
    let job_id = r["job_id"].as_str().unwrap().to_string();
    let action = r["job_action"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_action": action, "job_id": job_id}));
        if s["status"] == "successful" || s["status"] == "failed" {
            let log = d.ok(json!({"action": "GetLog", "job_action": action, "job_id": job_id}));
            return (s, log["log"].clone());
        }
        assert!(Instant::now() < deadline, "job {job_id} did not end: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node(d: &Daemon, id: &str) -> Value {
    d.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}))["node_set"][0].clone()
}

#[test]
fn power_and_boot_actions_reach_the_bmc() {
    let sim = Sim::start();
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    let id = register(&d, "sim01", sim.port, "password", 1);
    assert_eq!(node(&d, &id)["power_state"], "unknown");

    let (s, log) = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{s} {log}");
    assert_eq!(s["progress"], "100%");
    assert!(
        log.to_string()
            .contains(&format!("{id} (sim01): power is on")),
        "{log}"
    );
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("is on"));
    let n = node(&d, &id);
    assert_eq!(n["power_state"], "on");
    assert!(!n["power_state_time"].as_str().unwrap().is_empty());

    let (s, log) = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "pxe"}),
    );
    assert_eq!(s["status"], "successful", "{log}");
    assert!(sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Force PXE"));
    let (s, _) = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "disk", "persistent": 1}),
    );
    assert_eq!(s["status"], "successful");
    assert!(sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Hard-Drive"));

    let (s, _) = run_job(
        &d,
        json!({"action": "StopBMNodes", "node_ids": [id], "force": 1}),
    );
    assert_eq!(s["status"], "successful");
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("is off"));
    assert_eq!(node(&d, &id)["power_state"], "off");

    // A power cycle of a node that is off powers it on.
    let (s, log) = run_job(
        &d,
        json!({"action": "RestartBMNodes", "node_ids": [id], "force": 0}),
    );
    assert_eq!(s["status"], "successful", "{log}");
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("is on"));
    let (s, _) = run_job(&d, json!({"action": "RefreshBMNodesPowerState"}));
    assert_eq!(s["status"], "successful");

    // Hard reset of a running node, then a soft (ACPI) power off.
    let (s, log) = run_job(
        &d,
        json!({"action": "RestartBMNodes", "node_ids": [id], "force": 1}),
    );
    assert_eq!(s["status"], "successful", "{log}");
    assert!(
        sim.file("ops.log").lines().any(|l| l == "reset 1"),
        "{}",
        sim.file("ops.log")
    );
    let (s, log) = run_job(
        &d,
        json!({"action": "StopBMNodes", "node_ids": [id], "force": 0}),
    );
    assert_eq!(s["status"], "successful", "{log}");
    assert!(
        sim.file("ops.log").lines().any(|l| l == "shutdown 1"),
        "{}",
        sim.file("ops.log")
    );
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("is off"));

    // Bad boot device and unknown nodes are refused before any job.
    let r = d
        .call(json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "floppy"}));
    assert_eq!(r["ret_code"], 1100);
    let r = d.call(json!({"action": "StartBMNodes", "node_ids": ["n-Zz000000"]}));
    assert_eq!(r["ret_code"], 2100);
}

#[test]
fn bmc_failures_have_their_own_ret_code_and_message_and_the_daemon_keeps_serving() {
    let sim = Sim::start();
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    let wrong = register(&d, "wrongpw", sim.port, "not-the-password", 2);
    let dead_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = register(&d, "dead", dead_port, "password", 3);

    // A "BMC" that answers every datagram with garbage.
    let garbage = UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let mut x: u32 = 7;
        while let Ok((_, peer)) = garbage.recv_from(&mut buf) {
            let reply: Vec<u8> = (0..64)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    if i < 4 {
                        [6u8, 0, 0xff, 7][i]
                    } else {
                        (x >> 16) as u8
                    }
                })
                .collect();
            let _ = garbage.send_to(&reply, peer);
        }
    });
    let noisy = register(&d, "garbage", garbage_port, "password", 4);

    let started = Instant::now();
    let (s, log) = run_job(
        &d,
        json!({"action": "StartBMNodes", "node_ids": [wrong, dead, noisy]}),
    );
    // timeout 1 s then 1.5 s per step: within 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s["status"], "failed");
    let np = &s["node_progress"];
    assert_eq!(np[&wrong]["ret_code"], 3200, "{np}");
    assert!(np[&wrong]["message"]
        .as_str()
        .unwrap()
        .contains("refused the login of user admin"));
    assert_eq!(np[&dead]["ret_code"], 3100, "{np}");
    assert!(np[&dead]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("127.0.0.1:{dead_port} does not answer")));
    assert_eq!(np[&noisy]["ret_code"], 3100, "{np}");
    let text = log.to_string();
    assert!(
        text.contains(&format!("{wrong} (wrongpw): failed")) && text.contains("failed: "),
        "{text}"
    );
    assert!(text.contains("0 of 3 node(s) done"), "{text}");

    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": wrong}));
    assert_eq!(m["message_set"][0]["event_id"], "RB-BMC-0002");
    let m = d.ok(json!({"action": "DescribeMessages", "event_id": "RB-BMC-0001"}));
    assert_eq!(m["total_count"], 2, "{m}");
    // Passwords never reach messages or logs.
    assert!(!m.to_string().contains("not-the-password"));
    assert!(!d.log().contains("not-the-password"));
    d.ok(json!({"action": "DescribeBMNodes"}));
}

#[test]
fn fifty_concurrent_operations_on_one_bmc_succeed_and_leave_no_session() {
    let sim = Sim::start();
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    let id = register(&d, "busy", sim.port, "password", 5);
    let before = sim.active_sessions();
    let jobs: Vec<String> = (0..50)
        .map(|_| {
            d.ok(json!({"action": "RefreshBMNodesPowerState", "node_ids": [id]}))["job_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for job in jobs {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = d.ok(json!({"action": "GetStatus", "job_action": "RefreshBMNodesPowerState", "job_id": job}));
            if s["status"] == "successful" {
                break;
            }
            assert_ne!(s["status"], "failed", "{s}");
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(sim.active_sessions(), before, "sessions leaked");
}

#[test]
fn power_sync_marks_a_silent_bmc_unreachable_once_and_clears_it_when_it_answers() {
    let mut sim = Sim::start();
    let port = sim.port;
    let config = "[ipmi]\ntimeout_ms = 200\nattempts = 1\npower_sync_interval = 1\npower_sync_failures = 2\nunreachable_backoff = 0\n";
    let d = Daemon::start_with(Some(config), |_| {});
    let id = register(&d, "flaky", port, "password", 6);
    let wait_for = |what: &str, f: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = node(&d, &id);
            if f(&n) {
                return n;
            }
            assert!(Instant::now() < deadline, "{what}: {n}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("first poll", &|n| n["power_state"] == "off");
    sim.stop();
    let n = wait_for("marked unreachable", &|n| n["bmc_reachable"] == 0);
    assert_eq!(n["power_state"], "unknown");
    // Several more failing rounds: still one message.
    std::thread::sleep(Duration::from_millis(2500));
    let lost =
        d.ok(json!({"action": "DescribeMessages", "resource_id": id, "event_id": "RB-BMC-0006"}));
    assert_eq!(lost["total_count"], 1, "{lost}");
    assert_eq!(lost["message_set"][0]["message_level"], "WARNING");

    let _back = Sim::start_on(port);
    wait_for("reachable again", &|n| {
        n["bmc_reachable"] == 1 && n["power_state"] == "off"
    });
    let back =
        d.ok(json!({"action": "DescribeMessages", "resource_id": id, "event_id": "RB-BMC-0007"}));
    assert_eq!(back["total_count"], 1, "{back}");
}

#[test]
fn a_bmc_that_drives_a_qemu_vm_powers_it_on_and_off() {
    let sim = Sim::start();
    sim.drive_a_vm();
    // ipmi_sim answers only after its chassis program has started QEMU,
    // which can take a second or more on a busy machine: default timing.
    let d = Daemon::start_with(
        Some("[ipmi]\npower_sync_interval = 0\nunreachable_backoff = 0\n"),
        |_| {},
    );
    let id = register(&d, "vm01", sim.port, "password", 7);
    assert!(sim.vm_pid().is_none());

    let (s, log) = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{log}");
    let pid = sim.vm_pid().expect("a QEMU VM runs after StartBMNodes");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("qemu-system-x86_64"), "{cmdline}");
    // The firmware really runs: SeaBIOS writes to the VM's serial port.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.file("serial.log").contains("SeaBIOS") {
        assert!(
            Instant::now() < deadline,
            "no SeaBIOS output: {}",
            sim.file("serial.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("is on"));

    let (s, log) = run_job(
        &d,
        json!({"action": "StopBMNodes", "node_ids": [id], "force": 1}),
    );
    assert_eq!(s["status"], "successful", "{log}");
    assert!(
        sim.vm_pid().is_none(),
        "the VM still runs after StopBMNodes"
    );
    assert_eq!(node(&d, &id)["power_state"], "off");
}
