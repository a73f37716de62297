//! Node actions against real OpenSSH servers on loopback addresses (each
//! its own sshd, host key and authorized_keys): hosts are added from a range,
//! their hardware is collected over SSH and matches what the host's own
//! tools say; failures (wrong key, a missing command, a stalling host, a
//! changed host key) end with their log line and user message.

mod common;

use common::sshd::{common_port, Quirk, Sshd};
use common::Daemon;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

fn config(port: u16) -> String {
    format!("[ssh]\nport = {port}\nconnect_timeout = 3\ncommand_timeout = 3\n[ipmi]\npower_sync_interval = 0\n")
}

fn wait_job(d: &Daemon, job_id: &str) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s =
            d.ok(json!({"action": "GetStatus", "job_action": "CollectNodes", "job_id": job_id}));
        if s["status"] == "successful" || s["status"] == "failed" {
            let log =
                d.ok(json!({"action": "GetLog", "job_action": "CollectNodes", "job_id": job_id}));
            return (s, log["log"].to_string());
        }
        assert!(Instant::now() < deadline, "job did not end: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn public_key(d: &Daemon) -> String {
    let r = d.ok(json!({"action": "DescribeSSHKey"}));
    assert!(
        r["fingerprint"].as_str().unwrap().starts_with("SHA256:"),
        "{r}"
    );
    format!("{}\n", r["public_key"].as_str().unwrap())
}

fn sh(cmd: &str) -> String {
    String::from_utf8(
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

#[test]
fn add_nodes_registers_the_live_hosts_and_collects_what_their_tools_say() {
    let ips: Vec<Ipv4Addr> = [2u8, 5, 9]
        .iter()
        .map(|i| Ipv4Addr::new(127, 0, 61, *i))
        .collect();
    let port = common_port(&ips);
    let d = Daemon::start_with(Some(&config(port)), |_| {});
    let key = public_key(&d);
    let _hosts: Vec<Sshd> = ips
        .iter()
        .map(|ip| Sshd::start(*ip, port, &key, Quirk::None))
        .collect();

    let r = d.ok(json!({"action": "AddNodes", "request_type": "Node", "ip_start": "127.0.61.1", "ip_end": "127.0.61.30"}));
    assert_eq!(r["total_count"], 3, "{r}");
    let (s, log) = wait_job(&d, r["job_id"].as_str().unwrap());
    assert_eq!(s["status"], "successful", "{log}");
    // All three are this machine: their machine-id is shared, and said so.
    assert!(log.contains("/etc/machine-id equals that of"), "{log}");

    let nodes = d.ok(json!({"action": "DescribeNodes"}));
    assert_eq!(nodes["total_count"], 3);
    let cpus: u64 = sh("grep -c ^processor /proc/cpuinfo")
        .trim()
        .parse()
        .unwrap();
    let mem_kb: f64 = sh("awk '/MemTotal/ {print $2}' /proc/meminfo")
        .trim()
        .parse()
        .unwrap();
    let lsblk: Value =
        serde_json::from_str(&sh("lsblk -J -b -o NAME,TYPE,SIZE,MOUNTPOINT")).unwrap();
    let mut disks: Vec<String> = lsblk["blockdevices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["type"] == "disk"
                && b["size"].as_u64().unwrap_or(0) > 0
                && !b["name"].as_str().unwrap().starts_with("zram")
        })
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    disks.sort();
    let ip: Value = serde_json::from_str(&sh("ip -j addr")).unwrap();
    let mut nics: Vec<String> = ip
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["ifname"] != "lo"
                && i["addr_info"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["family"] == "inet")
        })
        .map(|i| i["ifname"].as_str().unwrap().to_string())
        .collect();
    nics.sort();
    let hostname = sh("hostname").trim().to_string();
    for n in nodes["node_set"].as_array().unwrap() {
        assert_eq!(n["status"], "available", "{n}");
        assert_eq!(n["hostname"], hostname);
        assert_eq!(n["cpu"]["cpu_processors"], cpus, "{n}");
        assert!(
            (n["memory"]["memory_size"].as_f64().unwrap() - mem_kb / 1048576.0).abs() < 0.06,
            "{n}"
        );
        let mut got: Vec<String> = n["data_disks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect();
        if let Some(os) = n["os_disk"]["name"].as_str() {
            got.push(os.to_string());
        }
        got.sort();
        assert_eq!(got, disks, "{n}");
        let mut got_nics: Vec<String> = n["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect();
        got_nics.sort();
        assert_eq!(got_nics, nics, "{n}");
        assert!(n["os"]["kernel_version"].as_str().unwrap() == sh("uname -r").trim());
        for disk in n["data_disks"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&n["os_disk"]])
        {
            if disk.get("disk_id").is_some() {
                assert!(
                    rackboot::foundation::ids::is_id(disk["disk_id"].as_str().unwrap(), "d-"),
                    "{disk}"
                );
            }
        }
        for net in n["networks"].as_array().unwrap() {
            assert!(
                rackboot::foundation::ids::is_id(net["network_id"].as_str().unwrap(), "e-"),
                "{net}"
            );
        }
    }

    // Adding the range again adds nobody twice.
    let r = d.ok(json!({"action": "AddNodes", "ip_start": "127.0.61.1", "ip_end": "127.0.61.30"}));
    assert_eq!(r["total_count"], 0, "{r}");
    // Filters and CLI.
    assert_eq!(
        d.ok(json!({"action": "DescribeNodes", "status": "available", "limit": 1}))["node_set"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = d.cli(&["describe-nodes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("NODE_ID") && text.contains("127.0.61.5") && text.contains("available"),
        "{text}"
    );
    // Too large a range is refused before any probe.
    let r = d.call(json!({"action": "AddNodes", "ip_start": "127.0.0.1", "ip_end": "127.0.4.1"}));
    assert_eq!(r["ret_code"], 1100);
}

#[test]
fn collection_failures_have_their_log_line_and_message() {
    let ips: Vec<Ipv4Addr> = [2u8, 3, 4, 5]
        .iter()
        .map(|i| Ipv4Addr::new(127, 0, 62, *i))
        .collect();
    let port = common_port(&ips);
    let d = Daemon::start_with(Some(&config(port)), |_| {});
    let key = public_key(&d);
    let stranger = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGu7TH2V6o7xZLZ0Z9Q1Gk2yQm9a3vVzv1mCq6cXN2yJ someone-else\n";
    let _wrong_key = Sshd::start(ips[0], port, stranger, Quirk::None);
    let _no_lsblk = Sshd::start(ips[1], port, &key, Quirk::NoLsblk);
    let _stalls = Sshd::start(ips[2], port, &key, Quirk::StallsOnLscpu);
    let mut good = Sshd::start(ips[3], port, &key, Quirk::None);

    let r = d.ok(json!({"action": "AddNodes", "ip_start": "127.0.62.2", "ip_end": "127.0.62.5"}));
    assert_eq!(r["total_count"], 4);
    let ids: Vec<String> = r["node_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let started = Instant::now();
    let (s, log) = wait_job(&d, r["job_id"].as_str().unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s["status"], "failed", "{log}");
    let by_addr = |addr: &str| -> Value {
        let all = d.ok(json!({"action": "DescribeNodes"}));
        all["node_set"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["address"] == addr)
            .unwrap()
            .clone()
    };
    let wrong = by_addr("127.0.62.2");
    assert_eq!(wrong["status"], "collect_failed");
    let node_progress = &s["node_progress"];
    assert_eq!(
        node_progress[wrong["node_id"].as_str().unwrap()]["ret_code"],
        3610,
        "{node_progress}"
    );
    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": wrong["node_id"]}));
    assert_eq!(m["message_set"][0]["event_id"], "RB-NODE-0002", "{m}");
    assert!(m["message_set"][0]["user_message"]
        .as_str()
        .unwrap()
        .contains("rackboot ssh-key"));

    let partial = by_addr("127.0.62.3");
    assert_eq!(
        partial["status"], "available",
        "a missing lsblk gives a partial inventory"
    );
    assert!(
        partial["data_disks"].as_array().unwrap().is_empty()
            && partial["cpu"]["cpu_processors"].as_u64().unwrap() > 0
    );
    assert!(
        log.contains("lsblk") && log.contains("command not found"),
        "{log}"
    );

    let stalled = by_addr("127.0.62.4");
    assert_eq!(stalled["status"], "collect_failed");
    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": stalled["node_id"]}));
    assert_eq!(m["message_set"][0]["event_id"], "RB-NODE-0004", "{m}");
    assert!(
        m["message_set"][0]["user_message"]
            .as_str()
            .unwrap()
            .contains("`lscpu` did not finish within 3 s"),
        "{m}"
    );

    let ok = by_addr("127.0.62.5");
    assert_eq!(ok["status"], "available");
    // The host comes back with another host key: refused, never silently accepted.
    good.new_host_key();
    let r = d.ok(json!({"action": "CollectNodes", "node_ids": [ok["node_id"]]}));
    let (s, log) = wait_job(&d, r["job_id"].as_str().unwrap());
    assert_eq!(s["status"], "failed", "{log}");
    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": ok["node_id"], "event_id": "RB-NODE-0003"}));
    assert_eq!(m["total_count"], 1, "{m}");
    assert!(m["message_set"][0]["user_message"]
        .as_str()
        .unwrap()
        .contains("impersonation"));
    assert_eq!(by_addr("127.0.62.5")["status"], "collect_failed");

    // The daemon keeps serving; deleting works all-or-nothing.
    let r = d.call(json!({"action": "DeleteNodes", "node_ids": [ids[0], "n-Zz000000"]}));
    assert_eq!(r["ret_code"], 2100);
    let r = d.ok(json!({"action": "DeleteNodes", "node_ids": ids}));
    assert_eq!(r["total_count"], 4);
    assert_eq!(d.ok(json!({"action": "DescribeNodes"}))["total_count"], 0);
}
