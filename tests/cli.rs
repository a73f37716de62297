//! The CLI against a running daemon: each subcommand, human and --json
//! output, exit statuses, credentials from flags, environment and the
//! admin.password file.

mod common;

use common::{node, register, run_ok, Daemon, BIN};
use serde_json::{json, Value};
use std::process::Command;

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn register_describe_modify_delete_through_the_cli() {
    let d = Daemon::start();
    let file = d.state_dir().join("nodes.json");
    std::fs::write(&file, json!({"bm_nodes": [node(1), node(2)]}).to_string()).unwrap();
    let out = d.cli(&[
        "register-bm-nodes",
        "--file",
        file.to_str().unwrap(),
        "--json",
    ]);
    let r = json_out(&out);
    assert!(out.status.success());
    assert_eq!(r["total_count"], 2);
    let id1 = r["node_ids"][0].as_str().unwrap().to_string();

    // A bare list in --file is the action's object list; flags register one node.
    std::fs::write(&file, json!([node(3)]).to_string()).unwrap();
    run_ok(&d.cli(&["register-bm-nodes", "--file", file.to_str().unwrap()]));
    let text = run_ok(&d.cli(&[
        "register-bm-nodes",
        "--os-version",
        "tiny-1.0",
        "--cpu-arch",
        "aarch64",
        "--hostname",
        "arm01",
        "--ipmi-network-address",
        "10.99.0.50",
        "--ipmi-port",
        "6230",
        "--ipmi-username",
        "admin",
        "--ipmi-password",
        "password",
        "--pxe-network-mac-addr",
        "52-54-00-AA-BB-CC",
        "--is-mgmt-config-vlan",
        "1",
        "--mgmt-network-vlan-id",
        "42",
    ]));
    assert!(text.contains("total_count: 1"), "{text}");

    let table = run_ok(&d.cli(&["describe-bm-nodes"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NODE_ID")
            && lines[0].contains("HOSTNAME")
            && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        table.contains("arm01")
            && table.contains("52:54:00:aa:bb:cc")
            && table.contains("total_count: 4"),
        "{table}"
    );

    let one = json_out(&d.cli(&["describe-bm-nodes", &id1, "--json"]));
    assert_eq!(one["total_count"], 1);
    let filtered = json_out(&d.cli(&[
        "describe-bm-nodes",
        "--status",
        "new",
        "--limit",
        "2",
        "--offset",
        "1",
        "--json",
    ]));
    assert_eq!(filtered["total_count"], 4);
    assert_eq!(filtered["node_set"].as_array().unwrap().len(), 2);

    run_ok(&d.cli(&[
        "modify-bm-node-attributes",
        &id1,
        "--brand",
        "hpe",
        "--description",
        "rack 3, slot 7",
    ]));
    let one = json_out(&d.cli(&["describe-bm-nodes", &id1, "--json"]));
    assert_eq!(one["node_set"][0]["general"]["brand"], "hpe");
    assert_eq!(one["node_set"][0]["description"], "rack 3, slot 7");

    let out = run_ok(&d.cli(&["delete-bm-nodes", &id1]));
    assert!(
        out.contains(&id1) && out.contains("total_count: 1"),
        "{out}"
    );
}

#[test]
fn api_errors_give_exit_1_and_the_message_on_stderr() {
    let d = Daemon::start();
    let out = d.cli(&["delete-bm-nodes", "n-Zz000000"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("n-Zz000000") && err.contains("ret_code 2100"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // --json still prints the response, and still exits 1.
    let out = d.cli(&["describe-bm-nodes", "--status", "sleepy", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_out(&out)["ret_code"], 1100);

    // Usage errors exit 2; an unreachable daemon exits 3.
    assert_eq!(
        d.cli(&["describe-bm-nodes", "--limit", "many"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(d.cli(&["no-such-command"]).status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["--socket", "/nonexistent/api.sock", "describe-bm-nodes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rackboot serve"));
}

#[test]
fn credentials_come_from_flags_environment_or_the_admin_password_file() {
    let d = Daemon::start();
    let out = d.cli(&["user", "add", "ops", "--new-password", "ops-pass-123"]);
    run_ok(&out);
    let socket = d.socket();
    let s = socket.to_str().unwrap();
    // Flags.
    let out = Command::new(BIN)
        .args([
            "--socket",
            s,
            "--user",
            "ops",
            "--password",
            "ops-pass-123",
            "describe-users",
        ])
        .output()
        .unwrap();
    assert!(run_ok(&out).contains("ops"));
    // Environment.
    let out = Command::new(BIN)
        .args(["--socket", s, "describe-users"])
        .env("RACKBOOT_USER", "ops")
        .env("RACKBOOT_PASSWORD", "ops-pass-123")
        .output()
        .unwrap();
    run_ok(&out);
    // Wrong password: exit 1, auth error.
    let out = Command::new(BIN)
        .args([
            "--socket",
            s,
            "--user",
            "ops",
            "--password",
            "nope-nope",
            "describe-users",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ret_code 1200"));
    // No credentials at all and no readable admin.password.
    let out = Command::new(BIN)
        .args([
            "--socket",
            s,
            "--state-dir",
            "/nonexistent",
            "describe-users",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn user_subcommands_manage_users() {
    let d = Daemon::start();
    let out = run_ok(&d.cli(&["user", "add", "alice"]));
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("new_password: "))
        .expect("generated password printed")
        .to_string();
    assert!(generated.len() >= 8);
    let list = run_ok(&d.cli(&["user", "list"]));
    assert!(list.contains("admin") && list.contains("alice"), "{list}");
    let r = d.raw(&json!({"action": "DescribeUsers", "USER_ID": "alice", "PASSWORD": generated}));
    assert_eq!(r["ret_code"], 0);

    run_ok(&d.cli(&["user", "passwd", "alice", "--new-password", "alice-new-pw"]));
    let r = d.raw(&json!({"action": "DescribeUsers", "USER_ID": "alice", "PASSWORD": generated}));
    assert_eq!(r["ret_code"], 1200, "old password still works");
    let r =
        d.raw(&json!({"action": "DescribeUsers", "USER_ID": "alice", "PASSWORD": "alice-new-pw"}));
    assert_eq!(r["ret_code"], 0);

    let out = d.cli(&["user", "add", "bob", "--new-password", "short"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("new_password"));
    let out = d.cli(&["user", "add", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ret_code 2400"));

    run_ok(&d.cli(&["user", "delete", "alice"]));
    let r =
        d.raw(&json!({"action": "DescribeUsers", "USER_ID": "alice", "PASSWORD": "alice-new-pw"}));
    assert_eq!(r["ret_code"], 1200, "deleted user still authenticates");
    let out = d.cli(&["user", "delete", "admin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("last user"));
}

#[test]
fn call_get_status_get_log_and_messages_subcommands() {
    let d = Daemon::start();
    register(&d, 0, 1);
    let out = run_ok(&d.cli(&[
        "call",
        r#"{"action":"DescribeBMNodes","limit":1}"#,
        "--json",
    ]));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["action"], "DescribeBMNodesResponse");
    let out = d.cli(&["call", "not json"]);
    assert_eq!(out.status.code(), Some(2));

    // No job has run: a clear not-found from get-status and get-log.
    let out = d.cli(&["get-status", "--job-action", "ScanBMNodes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ScanBMNodes job has run yet"));
    let out = d.cli(&[
        "get-log",
        "--job-action",
        "CollectNodes",
        "--job-status",
        "failed",
    ]);
    assert_eq!(out.status.code(), Some(1));

    let out = run_ok(&d.cli(&["describe-messages"]));
    assert!(
        out.starts_with("ID") && out.contains("total_count: 0"),
        "{out}"
    );
    let out = d.cli(&["delete-messages", "m-Zz000000"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn get_status_wait_follows_a_job_to_its_end() {
    // A job interrupted by a crash is failed at start: --wait returns at
    // once with exit 1 and the bar at its last value.
    let d = Daemon::start_with(None, |dir| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = rackboot::foundation::store::Store::open(&dir.join("rackboot.db")).unwrap();
            store
                .create_job("j-Wait0001".into(), "ProvisionBMNodes", vec![], "admin", "")
                .await
                .unwrap();
        });
    });
    let out = d.cli(&[
        "get-status",
        "j-Wait0001",
        "--job-action",
        "ProvisionBMNodes",
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Not a terminal: one plain line per change, no bars redrawn with \r.
    assert!(
        err.contains("j-Wait0001 failed 0%\n")
            && err.contains("rackboot: job j-Wait0001 (ProvisionBMNodes) failed")
            && !err.contains('\r')
            && !err.contains("[...."),
        "{err}"
    );
}

/// A node whose BMC is a closed UDP port on loopback: every power
/// operation on it fails at once (nothing leaves the machine).
fn dead_bmc_node(d: &Daemon) -> String {
    let mut n = node(7);
    n["ipmi_network_address"] = "127.0.0.1".into();
    n["ipmi_port"] = 9.into();
    let r = d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [n]}));
    r["node_ids"][0].as_str().unwrap().to_string()
}

#[test]
fn wait_names_each_failed_node_and_json_prints_the_final_status() {
    let d = Daemon::start_with(
        Some("[ipmi]\ntimeout_ms = 200\nattempts = 1\npower_sync_interval = 0\nunreachable_backoff = 0\n"),
        |_| {},
    );
    let id = dead_bmc_node(&d);
    let out = d.cli(&["stop-bm-nodes", &id, "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    // One line per change, then the job's failure and the node's reason.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("j-") && l.ends_with(" failed 100%")),
        "{err}"
    );
    let reason = lines
        .iter()
        .find(|l| l.starts_with(&format!("  {id}: ret_code ")))
        .unwrap_or_else(|| panic!("no reason for {id}:\n{err}"));
    let status = json_out(&d.cli(&["get-status", "--job-action", "StopBMNodes", "--json"]));
    let node = &status["node_progress"][&id];
    assert_ne!(node["ret_code"], 0, "{status}");
    assert_eq!(
        *reason,
        format!(
            "  {id}: ret_code {}: {}",
            node["ret_code"],
            node["message"].as_str().unwrap()
        )
    );

    // --wait --json: the final status is the one JSON document on stdout.
    let out = d.cli(&["stop-bm-nodes", &id, "--force", "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let last = json_out(&out);
    assert_eq!(last["status"], "failed", "{last}");
    assert_eq!(last["job_action"], "StopBMNodes", "{last}");
    assert_ne!(last["node_progress"][&id]["ret_code"], 0, "{last}");
}

#[test]
fn config_check_and_show_name_what_is_wrong_and_print_every_default() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[api]\nmax_request_bytes = 12\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api.max_request_bytes = 12") && err.contains("1024"),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[daemon]\nshutdown_timeout = 9\n\n[[scan.default_credentials]]\nusername = \"ADMIN\"\npassword = \"s3cret-pw\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        run_ok(&out).trim(),
        format!("configuration OK: {}", good.display())
    );
    let shown = run_ok(
        &Command::new(BIN)
            .args(["config", "show", "--config"])
            .arg(&good)
            .output()
            .unwrap(),
    );
    // The file's value, the defaults filled in, the password hidden.
    assert!(shown.contains("shutdown_timeout = 9\n"), "{shown}");
    assert!(shown.contains("max_request_bytes = 1048576\n"), "{shown}");
    assert!(
        shown.contains("[tftp]") && shown.contains("[provision]"),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret-pw") && shown.contains("\"********\""),
        "{shown}"
    );
    // What it prints is a valid configuration, equal to the file's but for the password.
    let copy = dir.path().join("shown.toml");
    std::fs::write(&copy, &shown).unwrap();
    let mut expected = rackboot::foundation::config::Config::load(&good).unwrap();
    expected.scan.default_credentials[0].password = "********".into();
    assert_eq!(
        rackboot::foundation::config::Config::load(&copy).unwrap(),
        expected
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_tree() {
    let bash = run_ok(
        &Command::new(BIN)
            .args(["completions", "bash"])
            .output()
            .unwrap(),
    );
    assert!(bash.contains("describe-bm-nodes") && bash.contains("--pxe-network-mac-addr"));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("rackboot.bash");
    std::fs::write(&script, &bash).unwrap();
    run_ok(
        &Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap(),
    );
    let zsh = run_ok(
        &Command::new(BIN)
            .args(["completions", "zsh"])
            .output()
            .unwrap(),
    );
    assert!(
        zsh.starts_with("#compdef rackboot"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    let fish = run_ok(
        &Command::new(BIN)
            .args(["completions", "fish"])
            .output()
            .unwrap(),
    );
    assert!(fish.contains("complete -c rackboot"));
    assert_eq!(
        Command::new(BIN)
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );

    let man = dir.path().join("man");
    let out = run_ok(
        &Command::new(BIN)
            .arg("manpages")
            .arg(&man)
            .output()
            .unwrap(),
    );
    let pages = std::fs::read_dir(&man).unwrap().count();
    assert_eq!(
        out.trim(),
        format!("{pages} man pages written to {}", man.display())
    );
    for action in rackboot::transport::api::catalogue::ACTIONS {
        let page = std::fs::read_to_string(man.join(format!("rackboot-{}.1", action.command)))
            .unwrap_or_else(|e| panic!("no man page for {}: {e}", action.command));
        assert!(
            page.contains(".TH") && page.contains(action.name),
            "{}",
            action.command
        );
    }
    let top = std::fs::read_to_string(man.join("rackboot.1")).unwrap();
    assert!(
        top.contains("config") && top.contains("\\-\\-state\\-dir"),
        "{top}"
    );
    assert!(
        man.join("rackboot-config-check.1").is_file() && man.join("rackboot-user-add.1").is_file()
    );
}

#[test]
fn environment_finds_the_daemon_and_a_password_alone_is_admins() {
    let d = Daemon::start();
    let password = std::fs::read_to_string(d.state_dir().join("admin.password")).unwrap();
    let bare = || {
        let mut c = Command::new(BIN);
        c.env_remove("RACKBOOT_USER")
            .env_remove("RACKBOOT_PASSWORD")
            .env_remove("RACKBOOT_SOCKET")
            .env_remove("RACKBOOT_STATE_DIR");
        c
    };
    // RACKBOOT_SOCKET + RACKBOOT_PASSWORD without RACKBOOT_USER: admin.
    let out = bare()
        .arg("describe-users")
        .env("RACKBOOT_SOCKET", d.socket())
        .env("RACKBOOT_PASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(run_ok(&out).contains("admin"));
    // RACKBOOT_STATE_DIR: the socket and admin.password in it.
    let out = bare()
        .arg("describe-users")
        .env("RACKBOOT_STATE_DIR", d.state_dir())
        .output()
        .unwrap();
    assert!(run_ok(&out).contains("admin"));
    // A wrong password alone is refused as admin's.
    let out = bare()
        .arg("describe-users")
        .env("RACKBOOT_SOCKET", d.socket())
        .env("RACKBOOT_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ret_code 1200"));
}

#[test]
fn switches_detail_view_piped_tables_and_grouped_help() {
    let d = Daemon::start();
    let ids = register(&d, 0, 3);
    // A switch alone sends 1; `=0` sends 0; the older `--flag 1` still works.
    run_ok(&d.cli(&["modify-bm-node-attributes", &ids[0], "--maintenance"]));
    run_ok(&d.cli(&["modify-bm-node-attributes", &ids[1], "--maintenance", "1"]));
    let on = json_out(&d.cli(&["describe-bm-nodes", "--maintenance", "--json"]));
    assert_eq!(on["total_count"], 2, "{on}");
    let off = json_out(&d.cli(&["describe-bm-nodes", "--maintenance=0", "--json"]));
    assert_eq!(off["total_count"], 1, "{off}");
    assert_eq!(off["node_set"][0]["node_id"], ids[2].as_str());
    run_ok(&d.cli(&["modify-bm-node-attributes", &ids[1], "--maintenance=0"]));
    let on = json_out(&d.cli(&["describe-bm-nodes", "--maintenance", "1", "--json"]));
    assert_eq!(on["total_count"], 1, "{on}");
    assert_eq!(
        d.cli(&["describe-bm-nodes", "--maintenance=2"])
            .status
            .code(),
        Some(2)
    );

    // Exactly one id: key: value lines; two ids: the table.
    let one = run_ok(&d.cli(&["describe-bm-nodes", &ids[0]]));
    assert!(!one.starts_with("NODE_ID"), "{one}");
    assert!(
        one.lines()
            .any(|l| l.starts_with("node_id:") && l.ends_with(ids[0].as_str())),
        "{one}"
    );
    assert!(
        one.lines()
            .any(|l| l.starts_with("general.hostname:") && l.ends_with("rack1n00000")),
        "{one}"
    );
    let two = run_ok(&d.cli(&["describe-bm-nodes", &format!("{},{}", ids[0], ids[1])]));
    assert!(two.starts_with("NODE_ID"), "{two}");

    // Piped: never cut, whatever COLUMNS says (a terminal 40 wide would).
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(d.state_dir())
        .arg("describe-bm-nodes")
        .env("COLUMNS", "40")
        .env_remove("RACKBOOT_USER")
        .env_remove("RACKBOOT_PASSWORD")
        .output()
        .unwrap();
    let table = run_ok(&out);
    let header = table.lines().next().unwrap();
    assert!(
        header.len() > 40 && header.ends_with("OS_VERSION"),
        "{table}"
    );
    assert!(
        table.contains("52:54:00:00:00:02") && table.contains("10.20.0.2") && !table.contains('…'),
        "{table}"
    );

    // On a terminal (a pty from script(1)), 60 columns wide: every line fits.
    let cmdline = format!(
        "{BIN} --state-dir {} describe-bm-nodes",
        d.state_dir().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env("COLUMNS", "60")
        .env_remove("RACKBOOT_USER")
        .env_remove("RACKBOOT_PASSWORD")
        .env_remove("RACKBOOT_SOCKET")
        .output()
        .expect("script(1) (bsdutils) runs the CLI on a pty");
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        shown.starts_with("NODE_") && shown.contains("10.20") && shown.contains('…'),
        "{shown}"
    );
    for line in shown.lines() {
        assert!(
            line.chars().count() <= 60,
            "{line:?} is wider than the terminal"
        );
    }

    // --help: groups, each action's subcommand exactly once.
    let help = run_ok(&Command::new(BIN).arg("--help").output().unwrap());
    for heading in [
        "Daemon and setup:",
        "Bare-metal nodes:",
        "Provisioning:",
        "Jobs:",
        "Users:",
    ] {
        assert!(help.contains(heading), "{heading} missing:\n{help}");
    }
    for action in rackboot::transport::api::catalogue::ACTIONS {
        let listed = help
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(action.command))
            .count();
        assert_eq!(listed, 1, "{} listed {listed} times", action.command);
    }
}

#[test]
fn help_lists_one_subcommand_per_action() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for action in rackboot::transport::api::catalogue::ACTIONS {
        assert!(
            help.contains(action.command),
            "{} missing from --help",
            action.command
        );
    }
    let out = Command::new(BIN)
        .args(["register-bm-nodes", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--pxe-network-mac-addr") && help.contains("RegisterBMNodes"),
        "{help}"
    );
}
