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
    assert!(
        err.contains("j-Wait0001")
            && err.contains("failed")
            && err.contains("[...................."),
        "{err}"
    );
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
