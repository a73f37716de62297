//! Running rackboot day to day, as an operator's tools see it: the
//! Prometheus endpoint read by Prometheus' own parser (`promtool check
//! metrics`), `GetHealth` / `rackboot health`, log lines under journald
//! (syslog priorities, no timestamps of their own) and as JSON, jobs listed
//! and found by id alone.

mod common;

use common::{register, run_ok, Daemon};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

const CONFIG: &str =
    "[metrics]\nlisten = \"127.0.0.1:0\"\n[ipmi]\ntimeout_ms = 100\nattempts = 1\n";

/// GET `path` from the metrics endpoint: (status line, body).
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP answer");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample `name{labels}` (labels as written, sorted).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_pass_promtool_and_count_what_happened() {
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    let health = d.ok(json!({"action": "GetHealth"}));
    assert_eq!(health["healthy"], 1, "{health}");
    let addr = health["listening"]["metrics"]
        .as_str()
        .expect("GetHealth names the metrics address")
        .to_string();
    let ids = register(&d, 0, 3);
    // A power job on a BMC that is not there: a failed BMC operation.
    let r = d.ok(json!({"action": "StartBMNodes", "node_ids": [ids[0]]}));
    let job = r["job_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_id": job}));
        if s["status"] == "failed" || s["status"] == "successful" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    d.call(json!({"action": "NoSuchAction"}));

    let (status, text) = get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool must be installed (Debian's prometheus package; tests/run.sh installs it)",
        );
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sample(&text, "rackboot_nodes{status=\"new\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rackboot_nodes_power{state=\"unknown\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "rackboot_jobs{action=\"StartBMNodes\",status=\"failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "rackboot_api_request_duration_seconds_count{action=\"RegisterBMNodes\",ret_code=\"0\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(
            "rackboot_api_request_duration_seconds_count{action=\"unknown\",ret_code=\""
        )),
        "an unknown action is counted under one label: {text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(
            "rackboot_bmc_operation_duration_seconds_count{operation=\"on\",result=\""
        )),
        "{text}"
    );
    assert_eq!(sample(&text, "rackboot_dhcp_leases"), Some(0.0), "{text}");
    // Anything else is a 404 that says where the metrics are.
    let (status, body) = get(&addr, "/");
    assert!(
        status.contains("404") && body.contains("/metrics"),
        "{status} {body}"
    );
}

#[test]
fn health_says_what_runs_and_the_cli_shows_it() {
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    register(&d, 0, 2);
    let h = d.ok(json!({"action": "GetHealth"}));
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{h}");
    assert_eq!(h["schema_version"], 11, "{h}");
    assert_eq!(h["store"], "ok", "{h}");
    assert!(
        h["listening"]["api"]
            .as_str()
            .unwrap()
            .ends_with("api.sock"),
        "{h}"
    );
    assert!(
        h["listening"].get("dhcp").is_none(),
        "no interface, no DHCP: {h}"
    );
    assert_eq!(h["nodes"], 2, "{h}");
    assert_eq!(h["nodes_by_status"]["new"], 2, "{h}");
    assert_eq!(h["status"], "2 nodes, 0 jobs running, PXE off", "{h}");
    assert_eq!(h["last_power_sync"], "", "power sync is off in tests: {h}");
    let out = run_ok(&d.cli(&["health"]));
    assert!(out.contains("2 nodes, 0 jobs running, PXE off"), "{out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

#[test]
fn under_journald_lines_carry_their_priority_and_json_logs_parse() {
    let mut d = Daemon::start_with(Some(CONFIG), |_| {});
    d.journal_stream = true;
    d.restart();
    // A failed login is a warning.
    let r = d.raw(
        &json!({"action": "DescribeBMNodes", "USER_ID": "admin", "PASSWORD": "wrong-password"}),
    );
    assert_ne!(r["ret_code"], 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.log().contains("<4>") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    while !d.log().contains("rackboot started") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = d.log();
    for line in log.lines() {
        assert!(
            line.starts_with("<3>")
                || line.starts_with("<4>")
                || line.starts_with("<6>")
                || line.starts_with("<7>"),
            "a line without its priority: {line:?}\n{log}"
        );
        assert!(
            !line[3..].starts_with("20"),
            "a timestamp of its own: {line:?}"
        );
    }
    assert!(
        log.lines().any(|l| l.starts_with("<6>")
            && l.contains("rackboot started")
            && l.contains("version=")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("<4>") && l.contains("admin")),
        "the failed login: {log}"
    );

    // JSON: one object per line, with level and message.
    let json_config = format!("[daemon]\nlog_format = \"json\"\n{CONFIG}");
    let d = Daemon::start_with(Some(&json_config), |_| {});
    // The start-up line follows "API listening" (what the harness waits for).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.log().contains("rackboot started") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = d.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string()),
        "{log}"
    );
    assert!(
        lines.iter().any(
            |l| l["message"] == "rackboot started" && l["version"] == env!("CARGO_PKG_VERSION")
        ),
        "{log}"
    );
}

#[test]
fn jobs_are_listed_filtered_and_found_by_id_alone() {
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    let ids = register(&d, 0, 2);
    let mut jobs = Vec::new();
    for (action, id) in [("StartBMNodes", &ids[0]), ("StopBMNodes", &ids[1])] {
        let r = d.ok(json!({"action": action, "node_ids": [id]}));
        jobs.push((action, r["job_id"].as_str().unwrap().to_string()));
    }
    for (action, job) in &jobs {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // No job_action: the id says which job.
            let s = d.ok(json!({"action": "GetStatus", "job_id": job}));
            assert_eq!(s["job_action"], *action, "{s}");
            if s["status"] == "failed" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{s}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = d.ok(json!({"action": "GetLog", "job_id": job}));
        assert!(!log["log"].as_object().unwrap().is_empty(), "{log}");
    }
    let all = d.ok(json!({"action": "DescribeJobs"}));
    assert_eq!(all["total_count"], 2, "{all}");
    // Newest first.
    assert_eq!(all["job_set"][0]["job_id"], jobs[1].1.as_str(), "{all}");
    assert_eq!(all["job_set"][0]["failed_nodes"], 1, "{all}");
    let one = d.ok(json!({"action": "DescribeJobs", "job_action": "StartBMNodes", "status": "failed", "since": "1h"}));
    assert_eq!(one["total_count"], 1, "{one}");
    assert_eq!(one["job_set"][0]["job_id"], jobs[0].1.as_str(), "{one}");
    let none = d.ok(json!({"action": "DescribeJobs", "status": "running"}));
    assert_eq!(none["total_count"], 0, "{none}");
    // Bad filters say what is allowed.
    for (req, field) in [
        (
            json!({"action": "DescribeJobs", "status": "done"}),
            "status",
        ),
        (
            json!({"action": "DescribeJobs", "since": "yesterday"}),
            "since",
        ),
        (
            json!({"action": "DescribeJobs", "job_action": "DescribeBMNodes"}),
            "job_action",
        ),
        (json!({"action": "GetStatus"}), "job_id"),
    ] {
        let r = d.call(req.clone());
        assert_ne!(r["ret_code"], 0, "{req}: {r}");
        assert!(
            r["message"].as_str().unwrap_or_default().contains(field),
            "{req}: {r}"
        );
    }
    // A mismatched action still fails, naming the right one.
    let r =
        d.call(json!({"action": "GetStatus", "job_id": jobs[0].1, "job_action": "StopBMNodes"}));
    assert_ne!(r["ret_code"], 0, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("StartBMNodes"),
        "{r}"
    );
    let table = run_ok(&d.cli(&["jobs"]));
    assert!(
        table.contains("JOB_ID") && table.contains(&jobs[0].1) && table.contains("StopBMNodes"),
        "{table}"
    );
}

#[test]
fn db_backup_copies_a_live_database_and_check_finds_damage() {
    let d = Daemon::start_with(Some(CONFIG), |_| {});
    register(&d, 0, 4);
    let dest = d.state_dir().join("backup.db");
    let out = run_ok(&d.cli(&["db", "backup", dest.to_str().unwrap()]));
    assert!(
        out.contains("4 BMNodes") && out.contains("checked: ok"),
        "{out}"
    );
    // The copy is a database a daemon starts on, with the nodes in it.
    let password = d.state_dir().join("admin.password");
    let copy = Daemon::start_with(Some(CONFIG), |dir| {
        std::fs::copy(&dest, dir.join("rackboot.db")).unwrap();
        std::fs::copy(&password, dir.join("admin.password")).unwrap();
    });
    assert_eq!(
        copy.ok(json!({"action": "DescribeBMNodes"}))["total_count"],
        4
    );
    // Never over a file.
    let again = d.cli(&["db", "backup", dest.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let out = run_ok(&d.cli(&["db", "check"]));
    assert!(out.trim_end().ends_with(": ok"), "{out}");
    // A damaged file: check says so and exits 1.
    let broken = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&dest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 2048].fill(0x55);
    std::fs::write(broken.path().join("rackboot.db"), bytes).unwrap();
    let out = Command::new(common::BIN)
        .args([
            "--state-dir",
            broken.path().to_str().unwrap(),
            "db",
            "check",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rackboot.db"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
