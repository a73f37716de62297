//! ProvisionBMNodes and IntrospectBMNodes end to end without VMs: the real
//! daemon in a network namespace of the test's own, the project's fake BMCs
//! (RMCP+, checked against ipmitool elsewhere) inside that namespace, and a
//! simulated deploy ramdisk that does what the real one does over HTTP —
//! fetch its node's boot script, then post progress, an inventory, done or
//! failed to the callback URL the script carries. ipmitool reads the boot
//! device and power state the provision left on each BMC.

mod common;

use common::interactive::Running;
use common::netns::Netns;
use common::{run_ok, Daemon};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

struct Lab {
    srv: Netns,
    cli: Netns,
    dir: tempfile::TempDir,
}

const BMC_PORT: u16 = 16230;

fn lab(bmcs: u32) -> Lab {
    let srv = Netns::new("prov");
    let cli = Netns::new("provc");
    srv.ip(&[
        "link", "add", "rb-srv", "type", "veth", "peer", "name", "cli0", "netns", &cli.name,
    ]);
    srv.ip(&["addr", "add", "10.99.0.1/24", "dev", "rb-srv"]);
    srv.ip(&["link", "set", "rb-srv", "up"]);
    cli.ip(&["link", "set", "cli0", "up"]);
    let at = common::fakebmc::addresses(bmcs, std::net::Ipv4Addr::LOCALHOST, BMC_PORT, None);
    common::netns::run_in(&srv.name, move || common::fakebmc::spawn(at));
    let dir = tempfile::tempdir().unwrap();
    for f in ["vmlinuz", "initrd.img", "undionly.kpxe"] {
        std::fs::write(dir.path().join(f), f).unwrap();
    }
    std::fs::write(dir.path().join("tiny.raw"), vec![7u8; 4096]).unwrap();
    Lab { srv, cli, dir }
}

fn config(lab: &Lab, extra: &str) -> String {
    let d = lab.dir.path().display();
    format!(
        "[dhcp]\ninterface = \"rb-srv\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.199\"\nrouter_advertisement = false\n\
         [boot]\nfiles_dir = \"{d}\"\n[deploy]\nkernel = \"{d}/vmlinuz\"\ninitrd = \"{d}/initrd.img\"\n\
         [provision]\nboot_timeout = 6\ndeploy_timeout = 30\npower_on_timeout = 10\n{extra}\n\
         [[images]]\nos_version = \"tiny-1.0\"\nfile = \"{d}/tiny.raw\"\n"
    )
}

/// Node `n`: odd ones boot in legacy BIOS mode, even ones in UEFI (the
/// default).
fn register(d: &Daemon, n: u32) -> String {
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": format!("prov{n:02}"), "os_version": "tiny-1.0",
        "cpu_arch": "x86_64", "os_disk_name": "vda", "boot_mode": if n % 2 == 1 { "bios" } else { "uefi" },
        "mgmt_network_address": format!("10.99.1.{}", 10 + n), "mgmt_network_netmask": "255.255.255.0",
        "ipmi_network_address": "127.0.0.1", "ipmi_port": BMC_PORT + n as u16,
        "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": format!("52:54:00:99:10:{n:02x}"),
    }));
    r["node_ids"][0].as_str().unwrap().to_string()
}

fn curl(ns: &Netns, args: &[&str]) -> (u16, String) {
    let (code, body) = ns.curl(args);
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// What the deploy ramdisk does first: fetch the node's script; returns the
/// callback URL in it once the node is being deployed.
fn boot(lab: &Lab, node_id: &str) -> Option<String> {
    let (code, script) = curl(
        &lab.srv,
        &[&format!("http://10.99.0.1:8080/boot/{node_id}.ipxe")],
    );
    assert_eq!(code, 200, "{script}");
    script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rackboot.callback="))
        .map(str::to_string)
}

/// The simulated machine's boot: once `job` has power cycled the node
/// (step2 on: a real machine asks nothing before), its deploy script.
fn wait_boot(lab: &Lab, d: &Daemon, job: &str, node_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_id": job}));
        let step = s["node_progress"][node_id]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !matches!(
            step.as_str(),
            "" | "step0" | "step1" | "pending" | "waiting"
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{node_id} never reached step2: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(url) = boot(lab, node_id) {
            return url;
        }
        assert!(
            Instant::now() < deadline,
            "{node_id} never got its deploy script"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(lab: &Lab, url: &str, event: &str, body: &str) -> u16 {
    curl(
        &lab.srv,
        &[
            "-X",
            "POST",
            "--data-binary",
            body,
            &format!("{url}/{event}"),
        ],
    )
    .0
}

fn ipmitool(lab: &Lab, n: u32, args: &[&str]) -> String {
    let port = (BMC_PORT + n as u16).to_string();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.srv.name,
            "ipmitool",
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "admin",
            "-P",
            "password",
        ])
        .args(args)
        .output()
        .expect("ipmitool must be installed");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Polls the job's status until `until` holds (at most `secs`).
fn wait_status(d: &Daemon, job_id: &str, secs: u64, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = d.ok(json!({"action": "GetProvisionBMNodesStatus", "job_id": job_id}));
        if until(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "job {job_id}, still: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn job_done(d: &Daemon, job_id: &str, secs: u64) -> Value {
    wait_status(d, job_id, secs, |s| {
        s["status"] == "successful" || s["status"] == "failed"
    })
}

fn node(d: &Daemon, id: &str) -> Value {
    d.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}))["node_set"][0].clone()
}

#[test]
fn two_nodes_go_from_new_to_active_with_progress_and_boot_from_disk_after() {
    let lab = lab(2);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let ids = [register(&d, 0), register(&d, 1)];
    let r = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": ids}));
    let job_id = r["job_id"].as_str().unwrap().to_string();
    // A user follows it with the CLI, its stderr not a terminal: one line
    // per change of the job or a node until the job ends.
    let mut follower = Running::start(
        Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .arg("--state-dir")
            .arg(d.state_dir())
            .args(["get-provision-status", &job_id, "--wait"]),
    );
    // The job lasts about a second: the nodes move on once the follower
    // has seen them (a loaded machine may start it late).
    for id in &ids {
        follower.wait_for(&format!("{job_id} {id} step"), 30);
    }
    let mut seen = Vec::new();
    for id in &ids {
        let url = wait_boot(&lab, &d, &job_id, id);
        for p in [25, 50, 100] {
            assert_eq!(
                post(
                    &lab,
                    &url,
                    "progress",
                    &format!("bytes={}&total=4096", p * 4096 / 100)
                ),
                200
            );
            let s = d.ok(json!({"action": "GetProvisionBMNodesStatus", "job_id": job_id}));
            seen.push(
                s["node_progress"][id]["progress"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        // The answer to the inventory is the plan: the disk the node's
        // hints choose among those reported, and the image.
        let (code, plan) = curl(
            &lab.srv,
            &[
                "-X",
                "POST",
                "--data-binary",
                r#"{"system":{"vendor":"QEMU","serial":"SN-1"},"cpu":{"count":2},"memory":{"total_kib":262144},"disks":[{"name":"sda","size_bytes":8589934592,"serial":"S-A"},{"name":"vda","size_bytes":1073741824,"serial":"S-V"}],"nics":[],"boot_mode":"uefi","secure_boot":true}"#,
                &format!("{url}/inventory"),
            ],
        );
        assert_eq!(code, 200, "{plan}");
        let plan: Value = serde_json::from_str(&plan).unwrap();
        assert_eq!(plan["action"], "deploy", "{plan}");
        assert_eq!(
            plan["disk"], "vda",
            "the name hint (os_disk_name) chose: {plan}"
        );
        assert_eq!(plan["image"]["path"], "/images/tiny-1.0/image", "{plan}");
        assert_eq!(plan["image"]["virtual_size"], 4096, "{plan}");
        assert_eq!(plan["image"]["extents"], json!([[0, 4096]]), "{plan}");
        assert_eq!(post(&lab, &url, "done", ""), 200);
    }
    let s = job_done(&d, &job_id, 30);
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(s["progress"], "100%");
    for id in &ids {
        follower.wait_for(&format!("{job_id} {id} successful 100%\n"), 30);
    }
    assert_eq!(follower.exit_within(30), 0, "{}", follower.text());
    let bars = follower.text();
    for id in &ids {
        assert!(
            bars.contains(&format!("{job_id} {id} successful 100%\n")),
            "{bars}"
        );
        assert!(bars.contains(&format!("{job_id} {id} step")), "{bars}");
    }
    // Per node: when each step began and how long it took.
    for id in &ids {
        let steps = s["node_progress"][id]["steps"].as_object().expect("steps");
        let names: Vec<&str> = steps.keys().map(String::as_str).collect();
        // Nodes registered `new` are verified first (step0).
        assert_eq!(names, ["step0", "step1", "step2", "step3", "step4"], "{s}");
        for (name, t) in steps {
            assert_eq!(t["running"], false, "{name}: {t}");
            assert!(t["seconds"].as_f64().unwrap() >= 0.0, "{name}: {t}");
            assert_eq!(t["started_at"].as_str().unwrap().len(), 19, "{name}: {t}");
        }
        assert!(steps["step1"]["started_at"].as_str() <= steps["step4"]["started_at"].as_str());
    }
    // The job id alone finds the job; DescribeJobs and `rackboot jobs` list it.
    let alone = d.ok(json!({"action": "GetStatus", "job_id": job_id}));
    assert_eq!(alone["job_action"], "ProvisionBMNodes", "{alone}");
    let jobs = d.ok(
        json!({"action": "DescribeJobs", "job_action": "ProvisionBMNodes", "status": "successful"}),
    );
    let listed = jobs["job_set"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|j| j["job_id"] == job_id.as_str() && j["nodes"] == 2 && j["failed_nodes"] == 0),
        "{jobs}"
    );
    let table = run_ok(&d.cli(&["jobs", "--job-action", "ProvisionBMNodes"]));
    assert!(
        table
            .lines()
            .any(|l| l.contains(job_id.as_str()) && l.contains("successful")),
        "{table}"
    );
    for id in &ids {
        assert_eq!(s["node_progress"][id]["progress"], "100%", "{s}");
        let n = node(&d, id);
        assert_eq!(
            (n["status"].as_str(), n["pre_status"].as_str()),
            (Some("active"), Some("provisioning")),
            "{n}"
        );
    }
    assert!(
        seen.iter().any(|p| p == "30%") && seen.iter().any(|p| p == "90%"),
        "progress from the ramdisk's bytes: {seen:?}"
    );
    for n in 0..2 {
        let boot = ipmitool(&lab, n, &["chassis", "bootparam", "get", "5"]);
        assert!(
            boot.contains("Force Boot from default Hard-Drive"),
            "{boot}"
        );
        // The EFI bit follows each node's boot_mode (node 0 uefi, 1 bios).
        let mode = if n == 0 {
            "BIOS EFI boot"
        } else {
            "BIOS PC Compatible (legacy) boot"
        };
        assert!(boot.contains(mode), "node {n}: {boot}");
        assert!(ipmitool(&lab, n, &["chassis", "power", "status"]).contains("on"));
    }
    // What the ramdisk said of Secure Boot is shown.
    assert_eq!(node(&d, &ids[0])["secure_boot"], 1);
    // SetBMNodesBootDevice without `efi` follows boot_mode too; with it, not.
    let job = d
        .ok(json!({"action": "SetBMNodesBootDevice", "node_ids": ids, "boot_device": "pxe"}))
        ["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = |job: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = d.ok(
                json!({"action": "GetStatus", "job_id": job, "job_action": "SetBMNodesBootDevice"}),
            );
            if s["status"] == "successful" {
                break;
            }
            assert!(s["status"] != "failed" && Instant::now() < deadline, "{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    done(&job);
    assert!(ipmitool(&lab, 0, &["chassis", "bootparam", "get", "5"]).contains("BIOS EFI boot"));
    assert!(ipmitool(&lab, 1, &["chassis", "bootparam", "get", "5"])
        .contains("BIOS PC Compatible (legacy) boot"));
    let job = d.ok(json!({"action": "SetBMNodesBootDevice", "node_ids": [ids[0].clone()], "boot_device": "pxe", "efi": 0}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    done(&job);
    assert!(ipmitool(&lab, 0, &["chassis", "bootparam", "get", "5"])
        .contains("BIOS PC Compatible (legacy) boot"));
    let log = d.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job_id}));
    let text = log["log"].to_string();
    for step in [
        "step0: validate",
        "step1: boot device pxe",
        "step2: waiting for the network boot",
        "step3: deploying tiny-1.0",
        "step4: boot device disk",
        ": active",
        "2 of 2 node(s) done",
    ] {
        assert!(text.contains(step), "log lacks {step}: {text}");
    }
    // Each active BMNode is listed as a Node with the ramdisk's inventory.
    let listed = d.ok(json!({"action": "DescribeNodes"}));
    for id in &ids {
        let n = listed["node_set"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["bm_node_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no Node for {id}: {listed}\n{}", d.log()));
        assert_eq!(n["status"], "available", "{n}");
        assert_eq!(n["cpu"]["cpu_processors"], 2, "{n}");
        assert_eq!(n["memory"]["memory_size"], 0.3, "{n}");
        assert_eq!(n["os"]["os_name"], "tiny-1.0", "{n}");
    }
    // An active node that network-boots again gets its disk, never a deploy.
    assert_eq!(boot(&lab, &ids[0]), None);
    // And is not provisioned twice by mistake.
    let again = d.call(json!({"action": "ProvisionBMNodes", "node_ids": [ids[0]]}));
    assert_eq!(again["ret_code"], 2300, "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("is active"),
        "{again}"
    );
}

#[test]
fn failures_say_which_step_and_power_the_node_off() {
    let lab = lab(3);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let (silent, broken, aborted) = (register(&d, 0), register(&d, 1), register(&d, 2));
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [silent, broken, aborted]}))
        ["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // `broken`'s ramdisk finds the image checksum wrong; `aborted` is
    // stopped mid-deploy; `silent` never network-boots (a wrong PXE MAC).
    let url = wait_boot(&lab, &d, &job, &broken);
    post(&lab, &url, "progress", "percent=40");
    post(
        &lab,
        &url,
        "failed",
        "message=sha256 mismatch: the image is corrupt",
    );
    let url = wait_boot(&lab, &d, &job, &aborted);
    post(&lab, &url, "progress", "percent=10");
    let r = d.ok(json!({"action": "AbortProvisionBMNodes", "node_ids": [aborted]}));
    assert_eq!(r["node_ids"][0], aborted.as_str());
    let s = job_done(&d, &job, 30);
    assert_eq!(s["status"], "failed");
    let np = &s["node_progress"];
    assert_eq!(np[&silent]["ret_code"], 3710, "{s}");
    let message = np[&silent]["message"].as_str().unwrap();
    assert!(
        message.contains("did not request its boot file within 6 s"),
        "{s}"
    );
    // The diagnosis: the BMC says on and PXE, and not one DHCP request.
    assert!(
        message
            .contains("Likely cause: no DHCP request from 52:54:00:99:10:00 since the power cycle"),
        "{message}"
    );
    // A UEFI node: next-boot, persistent, then persistent without the EFI flag.
    assert!(
        message.contains("Tried three times: with a next-boot boot override, a persistent one, and a persistent one without the EFI flag."),
        "{message}"
    );
    let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": silent}));
    assert_eq!(t["diagnosis_cause"], "no_dhcp", "{t}");
    assert!(
        t["event_set"][0]["kind"] == "bmc"
            && t["event_set"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("step1: boot device pxe (next boot, EFI), power cycle")
            && t["event_set"][1]["detail"]
                .as_str()
                .unwrap()
                .contains("step2: boot device pxe (persistent, EFI), power cycle")
            && t["event_set"][2]["detail"]
                .as_str()
                .unwrap()
                .contains("step2: boot device pxe (persistent), power cycle"),
        "{t}"
    );
    assert_eq!(np[&broken]["ret_code"], 3720, "{s}");
    assert!(
        np[&broken]["message"]
            .as_str()
            .unwrap()
            .contains("sha256 mismatch"),
        "{s}"
    );
    assert_eq!(np[&aborted]["ret_code"], 3740, "{s}");
    for (n, id) in [&silent, &broken, &aborted].into_iter().enumerate() {
        assert_eq!(node(&d, id)["status"], "provision_failed");
        assert!(
            ipmitool(&lab, n as u32, &["chassis", "power", "status"]).contains("off"),
            "node {n} left on"
        );
    }
    let failed_lines =
        d.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job, "job_status": "failed"}));
    assert!(
        failed_lines["log"].to_string().contains("failed: "),
        "{failed_lines}"
    );
    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": silent}));
    assert!(m.to_string().contains("RB-PRV-0003"), "{m}");
    // Wrong state: nothing to abort on a failed node; the callback token of
    // an ended deploy still matches but no one listens.
    let r = d.call(json!({"action": "AbortProvisionBMNodes", "node_ids": [silent]}));
    assert_eq!(r["ret_code"], 2300, "{r}");
}

/// A machine that network-boots only once its BMC's boot flags read all of
/// `flags` (as some BMCs behave): waits for them, boots, and returns its
/// callback URL and the job log once it says `worked`.
fn boot_once_flags_read(
    lab: &Lab,
    d: &Daemon,
    job: &str,
    id: &str,
    flags: &[&str],
    worked: &str,
) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let read = ipmitool(lab, 0, &["chassis", "bootparam", "get", "5"]);
        if flags.iter().all(|f| read.contains(f)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no override with {flags:?}: {read}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = wait_boot(lab, d, job, id);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log =
            d.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job}))["log"].to_string();
        if log.contains(worked) {
            return (url, log);
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bmc_that_ignores_a_next_boot_override_gets_a_persistent_one() {
    let lab = lab(1);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let id = register(&d, 0);
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The machine: its firmware network-boots only when the BMC's boot
    // override is persistent (as some BMCs behave).
    let (url, log) = boot_once_flags_read(
        &lab,
        &d,
        &job,
        &id,
        &["Options apply to all future boots", "PXE"],
        "step2: the persistent boot override worked",
    );
    assert!(
        log.contains("step2: no DHCP from 52:54:00:99:10:00 in 6 s: boot device pxe again, persistent this time"),
        "{log}"
    );
    assert_eq!(post(&lab, &url, "progress", "percent=10"), 200);
    d.ok(json!({"action": "AbortProvisionBMNodes", "node_ids": [id]}));
    assert_eq!(job_done(&d, &job, 30)["status"], "failed");
}

#[test]
fn a_bmc_that_ignores_an_override_with_the_efi_flag_gets_one_without_it() {
    let lab = lab(1);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    // A UEFI node whose BMC ignores any override that carries the EFI flag
    // (the machine network-boots only on a persistent one without it).
    let id = register(&d, 0);
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (url, log) = boot_once_flags_read(
        &lab,
        &d,
        &job,
        &id,
        &[
            "Options apply to all future boots",
            "PXE",
            "BIOS PC Compatible (legacy) boot",
        ],
        "step2: the persistent boot override without the EFI flag worked",
    );
    assert!(
        log.contains("boot device pxe again, persistent this time")
            && log.contains("boot device pxe again, persistent and without the EFI flag"),
        "{log}"
    );
    assert_eq!(post(&lab, &url, "progress", "percent=10"), 200);
    d.ok(json!({"action": "AbortProvisionBMNodes", "node_ids": [id]}));
    assert_eq!(job_done(&d, &job, 30)["status"], "failed");
}

#[test]
fn a_deploy_that_stalls_after_its_script_or_its_ramdisk_download_is_diagnosed() {
    let lab = lab(2);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let (no_kernel, no_callback) = (register(&d, 0), register(&d, 1));
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [no_kernel, no_callback]}))
        ["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // `no_kernel`'s boot loader gets its deploy script and goes no further.
    wait_boot(&lab, &d, &job, &no_kernel);
    // `no_callback` gets its script, then fetches the deploy kernel and
    // initrd from the client namespace with the node's MAC, and its
    // ramdisk never calls back.
    wait_boot(&lab, &d, &job, &no_callback);
    as_node(&lab, 1);
    for f in ["kernel", "initrd"] {
        let (code, body) = curl(&lab.cli, &[&format!("http://10.99.0.1:8080/deploy/{f}")]);
        assert_eq!(code, 200, "{body}");
    }
    let s = job_done(&d, &job, 90);
    let np = &s["node_progress"];
    for (id, wanted) in [
        (&no_kernel, "Likely cause: the boot script was served but the kernel was never requested"),
        (&no_callback, "Likely cause: the node fetched the deploy kernel and initrd but the ramdisk never called back"),
    ] {
        assert_eq!(np[id]["ret_code"], 3730, "{s}");
        assert!(np[id]["message"].as_str().unwrap().contains(wanted), "{s}");
    }
    let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": no_callback}));
    assert_eq!(t["diagnosis_cause"], "no_callback", "{t}");
    assert!(
        t["event_set"].to_string().contains("GET /deploy/initrd: "),
        "{t}"
    );
}

/// The client namespace's veth becomes node `n`'s NIC (its PXE MAC and
/// 10.99.0.150): what it fetches over HTTP lands in `n`'s boot timeline.
fn as_node(lab: &Lab, n: u32) {
    lab.cli.ip(&["link", "set", "cli0", "down"]);
    let mac = format!("52:54:00:99:10:{n:02x}");
    lab.cli.ip(&["link", "set", "cli0", "address", &mac]);
    lab.cli.ip(&["link", "set", "cli0", "up"]);
    lab.cli
        .ip(&["addr", "add", "10.99.0.150/24", "dev", "cli0"]);
}

/// Node 0 provisioning with a 32 MiB deploy kernel (big enough to cut
/// mid-transfer), its deploy script fetched: (lab, daemon, node, job).
fn deploying_with_a_big_kernel() -> (Lab, Daemon, String, String) {
    let lab = lab(1);
    std::fs::write(lab.dir.path().join("vmlinuz"), vec![0x5au8; 32 << 20]).unwrap();
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let id = register(&d, 0);
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_boot(&lab, &d, &job, &id);
    (lab, d, id, job)
}

#[test]
fn a_kernel_download_cut_mid_transfer_is_diagnosed() {
    let (lab, d, id, job) = deploying_with_a_big_kernel();
    // The node (its MAC, from the client namespace) starts the kernel and
    // the link gives out after a second, at 64 KiB/s.
    as_node(&lab, 0);
    let _ = curl(
        &lab.cli,
        &[
            "--limit-rate",
            "64K",
            "--max-time",
            "1",
            "http://10.99.0.1:8080/deploy/kernel",
        ],
    );
    let s = job_done(&d, &job, 90);
    let message = s["node_progress"][&id]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s["node_progress"][&id]["ret_code"], 3730, "{s}");
    assert!(
        message.contains(
            "Likely cause: a file transfer to the node did not complete (GET /deploy/kernel: "
        ),
        "{message}"
    );
    let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": id}));
    assert_eq!(t["diagnosis_cause"], "transfer_stopped", "{t}");
}

#[test]
fn a_kernel_download_stalled_by_a_dead_link_is_diagnosed() {
    let (lab, d, id, job) = deploying_with_a_big_kernel();
    as_node(&lab, 0);
    // The node starts its kernel; a second later its link dies (nothing,
    // not even a reset, reaches rackboot again).
    let mut fetch = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli.name,
            "curl",
            "-s",
            "-o",
            "/dev/null",
        ])
        .args(["--limit-rate", "64K", "http://10.99.0.1:8080/deploy/kernel"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    lab.cli.ip(&["link", "set", "cli0", "down"]);
    let _ = fetch.kill();
    let _ = fetch.wait();
    let s = job_done(&d, &job, 90);
    let message = s["node_progress"][&id]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s["node_progress"][&id]["ret_code"], 3730, "{s}");
    assert!(
        message.contains(
            "Likely cause: a file transfer to the node began and has not ended (GET /deploy/kernel: started (33554432 bytes))"
        ),
        "{message}"
    );
    let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": id}));
    assert_eq!(t["diagnosis_cause"], "transfer_stalled", "{t}");
}

#[test]
fn a_node_whose_record_vanishes_fails_alone_and_the_others_finish() {
    let lab = lab(2);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let (lost, fine) = (register(&d, 0), register(&d, 1));
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [&lost, &fine]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Both wait for their network boot; then `lost`'s row disappears from
    // the database under the running job (a store error for its task).
    wait_status(&d, &job, 20, |s| {
        s["node_progress"][&lost]["status"] == "step2"
            && s["node_progress"][&fine]["status"] == "step2"
    });
    let db = rusqlite::Connection::open(d.state_dir().join("rackboot.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute("DELETE FROM bm_nodes WHERE node_id = ?1", [&lost])
        .unwrap();
    drop(db);
    // `fine` is deploying when `lost` times out in step2 and cannot be
    // recorded as failed; `fine` still finishes.
    let url = wait_boot(&lab, &d, &job, &fine);
    assert_eq!(post(&lab, &url, "progress", "percent=50"), 200);
    let failed = wait_status(&d, &job, 20, |s| {
        s["node_progress"][&lost]["status"] == "failed"
    });
    assert_eq!(failed["status"], "step3", "{failed}");
    assert_eq!(failed["node_progress"][&lost]["ret_code"], 5000, "{failed}");
    let why = failed["node_progress"][&lost]["message"].as_str().unwrap();
    assert!(
        why.contains("internal error at step2") && why.contains("is not registered"),
        "{why}"
    );
    assert_eq!(post(&lab, &url, "done", ""), 200);
    let s = job_done(&d, &job, 30);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["node_progress"][&fine]["status"], "successful", "{s}");
    assert_eq!(node(&d, &fine)["status"], "active");
    let log = d.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job}));
    assert!(
        log["log"]
            .to_string()
            .contains(&format!("1 of 2 node(s) done; failed: {lost}")),
        "{log}"
    );
}

#[test]
fn a_daemon_killed_mid_deploy_leaves_the_node_failed_with_a_message() {
    let lab = lab(1);
    let mut d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let id = register(&d, 0);
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = wait_boot(&lab, &d, &job, &id);
    post(&lab, &url, "progress", "percent=30");
    d.kill9();
    d.restart();
    let n = node(&d, &id);
    assert_eq!(n["status"], "provision_failed", "{n}");
    let s = d.ok(json!({"action": "GetProvisionBMNodesStatus", "job_id": job}));
    assert_eq!(s["status"], "failed", "{s}");
    let m = d.ok(json!({"action": "DescribeMessages", "resource_id": id}));
    assert!(
        m.to_string().contains("RB-PRV-0007") && m.to_string().contains("was provisioning"),
        "{m}"
    );
    // Nothing was lost: it can be provisioned again.
    let again = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}));
    assert!(again["job_id"].is_string());
}

#[test]
fn introspection_stores_the_inventory_and_readies_the_node() {
    let lab = lab(1);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let id = register(&d, 0);
    let missing = d.call(json!({"action": "GetIntrospectionData", "node_id": id}));
    assert_eq!(missing["ret_code"], 2100, "{missing}");
    let job = d.ok(json!({"action": "IntrospectBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = wait_boot(&lab, &d, &job, &id);
    // A node mid-job is never deleted, not even with force.
    let r = d.call(json!({"action": "DeleteBMNodes", "node_ids": [id], "force": 1}));
    assert_eq!(r["ret_code"], 2300, "{r}");
    let (_, script) = curl(
        &lab.srv,
        &[&format!("http://10.99.0.1:8080/boot/{id}.ipxe")],
    );
    assert!(script.contains("rackboot.mode=inspect"), "{script}");
    let inventory = r#"{"system":{"vendor":"QEMU","product":"Standard PC","serial":"SN-42"},"cpu":{"count":2},"memory":{"total_kib":262144},"disks":[{"name":"vda","size_bytes":1073741824}],"nics":[{"name":"eth0","mac":"52:54:00:99:10:00"}]}"#;
    assert_eq!(post(&lab, &url, "inventory", inventory), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s =
            d.ok(json!({"action": "GetStatus", "job_action": "IntrospectBMNodes", "job_id": job}));
        if s["status"] == "successful" {
            break;
        }
        assert!(s["status"] != "failed" && Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = node(&d, &id);
    assert_eq!(n["status"], "ready", "{n}");
    assert!(
        n.to_string().contains("SN-42"),
        "the serial number was taken in: {n}"
    );
    assert!(ipmitool(&lab, 0, &["chassis", "power", "status"]).contains("off"));
    let data = d.ok(json!({"action": "GetIntrospectionData", "node_id": id}));
    assert_eq!(data["data"]["system"]["serial"], "SN-42");
    assert_eq!(data["processed"]["cpu_count"], 2);
    assert_eq!(data["processed"]["memory_mib"], 256);
    assert_eq!(data["processed"]["disks"][0]["size_bytes"], 1073741824u64);
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": id, "serial_number": "changed"}));
    let r = d.ok(json!({"action": "ReapplyIntrospection", "node_id": id}));
    assert!(r["applied"].to_string().contains("serial_number"), "{r}");
    assert!(node(&d, &id).to_string().contains("SN-42"));
}

#[test]
fn discovery_enlists_an_unknown_machine_that_network_boots() {
    let lab = lab(0);
    let config = config(&lab, "").replace(
        "router_advertisement = false\n",
        "router_advertisement = false\ndiscovery = true\n",
    );
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config), |_| {});
    // Before it network-boots here, a machine cannot enlist itself.
    let inventory = r#"{"system":{"vendor":"QEMU","serial":"SN-D1"},"cpu":{"count":4},"memory":{"total_kib":1048576},"disks":[{"name":"sda","size_bytes":2000000000}],"nics":[{"name":"eth0","mac":"52:54:00:99:30:01"}]}"#;
    let url = "http://10.99.0.1:8080/discover/52-54-00-99-30-01/inventory";
    lab.cli
        .ip(&["link", "set", "cli0", "address", "52:54:00:99:30:01"]);
    lab.cli.ip(&["addr", "add", "10.99.0.77/24", "dev", "cli0"]);
    let (code, _) = curl(&lab.cli, &["-X", "POST", "--data-binary", inventory, url]);
    assert_eq!(code, 403);
    // It network-boots (a PXE client the daemon does not know): answered
    // with the discovery boot, which is the inventory ramdisk.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli.name,
            "busybox",
            "udhcpc",
            "-i",
            "cli0",
            "-n",
            "-q",
            "-t",
            "3",
            "-T",
            "1",
            "-V",
            "PXEClient:Arch:00000:UNDI:002001",
            "-s",
            "/bin/true",
        ])
        .output()
        .expect("busybox must be installed");
    assert!(
        out.status.success(),
        "no DHCP answer for an unknown PXE client under discovery"
    );
    let (code, script) = curl(&lab.cli, &["http://10.99.0.1:8080/boot/discovery.ipxe"]);
    assert_eq!(code, 200);
    assert!(
        script.contains("rackboot.mode=inspect") && script.contains("/discover/${mac:hexhyp}"),
        "{script}"
    );
    // Its ramdisk reports: it is a new BMNode, once. (The DHCP thread
    // records the boot just after answering; a real ramdisk posts many
    // seconds later, this test at once: it retries briefly.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (code, id) = loop {
        let (code, id) = curl(&lab.cli, &["-X", "POST", "--data-binary", inventory, url]);
        if code != 403 || std::time::Instant::now() > deadline {
            break (code, id);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(code, 200, "{id}");
    let id = id.trim().to_string();
    let n = node(&d, &id);
    assert_eq!(n["status"], "new", "{n}");
    assert_eq!(n["pxe"]["pxe_network_mac_addr"], "52:54:00:99:30:01", "{n}");
    assert!(
        n.to_string().contains("SN-D1") && n.to_string().contains("discovered-525400993001"),
        "{n}"
    );
    let (code, again) = curl(&lab.cli, &["-X", "POST", "--data-binary", inventory, url]);
    assert_eq!((code, again.trim()), (200, id.as_str()));
    let all = d.ok(json!({"action": "DescribeBMNodes"}));
    assert_eq!(all["total_count"], 1, "{all}");
    let data = d.ok(json!({"action": "GetIntrospectionData", "node_id": id}));
    assert_eq!(data["processed"]["cpu_count"], 4);
    // Without a BMC it cannot be provisioned yet: step0 says so.
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = job_done(&d, &job, 20);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["node_progress"][&id]["ret_code"], 3700, "{s}");
    assert!(
        s["node_progress"][&id]["message"]
            .as_str()
            .unwrap()
            .contains("no BMC yet"),
        "{s}"
    );
}

#[test]
fn a_missing_deploy_kernel_is_named_at_step0_before_any_power_on() {
    let lab = lab(1);
    std::fs::remove_file(lab.dir.path().join("vmlinuz")).unwrap();
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let id = register(&d, 0);
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = job_done(&d, &job, 20);
    assert_eq!(s["node_progress"][&id]["ret_code"], 3700, "{s}");
    assert!(
        s["node_progress"][&id]["message"]
            .as_str()
            .unwrap()
            .contains("the deploy ramdisk is not built (rackboot ramdisk build, or set [deploy] kernel and initrd)"),
        "{s}"
    );
    // Its BMC was never told to boot: no boot timeline at all.
    let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": id}));
    assert_eq!(t["event_set"], json!([]), "{t}");
}

#[test]
fn without_a_pxe_interface_step0_says_so_at_once() {
    // No [dhcp] interface: nothing network-facing runs, so a provision
    // would only time out at step2; step0 refuses with the fix instead.
    let d = Daemon::start();
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "nopxe01", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_port": 16299, "ipmi_username": "admin",
        "ipmi_password": "password", "pxe_network_mac_addr": "52:54:00:99:40:01",
    }));
    let id = r["node_ids"][0].as_str().unwrap().to_string();
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = job_done(&d, &job, 10);
    assert_eq!(s["node_progress"][&id]["ret_code"], 3700, "{s}");
    assert!(
        s["node_progress"][&id]["message"]
            .as_str()
            .unwrap()
            .contains("set [dhcp] interface"),
        "{s}"
    );
    assert_eq!(
        node(&d, &id)["status"],
        "new",
        "nothing was changed on the node"
    );
}

#[test]
fn no_disk_matching_the_root_device_hints_fails_step3_at_once_listing_the_disks() {
    let lab = lab(2);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let (picky, several) = (register(&d, 0), register(&d, 1));
    d.ok(
        json!({"action": "ModifyBMNodeAttributes", "node_id": picky, "os_disk_name": "",
                "root_device": {"serial": "NOT-THERE", "size_gb": 8}}),
    );
    d.ok(
        json!({"action": "ModifyBMNodeAttributes", "node_id": several, "os_disk_name": "",
                "root_device": {"size_gb": 8}}),
    );
    // Bad hints are refused with the hint named, and nothing changes.
    let r = d.call(json!({"action": "ModifyBMNodeAttributes", "node_id": picky, "root_device": {"colour": "red"}}));
    assert_eq!(r["ret_code"], 1100, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("unknown hint `colour`"),
        "{r}"
    );
    let r = d.call(json!({"action": "ModifyBMNodeAttributes", "node_id": picky, "root_device": {"size_gb": "big"}}));
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("root_device.size_gb"),
        "{r}"
    );
    let shown = node(&d, &picky);
    assert_eq!(
        shown["os_disk"]["root_device"],
        json!({"serial": "NOT-THERE", "size_gb": 8}),
        "{shown}"
    );
    assert_eq!(shown["boot_mode"], "uefi");

    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [picky, several]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let disks = r#"{"disks":[{"name":"sda","size_bytes":8589934592,"serial":"S-1","model":"QEMU HARDDISK"},{"name":"sdb","size_bytes":8589934592,"serial":"S-2"}],"nics":[]}"#;
    for id in [&picky, &several] {
        let url = wait_boot(&lab, &d, &job, id);
        let (code, why) = curl(
            &lab.srv,
            &[
                "-X",
                "POST",
                "--data-binary",
                disks,
                &format!("{url}/inventory"),
            ],
        );
        assert_eq!(code, 409, "{why}");
        assert!(
            why.contains(
                "disks found: sda 8.0 GiB serial S-1 model QEMU HARDDISK; sdb 8.0 GiB serial S-2"
            ),
            "{why}"
        );
    }
    let s = job_done(&d, &job, 30);
    let np = &s["node_progress"];
    assert_eq!(np[&picky]["ret_code"], 3760, "{s}");
    let msg = np[&picky]["message"].as_str().unwrap();
    assert!(
        msg.contains("no disk matches every hint")
            && msg.contains("serial=NOT-THERE")
            && msg.contains("sdb 8.0 GiB serial S-2"),
        "{msg}"
    );
    let msg = np[&several]["message"].as_str().unwrap();
    assert!(msg.contains("several disks match (sda, sdb)"), "{msg}");
    assert_eq!(node(&d, &picky)["status"], "provision_failed");
}

#[test]
fn a_firmware_asking_in_the_other_boot_mode_is_named_when_the_boot_times_out() {
    let lab = lab(1);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    // Registered uefi (the default), but its firmware is a legacy BIOS PXE
    // ROM: option 93 arch 0. It gets an address and a boot file, then
    // nothing more happens (it never asks for its script).
    let id = register(&d, 0);
    lab.cli
        .ip(&["link", "set", "cli0", "address", "52:54:00:99:10:00"]);
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&d, &job, 20, |s| {
        s["node_progress"][&id]["status"] == "step2"
    });
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli.name,
            "busybox",
            "udhcpc",
            "-i",
            "cli0",
            "-n",
            "-q",
            "-f",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
            "-V",
            "PXEClient:Arch:00000:UNDI:002001",
            "-x",
            "0x5d:0000",
        ])
        .output()
        .expect("busybox must be installed (tests/run.sh installs busybox-static)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The DHCP thread hands its timeline lines to the store's writer after
    // answering: they land shortly after the client got its lease.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let timeline =
            d.ok(json!({"action": "DescribeBootEvents", "node_id": id}))["event_set"].to_string();
        if timeline.contains("arch 0 (asked as BIOS, registered uefi)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{timeline}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let s = job_done(&d, &job, 30);
    let msg = s["node_progress"][&id]["message"].as_str().unwrap();
    assert_eq!(s["node_progress"][&id]["ret_code"], 3710, "{s}");
    assert!(
        msg.contains("its firmware asked as BIOS, registered uefi: set boot_mode"),
        "{msg}"
    );
}

#[test]
fn cloud_init_settings_reach_the_plan_and_the_life_after_active_follows_the_rules() {
    let lab = lab(1);
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(&lab, "")), |_| {});
    let id = register(&d, 0);
    let key = lab.dir.path().join("id_test");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tester@lab", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen must be installed");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();

    // Bad cloud-init input is refused, naming the field; nothing starts.
    for (request, code, says) in [
        (
            json!({"ssh_keys": ["ssh-ed25519 AAAA"]}),
            1100,
            "ssh_keys: key 1 is not an OpenSSH public key",
        ),
        (
            json!({"user_data": "x".repeat(70_000)}),
            1103,
            "more than the 65536 bytes",
        ),
        (json!({"hostname": "bad_name!"}), 1100, "hostname"),
        (
            json!({"node_settings": [{"node_id": "n-NOTTHERE", "hostname": "a"}]}),
            1100,
            "is not among node_ids",
        ),
        (
            json!({"node_settings": [{"node_id": id, "colour": "red"}]}),
            1100,
            "node_settings[0].colour",
        ),
    ] {
        let mut r = request.clone();
        r["action"] = "ProvisionBMNodes".into();
        r["node_ids"] = json!([id]);
        let a = d.call(r);
        assert_eq!(a["ret_code"], code, "{request}: {a}");
        assert!(a["message"].as_str().unwrap().contains(says), "{a}");
    }
    assert_eq!(node(&d, &id)["status"], "new");

    // Maintenance: provisioning and unprovisioning are refused with the
    // reason; power actions still work.
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": id, "maintenance": 1, "maintenance_reason": "disk swap"}));
    for action in [
        "ProvisionBMNodes",
        "UnprovisionBMNodes",
        "IntrospectBMNodes",
    ] {
        let r = d.call(json!({"action": action, "node_ids": [id]}));
        assert_eq!(r["ret_code"], 2300, "{r}");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("in maintenance (disk swap)"),
            "{r}"
        );
    }
    let shown = d.ok(json!({"action": "DescribeBMNodes", "maintenance": 1}));
    assert_eq!(shown["node_set"][0]["node_id"], id.as_str(), "{shown}");
    assert_eq!(shown["node_set"][0]["maintenance"], 1, "{shown}");
    assert_eq!(
        shown["node_set"][0]["maintenance_reason"], "disk swap",
        "{shown}"
    );
    let none = d.ok(json!({"action": "DescribeBMNodes", "maintenance": 0}));
    assert_eq!(none["node_set"], json!([]), "{none}");
    let start = d.ok(json!({"action": "StartBMNodes", "node_ids": [id]}));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = d.ok(
            json!({"action": "GetStatus", "job_action": "StartBMNodes", "job_id": start["job_id"]}),
        );
        if s["status"] == "successful" {
            break;
        }
        assert!(
            s["status"] != "failed" && Instant::now() < deadline,
            "power actions work in maintenance: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ipmitool(&lab, 0, &["power", "status"]).contains("on"));
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": id, "maintenance": 0}));

    // The plan the ramdisk gets carries the cloud-init seed: the host name
    // asked, the caller's key and rackboot's own, the caller's user data as
    // a part of its own type, the registered management network.
    let job = d.ok(json!({
        "action": "ProvisionBMNodes", "node_ids": [id], "ssh_keys": [public],
        "hostname": "web-1", "user_data": "#!/bin/sh\necho hello from user data\n",
    }))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = wait_boot(&lab, &d, &job, &id);
    let inventory =
        r#"{"disks":[{"name":"vda","size_bytes":8589934592,"serial":"S-1"}],"nics":[]}"#;
    let (code, plan) = curl(
        &lab.srv,
        &[
            "-X",
            "POST",
            "--data-binary",
            inventory,
            &format!("{url}/inventory"),
        ],
    );
    assert_eq!(code, 200, "{plan}");
    let plan: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["action"], "deploy", "{plan}");
    let seed = &plan["seed"];
    let user = seed["user-data"].as_str().unwrap();
    assert!(user.contains("hostname: \"web-1\""), "{user}");
    assert!(user.contains(&public), "{user}");
    assert!(user.contains(" rackboot\""), "rackboot's own key: {user}");
    assert!(
        user.contains("Content-Type: text/x-shellscript")
            && user.contains("echo hello from user data"),
        "{user}"
    );
    assert!(
        seed["meta-data"]
            .as_str()
            .unwrap()
            .contains("local-hostname: \"web-1\""),
        "{seed}"
    );
    let net = seed["network-config"].as_str().unwrap();
    assert!(
        net.contains("macaddress: \"52:54:00:99:10:00\"") && net.contains("10.99.1.10/24"),
        "{net}"
    );
    assert_eq!(
        post(
            &lab,
            &url,
            "log",
            "message=cloud-init+seed+written+to+vda3+(ext4)"
        ),
        200
    );
    assert_eq!(post(&lab, &url, "done", ""), 200);
    let s = job_done(&d, &job, 30);
    assert_eq!(s["status"], "successful", "{s}");
    let log = d
        .ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job}))
        .to_string();
    assert!(
        log.contains("step3: cloud-init seed written to vda3 (ext4)"),
        "{log}"
    );
    assert!(
        !log.contains("hello from user data"),
        "user data is never logged: {log}"
    );
    assert!(!node(&d, &id).to_string().contains("hello from user data"));

    // Active: never deleted without force (rackboot would lose track of a
    // running machine).
    let r = d.call(json!({"action": "DeleteBMNodes", "node_ids": [id]}));
    assert_eq!(r["ret_code"], 2300, "{r}");
    assert!(r["message"].as_str().unwrap().contains("force"), "{r}");
    assert_eq!(node(&d, &id)["status"], "active");

    // Active: no second deploy without rebuild; with it, the node deploys
    // again (aborted here).
    let r = d.call(json!({"action": "ProvisionBMNodes", "node_ids": [id]}));
    assert_eq!(r["ret_code"], 2300, "{r}");
    assert!(r["message"].as_str().unwrap().contains("rebuild: 1"), "{r}");
    let job = d.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id], "rebuild": 1}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_boot(&lab, &d, &job, &id);
    d.ok(json!({"action": "AbortProvisionBMNodes", "node_ids": [id]}));
    let s = job_done(&d, &job, 30);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(node(&d, &id)["status"], "provision_failed");

    // Unprovision: a bad wipe is refused; then the ramdisk boots in clean
    // mode, is told to wipe every disk it reported, and the node ends
    // ready and off.
    let r = d.call(json!({"action": "UnprovisionBMNodes", "node_ids": [id], "wipe": "shred"}));
    assert_eq!(r["ret_code"], 1100, "{r}");
    let job = d.ok(json!({"action": "UnprovisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node(&d, &id)["status"] != "cleaning" {
        assert!(Instant::now() < deadline, "{}", node(&d, &id));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, script) = curl(
        &lab.srv,
        &[&format!("http://10.99.0.1:8080/boot/{id}.ipxe")],
    );
    let url = loop {
        if let Some(u) = boot(&lab, &id) {
            break u;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, script_now) = curl(
        &lab.srv,
        &[&format!("http://10.99.0.1:8080/boot/{id}.ipxe")],
    );
    assert!(
        script_now.contains("rackboot.mode=clean"),
        "{script} / {script_now}"
    );
    let two = r#"{"disks":[{"name":"vda","size_bytes":8589934592},{"name":"vdb","size_bytes":1073741824}],"nics":[]}"#;
    let (code, plan) = curl(
        &lab.srv,
        &[
            "-X",
            "POST",
            "--data-binary",
            two,
            &format!("{url}/inventory"),
        ],
    );
    assert_eq!(code, 200, "{plan}");
    let plan: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(
        plan,
        json!({"action": "wipe", "disks": ["vda", "vdb"], "how": "metadata"})
    );
    assert_eq!(post(&lab, &url, "done", ""), 200);
    let s = d.ok(json!({"action": "GetUnprovisionBMNodesStatus", "job_id": job}));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = s;
    while s["status"] != "successful" && s["status"] != "failed" {
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
        s = d.ok(json!({"action": "GetUnprovisionBMNodesStatus", "job_id": job}));
    }
    assert_eq!(s["status"], "successful", "{s}");
    let log = d
        .ok(json!({"action": "GetUnprovisionBMNodesLog", "job_id": job}))
        .to_string();
    assert!(log.contains("wiping (metadata) vda"), "{log}");
    assert_eq!(node(&d, &id)["status"], "ready");
    assert!(ipmitool(&lab, 0, &["power", "status"]).contains("off"));
}
