//! Serial consoles over IPMI SOL, with real parts: a lab VM (QEMU, its
//! serial port a TCP socket) behind OpenIPMI's ipmi_sim, whose `sol`
//! connects to that socket. The provision's console is kept (the deploy
//! ramdisk's own lines are in `rackboot console-log`); `rackboot console`
//! meets an ipmitool SOL session holding the BMC, says so, takes it over
//! with --force, shows what the VM prints live (a reset's BIOS banner) and
//! leaves with `~.`. Needs root (CI is root).

mod common;

use common::interactive::Running;
use common::lab::{Lab, BIN};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cli(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--state-dir").arg(lab.path("state")).args(args);
    c
}

fn ipmitool_sol(lab: &Lab, verb: &str) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &lab.netns,
        "ipmitool",
        "-I",
        "lanplus",
        "-C",
        "3",
        "-H",
        "10.99.0.1",
        "-p",
        "6230",
        "-U",
        "admin",
        "-P",
        "password",
        "sol",
        verb,
    ]);
    c
}

#[test]
fn a_provision_s_console_is_kept_and_an_operator_takes_the_console_over_from_ipmitool() {
    let (lab, out) = Lab::up("con", &["--nodes", "1"]);
    assert!(out.contains("all nodes active"), "{out}");
    let nodes = lab.ok(json!({"action": "DescribeBMNodes"}));
    let id = nodes["node_set"][0]["node_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The deploy ramdisk's own lines, as the operator reads them.
    let log = cli(&lab, &["console-log", &id, "--limit", "5000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(log.status.success(), "{text}");
    for line in [
        "[rackboot] console attached (SOL, BMC 10.99.0.1:6230)",
        "rackboot-agent: 0.1.0 starting, mode Deploy",
        "rackboot-agent: image written",
        // From the firmware's first line on.
        "SeaBIOS (version",
        "iPXE initialising devices...ok",
        "[rackboot] console closed",
    ] {
        assert!(
            text.contains(line),
            "the console log lacks `{line}`:\n{text}"
        );
    }
    // Both boots: the deploy ramdisk's and the installed OS's (step5).
    assert!(
        text.matches("Run /init as init process").count() >= 2,
        "{text}"
    );
    // No terminal escapes or carriage returns reach the log.
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
    let last = lab.ok(json!({"action": "GetBMNodeConsoleLog", "node_id": id, "limit": 2}));
    assert_eq!(last["console_log"].as_array().unwrap().len(), 2, "{last}");
    assert_eq!(
        last["console_log"][1]["line"], "[rackboot] console closed",
        "{last}"
    );
    let r = lab.api(json!({"action": "GetBMNodeConsoleLog", "node_id": "n-NOTTHERE"}));
    assert_eq!(r["ret_code"], 2100, "{r}");
    let r = lab.api(json!({"action": "GetBMNodeConsoleLog", "node_id": id, "since": "yesterday"}));
    assert_eq!(r["ret_code"], 1100, "{r}");
    assert!(r["message"].as_str().unwrap().contains("since"), "{r}");

    // ipmitool holds the BMC's console: rackboot says so and how to take it.
    let _ = ipmitool_sol(&lab, "deactivate").output();
    let ipmitool = Running::start(&mut ipmitool_sol(&lab, "activate"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        ipmitool_sol(&lab, "activate")
            .stdin(Stdio::null())
            .output()
            .map(
                |o| String::from_utf8_lossy(&o.stdout).contains("already active")
                    || String::from_utf8_lossy(&o.stderr).contains("already active")
            )
            .unwrap(),
        "ipmitool's first session does not hold the console:\n{}",
        ipmitool.text()
    );
    let refused = cli(&lab, &["console", &id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{why}");
    assert!(
        why.contains("another session already holds the serial console (SOL)")
            && why.contains("--force")
            && why.contains("ret_code 3400"),
        "{why}"
    );

    // --force takes it over; what the VM prints arrives live.
    let mut console = Running::start(&mut cli(&lab, &["console", &id, "--force"]));
    console.wait_for("[rackboot] console of", 20);
    let reset = lab.ipmitool(0, &["chassis", "power", "reset"]);
    assert!(reset.contains("Reset"), "{reset}");
    console.wait_for("SeaBIOS", 60);
    // Rackboot's session now holds the console, not ipmitool's.
    let again = ipmitool_sol(&lab, "activate")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already active")
            || String::from_utf8_lossy(&again.stderr).contains("already active"),
        "{again:?}"
    );
    console.type_in(b"\r~.");
    assert_eq!(console.exit_within(15), 0, "{}", console.text());
    assert!(
        console.text().contains("left the console"),
        "{}",
        console.text()
    );
    drop(ipmitool);

    // Left, the console is free again for others, and what was seen is logged.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = ipmitool_sol(&lab, "info").output().unwrap();
        let free = ipmitool_sol(&lab, "activate")
            .stdin(Stdio::piped())
            .spawn()
            .map(|mut c| {
                std::thread::sleep(Duration::from_secs(2));
                let alive = c.try_wait().unwrap().is_none();
                let _ = c.kill();
                let _ = c.wait();
                alive
            })
            .unwrap();
        if free {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the console stayed taken: {st:?}"
        );
    }
    let _ = ipmitool_sol(&lab, "deactivate").output();
    let log: Value = lab.ok(json!({"action": "GetBMNodeConsoleLog", "node_id": id, "limit": 5000}));
    let lines = log["console_log"].to_string();
    assert!(lines.contains("SeaBIOS"), "{lines}");
}
