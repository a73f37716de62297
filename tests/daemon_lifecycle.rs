//! The daemon as systemd and an operator see it: data that survives restarts
//! and kill -9, jobs interrupted by a crash, signals, reload, start-up
//! errors, file modes, sd_notify and the unit file.

mod common;

use common::{node, register, Daemon, BIN};
use rackboot::foundation::store::{JobStatus, MessageLevel, Store, StoredMessage};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn data_survives_a_restart() {
    let mut d = Daemon::start();
    let ids = register(&d, 0, 5);
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": ids[2], "brand": "supermicro"}));
    d.ok(json!({"action": "AddUser", "user_id": "ops", "new_password": "ops-password-1"}));
    let before = d.snapshot();
    d.restart();
    assert_eq!(before, d.snapshot());
    let r = d
        .raw(&json!({"action": "DescribeBMNodes", "USER_ID": "ops", "PASSWORD": "ops-password-1"}));
    assert_eq!(r["total_count"], 5, "{r}");
}

#[test]
fn kill_9_during_a_1000_node_registration_leaves_all_or_none() {
    let mut d = Daemon::start();
    let mut expected_min = 0;
    for (round, delay_ms) in [0u64, 3, 8, 15, 30].into_iter().enumerate() {
        let nodes: Vec<Value> = (0..1000).map(|i| node(round as u32 * 1000 + i)).collect();
        let body = json!({"action": "RegisterBMNodes", "bm_nodes": nodes, "USER_ID": "admin", "PASSWORD": d.password()});
        let socket = d.socket();
        let sender = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(rackboot::entry::cli::client::call(&socket, &body));
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.kill9();
        let _ = sender.join();
        d.spawn();
        let count = d.ok(json!({"action": "DescribeBMNodes", "limit": 1}))["total_count"]
            .as_u64()
            .unwrap();
        assert!(
            count == expected_min || count == expected_min + 1000,
            "round {round}: {count} nodes after kill -9 (expected {expected_min} or {})",
            expected_min + 1000
        );
        expected_min = count;
    }
}

#[test]
fn a_job_running_when_the_daemon_died_is_failed_with_a_log_line_and_a_message() {
    let d = Daemon::start_with(None, |dir| {
        rt().block_on(async {
            let store = Store::open(&dir.join("rackboot.db")).unwrap();
            store
                .create_job(
                    "j-Crash001".into(),
                    "ScanBMNodes",
                    vec![],
                    "admin",
                    "req-Abcdefgh",
                )
                .await
                .unwrap();
            store
                .set_job_status(
                    "j-Crash001",
                    JobStatus::Step(2),
                    Some("probing 10.0.0.1-10.0.0.9".into()),
                )
                .await
                .unwrap();
            // An expired message, to be purged at start.
            store
                .insert_message(StoredMessage {
                    id: "m-Expired1".into(),
                    event_id: "RB-JOB-0001".into(),
                    level: MessageLevel::Error,
                    user_message: "old".into(),
                    resource_type: "Job".into(),
                    resource_id: "j-Old00001".into(),
                    request_id: String::new(),
                    created_at: 1,
                    guaranteed_until: 2,
                })
                .await
                .unwrap();
        })
    });
    let r = d.ok(json!({"action": "GetStatus", "job_action": "ScanBMNodes"}));
    assert_eq!(r["job_id"], "j-Crash001");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["pre_status"], "step2");
    let log = d
        .ok(json!({"action": "GetLog", "job_action": "ScanBMNodes", "job_id": "j-Crash001"}))
        ["log"]
        .clone();
    assert_eq!(log["001"], "probing 10.0.0.1-10.0.0.9");
    assert!(
        log["002"].as_str().unwrap().contains("daemon stopped"),
        "{log}"
    );

    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": "j-Crash001"}));
    assert_eq!(m["total_count"], 1, "{m}");
    let msg = &m["message_set"][0];
    assert_eq!(msg["event_id"], "RB-JOB-0001");
    assert_eq!(msg["message_level"], "ERROR");
    assert_eq!(msg["resource_type"], "Job");
    assert_eq!(msg["request_id"], "req-Abcdefgh");
    assert!(msg["user_message"]
        .as_str()
        .unwrap()
        .starts_with("Job j-Crash001 (ScanBMNodes) was interrupted"));
    let created =
        rackboot::foundation::ids::parse_time(msg["created_at"].as_str().unwrap()).unwrap();
    let until =
        rackboot::foundation::ids::parse_time(msg["guaranteed_until"].as_str().unwrap()).unwrap();
    assert_eq!(until - created, 30 * 86_400);
    // Filters and deletion.
    assert_eq!(
        d.ok(json!({"action": "DescribeMessages", "level": "warning"}))["total_count"],
        0
    );
    assert_eq!(
        d.ok(json!({"action": "DescribeMessages", "event_id": "RB-JOB-0001"}))["total_count"],
        1
    );
    let all = d.ok(json!({"action": "DescribeMessages"}));
    assert_eq!(all["total_count"], 1, "expired message still listed: {all}");
    let id = msg["id"].clone();
    let r = d.ok(json!({"action": "DeleteMessages", "message_ids": [id]}));
    assert_eq!(r["total_count"], 1);
    assert_eq!(
        d.ok(json!({"action": "DescribeMessages"}))["total_count"],
        0
    );
}

#[test]
fn sigterm_and_sigint_stop_cleanly_within_5_seconds() {
    for sig in [nix::sys::signal::SIGTERM, nix::sys::signal::SIGINT] {
        let mut d = Daemon::start();
        register(&d, 0, 2);
        let mut child = d.child.take().unwrap();
        let t = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{sig}: {status}\n{}", d.log());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{sig}: took {:?}",
            t.elapsed()
        );
        assert!(!d.socket().exists(), "socket left behind");
        assert!(d.log().contains("stopped"));
        // WAL folded back: the database file alone holds the data.
        let wal = d.state_dir().join("rackboot.db-wal");
        assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    }
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let mut d = Daemon::start_with(
        Some("[daemon]\nlog_level = \"debug\"\n[api]\nmax_request_bytes = 16777216\n"),
        |_| {},
    );
    let nodes: Vec<Value> = (0..5000).map(node).collect();
    let body = json!({"action": "RegisterBMNodes", "bm_nodes": nodes, "USER_ID": "admin", "PASSWORD": d.password()});
    let socket = d.socket();
    let sender = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(rackboot::entry::cli::client::call(&socket, &body))
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log().contains("request received") {
        assert!(
            Instant::now() < deadline,
            "request never reached the daemon"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let (status, took) = d.stop();
    let response = sender.join().unwrap().expect("in-flight request answered");
    assert_eq!(response["ret_code"], 0, "{response}");
    assert!(status.success());
    assert!(took < Duration::from_secs(5), "{took:?}");
    d.spawn();
    assert_eq!(
        d.ok(json!({"action": "DescribeBMNodes", "limit": 1}))["total_count"],
        5000
    );
}

#[test]
fn sighup_applies_valid_changes_and_keeps_the_old_config_on_errors() {
    let d = Daemon::start_with(Some("[messages]\nretention_days = 30\n"), |_| {});
    let config = d.config.clone().unwrap();
    let hup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid()),
            nix::sys::signal::SIGHUP,
        )
        .unwrap()
    };
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    std::fs::write(
        &config,
        "[messages]\nretention_days = 7\n[api]\nsocket = \"/tmp/elsewhere.sock\"\n",
    )
    .unwrap();
    hup();
    wait_for("messages.retention_days");
    wait_for("api.socket");
    let log = d.log();
    assert!(
        log.contains("SIGHUP: applied") && log.contains("takes effect only after a restart"),
        "{log}"
    );
    std::fs::write(&config, "[messages]\nretention_dayz = 7\n").unwrap();
    hup();
    wait_for("keeping the current configuration");
    assert!(d.log().contains("retention_dayz"));
    d.ok(json!({"action": "DescribeBMNodes"}));
}

fn serve_with_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--state-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_configs_stop_start_up_naming_key_value_and_what_is_allowed() {
    let (code, err) = serve_with_config("[daemon]\nlog_level = \"chatty\"\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("log_level") && err.contains("chatty") && err.contains("debug"),
        "{err}"
    );
    let (code, err) = serve_with_config("[api]\nmax_request_bytes = 12\n");
    assert_eq!(code, Some(78));
    assert!(
        err.contains("api.max_request_bytes = 12") && err.contains("1024"),
        "{err}"
    );
    let (code, err) = serve_with_config("[dhcpp]\ninterface = \"eth0\"\n");
    assert_eq!(code, Some(78));
    assert!(err.contains("dhcpp"), "{err}");
    let missing = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/rackboot.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/rackboot.toml"));
}

#[test]
fn files_have_safe_modes_and_a_second_daemon_is_refused() {
    let d = Daemon::start();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.state_dir().join("rackboot.db")), 0o600);
    assert_eq!(mode(&d.state_dir().join("admin.password")), 0o600);
    assert_eq!(mode(&d.socket()), 0o660);
    assert!(d.log().contains("admin.password"));
    assert_eq!(d.password().len(), 24);

    // A job of the live daemon, mid-way: a second daemon on the same state
    // directory must not take it for an interrupted one.
    rt().block_on(async {
        let store = Store::open(&d.state_dir().join("rackboot.db")).unwrap();
        store
            .create_job(
                "j-Live0001".into(),
                "ScanBMNodes",
                vec![],
                "admin",
                "req-Abcdefgh",
            )
            .await
            .unwrap();
        store
            .set_job_status("j-Live0001", JobStatus::Step(1), Some("probing".into()))
            .await
            .unwrap();
    });
    let before = d.snapshot();
    let out = Command::new(BIN)
        .args(["serve", "--state-dir"])
        .arg(d.state_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already serving"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", d.pid())),
        "the refusal names the running daemon's pid: {stderr}"
    );
    // Nothing changed: the job still runs, no message was written.
    let status =
        d.ok(json!({"action": "GetStatus", "job_action": "ScanBMNodes", "job_id": "j-Live0001"}));
    assert_eq!(status["status"], "step1", "{status}");
    assert_eq!(d.snapshot(), before);
    assert_eq!(
        std::fs::read_to_string(d.state_dir().join("rackboot.lock"))
            .unwrap()
            .trim(),
        d.pid().to_string()
    );
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--state-dir"])
        .arg(dir.path())
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::process::Stdio::null());
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(dir.path().join("api.sock")).is_err() {
        assert!(Instant::now() < deadline, "daemon not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let _ = child.kill();
    let _ = child.wait();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["2048", "2048"], "{line}");
}

/// A real full disk: the state directory on a small tmpfs that the test
/// fills (root; CI is root). The API says the disk is full and where.
#[test]
fn a_full_disk_is_named_in_the_answer() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs and must run as root (CI does)"
    );
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path().to_path_buf());
    let state = mnt.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--state-dir"])
        .arg(&state)
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(state.join("api.sock")).is_err() {
        assert!(Instant::now() < deadline, "daemon not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Fill the rest of the tmpfs.
    let filler = mnt.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let password = std::fs::read_to_string(state.join("admin.password")).unwrap();
    let rt = rt();
    let call = |req: Value| {
        rt.block_on(rackboot::entry::cli::client::call(
            &state.join("api.sock"),
            &req,
        ))
        .unwrap()
    };
    let nodes: Vec<Value> = (0..2000).map(node).collect();
    let r = call(
        json!({"action": "RegisterBMNodes", "USER_ID": "admin", "PASSWORD": password.trim(), "bm_nodes": nodes}),
    );
    assert_eq!(r["ret_code"], 5100, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("is full") && msg.contains(&state.join("rackboot.db").display().to_string()),
        "{msg}"
    );
    // Space back: the same request works, nothing of the first was kept.
    std::fs::remove_file(&filler).unwrap();
    let r =
        call(json!({"action": "DescribeBMNodes", "USER_ID": "admin", "PASSWORD": password.trim()}));
    assert_eq!(r["total_count"], 0, "{r}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let mut d = Daemon::start();
    d.kill9();
    assert!(d.socket().exists(), "kill -9 leaves the socket file");
    d.spawn();
    d.ok(json!({"action": "DescribeBMNodes"}));
}

#[test]
fn sd_notify_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let state = dir.path().join("state");
    // As systemd starts it with WatchdogSec=1 (pings every 0.5 s): the
    // shell's pid is the daemon's once it execs.
    let child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" serve --state-dir \"$1\"")
        .arg(BIN)
        .arg(&state)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed if an assertion below fails (no daemon left behind).
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = listener.recv(&mut buf).expect("a notification within 60 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert!(first.contains("READY=1"), "{first}");
    assert!(
        std::os::unix::net::UnixStream::connect(state.join("api.sock")).is_ok(),
        "READY before the socket answers"
    );
    // Then the status line systemctl shows, and watchdog pings.
    let (mut status, mut pings) = (String::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pings < 2 && Instant::now() < deadline {
        let m = next();
        if let Some(s) = m.lines().find_map(|l| l.strip_prefix("STATUS=")) {
            status = s.to_string();
        }
        pings += m.lines().filter(|l| *l == "WATCHDOG=1").count();
    }
    assert_eq!(status, "0 nodes, 0 jobs running, PXE off");
    assert!(pings >= 2, "watchdog pings: {pings}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    loop {
        let m = next();
        if m.contains("STOPPING=1") {
            break;
        }
    }
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/rackboot.service"
    ))
    .unwrap();
    for needle in [
        "Type=notify",
        "StateDirectory=rackboot",
        "RuntimeDirectory=rackboot",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "LimitNOFILE=",
        "WatchdogSec=",
        "User=rackboot",
        "ExecStartPre=/usr/bin/rackboot config check",
        "RestartPreventExitStatus=78",
    ] {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
    // systemd must not kill a stop the daemon is still allowed to take:
    // requests, then jobs (shutdown_timeout each), then blocking work.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("the unit sets TimeoutStopSec")
        .trim()
        .parse()
        .unwrap();
    let worst = 2 * rackboot::foundation::config::Config::default()
        .daemon
        .shutdown_timeout
        + rackboot::entry::daemon::BLOCKING_GRACE.as_secs();
    assert!(
        stop >= worst + 5,
        "TimeoutStopSec={stop} is shorter than the worst-case stop ({worst} s) plus the checkpoint"
    );
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rackboot.service");
    std::fs::write(&path, unit.replace("/usr/bin/rackboot", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze must be installed (tests/run.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("rackboot.service:"),
        "{stderr}"
    );
}

#[test]
fn templates_are_checked_at_start_up_and_on_sighup() {
    // A replaced template with an undefined variable stops start-up, naming it.
    let tdir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tdir.path().join("ipxe")).unwrap();
    let local = tdir.path().join("ipxe/local.ipxe");
    std::fs::write(&local, "#!ipxe\necho {{ node.hostnam }}\n").unwrap();
    let bad = format!("[boot]\ntemplates_dir = \"{}\"\n", tdir.path().display());
    let (code, err) = serve_with_config(&bad);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("template ipxe/local.ipxe") && err.contains("undefined"),
        "{err}"
    );

    // Fixed, the daemon starts; broken again, SIGHUP keeps the old templates.
    std::fs::write(
        &local,
        "#!ipxe\necho {{ node.hostname }}\nsanboot --drive 0x80\n",
    )
    .unwrap();
    let d = Daemon::start_with(Some(&bad), |_| {});
    assert!(
        d.log()
            .contains("templates replaced from boot.templates_dir"),
        "{}",
        d.log()
    );
    std::fs::write(&local, "#!ipxe\necho {{ node.hostname }\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("keeping the current configuration") {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(d.log().contains("template ipxe/local.ipxe"), "{}", d.log());
    d.ok(json!({"action": "DescribeBMNodes"}));
}

#[test]
fn under_a_runtime_directory_the_socket_lives_there_and_the_cli_finds_it() {
    // systemd's RuntimeDirectory= sets RUNTIME_DIRECTORY (the packaged unit:
    // /run/rackboot); the state stays in the state directory.
    let dir = tempfile::tempdir().unwrap();
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    std::fs::create_dir_all(&run).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--state-dir"])
        .arg(&state)
        .env("RUNTIME_DIRECTORY", &run)
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = run.join("api.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "no socket in the runtime directory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!state.join("api.sock").exists());
    assert!(state.join("rackboot.db").exists());
    let password = std::fs::read_to_string(state.join("admin.password")).unwrap();
    let out = Command::new(BIN)
        .arg("describe-users")
        .env("RACKBOOT_SOCKET", &socket)
        .env("RACKBOOT_PASSWORD", password.trim())
        .env_remove("RACKBOOT_USER")
        .env_remove("RACKBOOT_STATE_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!socket.exists(), "the socket is removed at stop");
}
