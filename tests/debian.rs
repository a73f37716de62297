//! A real OS end to end: a Debian 12 image built from Debian's packages
//! (tests/images/debian12.sh, mmdebstrap; cached under
//! /var/cache/rackboot/debian/<recipe key>/) is provisioned into a lab
//! VM that boots UEFI (OVMF), with an SSH key and a host name given in
//! ProvisionBMNodes and a management address from registration. Checked
//! from outside: the installed Debian boots and calls back (cloud-init's
//! phone_home), its host name is the one asked, the key logs in over SSH
//! from the lab's namespace, the management address is configured, its
//! serial console (`rackboot console`, SOL) answers at the login prompt, and
//! CollectNodes reads its hardware over SSH with rackboot's own key. Then
//! UnprovisionBMNodes wipes it: the VM's disk carries no partition table
//! afterwards, and the node is ready again, powered off.
//!
//! Needs root (CI is root), network access to Debian's archive the first
//! time (the image build), QEMU and OVMF (tests/run.sh installs them).

mod common;

use common::interactive::Running;
use common::lab::Lab;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MGMT: &str = "10.99.0.77";

/// The Debian image, built once per recipe (the script's hash is its key).
fn debian_image() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/debian12.sh");
    let key = Command::new("bash")
        .arg(&script)
        .arg("--cache-key")
        .output()
        .unwrap();
    let key = String::from_utf8_lossy(&key.stdout).trim().to_string();
    assert!(!key.is_empty(), "debian12.sh --cache-key printed nothing");
    let image = PathBuf::from("/var/cache/rackboot/debian")
        .join(&key)
        .join("debian12.qcow2");
    if !image.exists() {
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the Debian image failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "debian.rs: built {} in {:.0} s",
            image.display(),
            started.elapsed().as_secs_f64()
        );
    }
    image
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Runs `cmd` on the installed Debian as root over SSH with `key`, from the
/// lab's namespace; (success, stdout + stderr).
fn ssh(lab: &Lab, key: &Path, cmd: &str) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.netns, "ssh", "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            &format!("root@{MGMT}"),
            cmd,
        ])
        .output()
        .expect("ssh must be installed (tests/run.sh installs openssh-client)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn job_log(lab: &Lab, action: &str, job: &str) -> String {
    lab.ok(json!({"action": "GetLog", "job_action": action, "job_id": job}))
        .to_string()
}

fn wait(lab: &Lab, action: &str, job: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = lab.ok(json!({"action": "GetStatus", "job_action": action, "job_id": job}));
        if s["status"] == "successful" || s["status"] == "failed" {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{action} {job} still running after {secs} s: {s}\nlog: {}",
            job_log(lab, action, job)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_real_debian_is_deployed_logged_into_collected_and_wiped() {
    let image = debian_image();
    let (lab, _) = Lab::up(
        "deb",
        &[
            "--nodes",
            "1",
            "--no-provision",
            "--hardware",
            "firmware=uefi",
            "--boot-timeout",
            "180",
        ],
    );
    // The Debian image joins the catalogue live (SIGHUP); TCG boots take
    // minutes, so the first-boot wait is longer than the lab's default.
    let config = lab.path("rackboot.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("first_boot_timeout = 300", "first_boot_timeout = 1200")
        .replace("deploy_timeout = 300", "deploy_timeout = 600");
    std::fs::write(
        &config,
        format!(
            "{text}[[images]]\nos_version = \"debian-12\"\nfile = \"{}\"\nsha256 = \"{}\"\nfirst_boot_callback = true\n",
            image.display(),
            sha256(&image)
        ),
    )
    .unwrap();
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.path("lab.json")).unwrap()).unwrap();
    let daemon = record["daemon"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_secs(1));

    // The user's key, made with OpenSSH.
    let key = lab.path("id_test");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tester@lab", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let id = lab.ok(json!({
        "action": "RegisterBMNodes", "hostname": "deb01", "os_version": "debian-12", "cpu_arch": "x86_64",
        "boot_mode": "uefi", "ipmi_network_address": "10.99.0.1", "ipmi_port": 6230,
        "ipmi_username": "admin", "ipmi_password": "password", "pxe_network_mac_addr": "52:54:00:99:20:00",
        "mgmt_network_address": MGMT, "mgmt_network_netmask": "255.255.255.0", "mgmt_network_gateway": "10.99.0.1",
    }))["node_ids"][0]
        .as_str()
        .unwrap()
        .to_string();

    // Bad cloud-init input is refused before anything starts.
    let r = lab.api(json!({"action": "ProvisionBMNodes", "node_ids": [id], "ssh_keys": ["ssh-ed25519 not-base64"]}));
    assert_eq!(r["ret_code"], 1100, "{r}");
    assert!(r["message"].as_str().unwrap().contains("ssh_keys"), "{r}");

    let started = Instant::now();
    let job = lab.ok(json!({
        "action": "ProvisionBMNodes", "node_ids": [id], "ssh_keys": [public.trim()],
        "hostname": "debian-installed", "user_data": "#cloud-config\nwrite_files:\n  - path: /etc/rackboot-test\n    content: from user data\n",
    }))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait(&lab, "ProvisionBMNodes", &job, 1800);
    let log = job_log(&lab, "ProvisionBMNodes", &job);
    assert_eq!(
        s["status"],
        "successful",
        "{s}\nlog: {log}\nserial: {}",
        std::fs::read_to_string(lab.path("vm0/serial.log")).unwrap_or_default()
    );
    eprintln!(
        "debian.rs: provisioned in {:.0} s; log: {log}",
        started.elapsed().as_secs_f64()
    );
    assert!(log.contains("cloud-init seed written to"), "{log}");
    // User data is never echoed.
    assert!(!log.contains("from user data"), "{log}");
    let n = lab.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}));
    assert_eq!(n["node_set"][0]["status"], "active", "{n}");
    assert!(!n.to_string().contains("from user data"), "{n}");

    // Logged into from outside with the key given: the host name asked, the
    // management address, the caller's user data applied.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (ok, hostname) = loop {
        let r = ssh(&lab, &key, "hostname");
        if r.0 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    assert!(ok, "ssh: {hostname}");
    assert_eq!(hostname.trim(), "debian-installed");
    let (ok, addr) = ssh(
        &lab,
        &key,
        "ip -4 -o addr show; cat /etc/rackboot-test; cloud-init status",
    );
    assert!(ok, "{addr}");
    assert!(addr.contains(&format!("inet {MGMT}/24")), "{addr}");
    assert!(addr.contains("from user data"), "{addr}");
    assert!(addr.contains("status: done"), "{addr}");

    // Its serial console, as an operator uses it: the login prompt of the
    // installed Debian answers what is typed through `rackboot console`.
    let mut console = Running::start(
        Command::new(common::lab::BIN)
            .arg("--state-dir")
            .arg(lab.path("state"))
            .args(["console", &id]),
    );
    console.wait_for("[rackboot] console of", 20);
    console.type_in(b"\r");
    console.wait_for("debian-installed login:", 60);
    console.type_in(b"root\r");
    console.wait_for("Password:", 30);
    console.type_in(b"\r");
    console.wait_for("Login incorrect", 60);
    console.type_in(b"\r~.");
    assert_eq!(console.exit_within(15), 0, "{}", console.text());
    drop(console);
    // What it printed is in its console log, the provision's boot too.
    let console_log =
        lab.ok(json!({"action": "GetBMNodeConsoleLog", "node_id": id, "limit": 20000}));
    let text = console_log["console_log"].to_string();
    for line in [
        "debian-installed login:",
        "rackboot-agent: image written",
        "Login incorrect",
    ] {
        assert!(
            text.contains(line),
            "the console log lacks `{line}`: {text}"
        );
    }

    // It is a Node of seed §1, and rackboot collects it over SSH with its
    // own key (injected by the deploy).
    let node_id = log
        .split("listed as Node ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .expect("the log names the Node")
        .to_string();
    let collect = lab.ok(json!({"action": "CollectNodes", "node_ids": [node_id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = wait(&lab, "CollectNodes", &collect, 300);
    assert_eq!(
        c["status"],
        "successful",
        "{c}\n{}",
        job_log(&lab, "CollectNodes", &collect)
    );
    let nodes = lab.ok(json!({"action": "DescribeNodes", "node_ids": [node_id]}));
    let text = nodes.to_string();
    assert!(text.contains(MGMT) && text.contains("vda"), "{text}");

    // Unprovision: the disk is wiped, the node ready and off.
    let job = lab.ok(json!({"action": "UnprovisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait(&lab, "UnprovisionBMNodes", &job, 900);
    let log = job_log(&lab, "UnprovisionBMNodes", &job);
    assert_eq!(s["status"], "successful", "{s}\n{log}");
    assert!(log.contains("wiping (metadata)"), "{log}");
    let n = lab.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}));
    assert_eq!(n["node_set"][0]["status"], "ready", "{n}");
    let power = lab.ipmitool(0, &["power", "status"]);
    assert!(power.contains("Power is off"), "{power}");
    let disk = lab.path("vm0/disk1.raw");
    // No partition table is left: no MBR signature or GPT header at the
    // start, no backup GPT header at the end (the first and last MiB are
    // zero, as the metadata wipe promises).
    let head = common::lab::head(&disk, 1 << 20);
    assert!(
        head[510..512] != [0x55, 0xaa] && &head[512..520] != b"EFI PART",
        "the disk still has a partition table"
    );
    assert!(
        head.iter().all(|b| *b == 0),
        "the disk's first MiB is not zero"
    );
    let tail = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&disk).unwrap();
        f.seek(SeekFrom::End(-(1 << 20))).unwrap();
        let mut t = vec![0u8; 1 << 20];
        f.read_exact(&mut t).unwrap();
        t
    };
    assert!(
        tail.iter().all(|b| *b == 0),
        "the disk's last MiB (backup GPT) is not zero"
    );
    let nodes = lab.api(json!({"action": "DescribeNodes", "node_ids": [node_id]}));
    assert!(
        !nodes.to_string().contains(MGMT),
        "the wiped machine is still a Node: {nodes}"
    );
}
