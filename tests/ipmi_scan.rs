//! ScanBMNodes over a range of loopback addresses with real BMCs (ipmi_sim)
//! among dead addresses: finds exactly the live ones, registers them once
//! with what their FRU says, counts the one with other credentials as an
//! auth failure, and a second scan registers nothing new.

mod common;

use common::sim::Sim;
use common::Daemon;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// A UDP port free on every address of 127.0.77.0/24 we use.
fn common_port(ips: &[Ipv4Addr]) -> u16 {
    'search: loop {
        let port = UdpSocket::bind("127.0.77.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for ip in ips {
            if UdpSocket::bind((*ip, port)).is_err() {
                continue 'search;
            }
        }
        return port;
    }
}

fn wait_job(d: &Daemon, job_id: &str) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.ok(json!({"action": "GetScanBMNodesStatus", "job_id": job_id}));
        if s["status"] == "successful" || s["status"] == "failed" {
            let log = d.ok(json!({"action": "GetScanBMNodesLog", "job_id": job_id}))["log"].clone();
            return (s, log);
        }
        assert!(Instant::now() < deadline, "scan did not end: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_range_scan_registers_the_live_bmcs_once() {
    let live: Vec<Ipv4Addr> = [3u8, 7, 12]
        .iter()
        .map(|i| Ipv4Addr::new(127, 0, 77, *i))
        .collect();
    let other = Ipv4Addr::new(127, 0, 77, 20);
    let mut all = live.clone();
    all.push(other);
    let port = common_port(&all);
    let _sims: Vec<Sim> = live
        .iter()
        .map(|ip| Sim::start_at(*ip, port, "password"))
        .collect();
    let _stranger = Sim::start_at(other, port, "another-password");
    let d = Daemon::start_with(
        Some("[ipmi]\ntimeout_ms = 300\nattempts = 2\npower_sync_interval = 0\n"),
        |_| {},
    );

    let scan = json!({
        "action": "ScanBMNodes", "ip_start": "127.0.77.1", "ip_end": "127.0.77.40",
        "ipmi_port": port, "ipmi_username": "admin", "ipmi_password": "password",
    });
    let r = d.ok(scan.clone());
    let (s, log) = wait_job(&d, r["job_id"].as_str().unwrap());
    assert_eq!(s["status"], "successful", "{log}");
    let text = log.to_string();
    assert!(
        text.contains("found 4, registered 3, updated 0, auth failed 1, unreachable 36"),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.77.20:{port}: login refused")),
        "{text}"
    );

    let nodes = d.ok(json!({"action": "DescribeBMNodes"}));
    assert_eq!(nodes["total_count"], 3, "{nodes}");
    let mut addresses: Vec<String> = nodes["node_set"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert_eq!(n["status"], "new");
            assert_eq!(n["general"]["brand"], "Dell Inc.");
            assert_eq!(n["general"]["serial_number"], "CN7016");
            assert_eq!(n["power_state"], "off");
            assert_eq!(n["pxe"]["pxe_network_mac_addr"], "");
            assert_eq!(n["ipmi"]["ipmi_port"], port);
            n["ipmi"]["ipmi_network_address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    addresses.sort();
    assert_eq!(addresses, vec!["127.0.77.12", "127.0.77.3", "127.0.77.7"]);
    let host = nodes["node_set"][0]["general"]["hostname"]
        .as_str()
        .unwrap();
    assert!(
        host.starts_with("bmc-127-0-77-") && host.ends_with(&format!("-{port}")),
        "{host}"
    );

    // The registered nodes work: a power action through their stored credentials.
    let first = nodes["node_set"][0]["node_id"].clone();
    let r = d.ok(json!({"action": "StartBMNodes", "node_ids": [first]}));
    let job = r["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_action": "StartBMNodes", "job_id": job}));
        if s["status"] == "successful" {
            break;
        }
        assert!(s["status"] != "failed" && Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Scanning again registers nothing new and updates the three.
    let r = d.ok(scan);
    let (s, log) = wait_job(&d, r["job_id"].as_str().unwrap());
    assert_eq!(s["status"], "successful");
    assert!(
        log.to_string()
            .contains("found 4, registered 0, updated 3, auth failed 1"),
        "{log}"
    );
    assert_eq!(d.ok(json!({"action": "DescribeBMNodes"}))["total_count"], 3);
    // GetScanBMNodesLog filters by job_status.
    let only =
        d.ok(json!({"action": "GetScanBMNodesLog", "job_status": "successful"}))["log"].clone();
    assert_eq!(only.as_object().unwrap().len(), 1, "{only}");
}

#[test]
fn scan_requests_are_checked_before_any_packet_is_sent() {
    let d = Daemon::start();
    for (req, code, needle) in [
        (
            json!({"action": "ScanBMNodes", "ip_start": "10.0.0.1", "ip_end": "10.0.16.1", "ipmi_username": "a", "ipmi_password": "b"}),
            1100,
            "at most 4096",
        ),
        (
            json!({"action": "ScanBMNodes", "ip_start": "10.0.0.9", "ip_end": "10.0.0.1", "ipmi_username": "a", "ipmi_password": "b"}),
            1100,
            "before",
        ),
        (
            json!({"action": "ScanBMNodes", "ip_start": "10.0.0.1"}),
            1101,
            "ip_end",
        ),
        (
            json!({"action": "ScanBMNodes", "ip_start": "10.0.0.1", "ip_end": "10.0.0.2"}),
            1101,
            "default_credentials",
        ),
        (
            json!({"action": "ScanBMNodes", "ip_start": "10.0.0.1", "ip_end": "10.0.0.2", "ipmi_username": "a"}),
            1101,
            "ipmi_password",
        ),
        (
            json!({"action": "ScanBMNodes", "ip_start": "10.0.0.1", "ip_end": "x", "ipmi_username": "a", "ipmi_password": "b"}),
            1100,
            "ip_end",
        ),
        (
            json!({"action": "ScanBMNodes", "node_ids": ["n-Zz000000"]}),
            2100,
            "n-Zz000000",
        ),
    ] {
        let r = d.call(req.clone());
        assert_eq!(r["ret_code"], code, "{req} → {r}");
        assert!(
            r["message"].as_str().unwrap().contains(needle),
            "{req} → {r}"
        );
    }
    let r = d.call(json!({"action": "GetScanBMNodesStatus"}));
    assert_eq!(r["ret_code"], 2100, "no scan has run yet: {r}");
}
