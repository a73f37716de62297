//! The built-in lab, end to end with real parts: `rackboot lab up` (README's
//! main command) creates a namespace with a bridge, QEMU VMs (TCG) behind
//! ipmi_sim BMCs, builds the deploy ramdisk from Debian's kernel package and
//! provisions the VMs; the test then checks from the host what a user would:
//! the VMs' disks hold the image, their BMCs say boot from disk, progress
//! went from 0 % to 100 %. A second lab drives failures through the API
//! with real VMs: a wrong PXE MAC (step2 timeout), a checksum mismatch
//! (step3, powered off), an abort mid-deploy, and an inspection that
//! reports the VM's real hardware.

mod common;

use common::lab::{holds_image, Lab, BIN};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn lab_up_provisions_two_vms_from_new_to_active() {
    let (lab, out) = Lab::up("a", &["--nodes", "2"]);
    assert!(out.contains("all nodes active"), "{out}");
    assert!(
        out.contains("lab: time per step") && out.contains("step3 "),
        "{out}"
    );
    // The boot timeline shows each step of the BIOS iPXE boot: DHCP, the
    // script, the kernel and initrd it names, the image, the callbacks.
    for step in [
        "→ ACK 10.99.0.10",
        "deploy boot script",
        "GET /deploy/kernel: ",
        "GET /deploy/initrd: ",
        "callback inventory",
        "callback progress",
    ] {
        assert!(out.contains(step), "the timeline lacks {step}:\n{out}");
    }
    assert!(
        out.contains("step0 0%") && out.contains("successful 100%"),
        "progress 0 → 100 %:\n{out}"
    );
    assert!(
        out.contains("step3") && out.contains("callback done"),
        "{out}"
    );
    // The installed test OS booted from disk and called back (step5).
    assert!(
        out.contains("step5: waiting for the installed OS") && out.contains("callback booted"),
        "{out}"
    );
    for vm in 0..2 {
        assert!(
            holds_image(
                &lab.path(&format!("vm{vm}/disk1.raw")),
                &lab.path("tiny.raw")
            ),
            "vm{vm}'s disk does not hold the image"
        );
        let boot = lab.ipmitool(vm, &["chassis", "bootparam", "get", "5"]);
        assert!(
            boot.contains("Force Boot from default Hard-Drive"),
            "{boot}"
        );
        assert!(lab
            .ipmitool(vm, &["chassis", "power", "status"])
            .contains("on"));
    }
    let nodes = lab.ok(json!({"action": "DescribeBMNodes"}));
    for n in nodes["node_set"].as_array().unwrap() {
        assert_eq!(n["status"], "active", "{n}");
    }
    // The installed VMs are Nodes with their real hardware, linked.
    let listed = lab.ok(json!({"action": "DescribeNodes"}));
    let set = listed["node_set"].as_array().unwrap();
    assert_eq!(set.len(), 2, "{listed}");
    for n in set {
        assert!(n["bm_node_id"].as_str().unwrap().starts_with("n-"), "{n}");
        assert_eq!(n["cpu"]["cpu_processors"], 1, "{n}");
        assert!(
            n["address"].as_str().unwrap().starts_with("10.99.0.1"),
            "{n}"
        );
    }
    // `lab down` removes what `up` made.
    let pid_file = lab.path("vm0/vm.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let down = Command::new(BIN)
        .args(["lab", "down", "--dir"])
        .arg(lab.dir.path())
        .output()
        .unwrap();
    assert!(down.status.success());
    assert!(!Path::new("/run/netns").join(&lab.netns).exists());
    let gone = || {
        // Gone, or a zombie waiting for its reaper.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone() {
        assert!(Instant::now() < deadline, "the VM still runs");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_vms_fail_at_the_right_step_and_report_their_hardware() {
    let (lab, _) = Lab::up(
        "b",
        &["--nodes", "2", "--no-provision", "--boot-timeout", "25"],
    );
    // A second image whose checksum is wrong, added live (SIGHUP).
    let config = lab.path("rackboot.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = text
        .lines()
        .find(|l| l.starts_with("file = "))
        .unwrap()
        .to_string();
    // And the same OS as a qcow2 of 2 GiB virtual size (data: the test OS
    // at its start, and a block near its end), as cloud images come.
    let qcow2 = lab.path("tiny.qcow2");
    let sh = |cmd: String| {
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(format!(
        "cp --sparse=always {raw} {q}.raw && truncate -s 2G {q}.raw && \
         seq -f 'tail %.0f' 1 200000 | dd of={q}.raw bs=1M seek=2000 conv=notrunc status=none && \
         qemu-img convert -O qcow2 {q}.raw {q} && qemu-img convert -O raw {q} {q}.expected && rm {q}.raw",
        raw = lab.path("tiny.raw").display(),
        q = qcow2.display()
    ));
    let q_sum = String::from_utf8_lossy(
        &Command::new("sha256sum")
            .arg(&qcow2)
            .output()
            .unwrap()
            .stdout,
    )
    .split_whitespace()
    .next()
    .unwrap()
    .to_string();
    std::fs::write(
        &config,
        format!(
            "{text}[[images]]\nos_version = \"tiny-badsum\"\n{bad}\nsha256 = \"{}\"\n\
             [[images]]\nos_version = \"tiny-qcow2\"\nfile = \"{}\"\nsha256 = \"{q_sum}\"\n",
            "ab".repeat(32),
            qcow2.display()
        ),
    )
    .unwrap();
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.path("lab.json")).unwrap()).unwrap();
    let daemon = record["daemon"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_secs(1));

    let register = |i: u32, os: &str, mac: &str| -> String {
        let r = lab.ok(json!({
            "action": "RegisterBMNodes", "hostname": format!("vm{i}"), "os_version": os, "cpu_arch": "x86_64",
            "os_disk_name": "vda", "boot_mode": "bios", "ipmi_network_address": "10.99.0.1", "ipmi_port": 6230 + i,
            "ipmi_username": "admin", "ipmi_password": "password", "pxe_network_mac_addr": mac,
        }));
        r["node_ids"][0].as_str().unwrap().to_string()
    };
    let badsum = register(0, "tiny-badsum", "52:54:00:99:20:00");
    let wrong_mac = register(1, "tiny-1.0", "52:54:00:99:20:99");
    let job = lab.ok(json!({"action": "ProvisionBMNodes", "node_ids": [badsum, wrong_mac]}))
        ["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = lab.wait_job(&job, 120);
    assert_eq!(s["status"], "failed");
    let np = &s["node_progress"];
    // A wrong checksum is found on the deploy host, before the node boots.
    assert_eq!(np[&badsum]["ret_code"], 3700, "{s}");
    assert!(
        np[&badsum]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be prepared: sha256 mismatch"),
        "{s}"
    );
    assert_eq!(np[&wrong_mac]["ret_code"], 3710, "{s}");
    assert!(
        np[&wrong_mac]["message"]
            .as_str()
            .unwrap()
            .contains("within 25 s"),
        "{s}"
    );
    // vm1 network-booted with its real MAC: the diagnosis names it.
    assert!(
        np[&wrong_mac]["message"].as_str().unwrap().contains(
            "meanwhile PXE firmware of unregistered MAC(s) 52:54:00:99:20:01 asked: is one of them this node's PXE MAC?"
        ),
        "{s}"
    );
    // And its message ends with what its console said: iPXE found nothing
    // to boot (no DHCP answer), then the BIOS tried the disk.
    let message = np[&wrong_mac]["message"].as_str().unwrap();
    let console = message
        .split("Last console lines: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no console lines in: {message}"));
    assert!(
        console.contains("Nothing to boot") && console.contains("Boot failed"),
        "{message}"
    );
    let log = lab.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job}))["log"].to_string();
    assert!(
        log.contains(&format!("{badsum} (vm0): failed at step0"))
            && log.contains(&format!("{wrong_mac} (vm1): failed at step2")),
        "{log}"
    );
    assert!(
        !lab.vm_running(0) && !lab.vm_running(1),
        "failed nodes are powered off"
    );

    // The MAC fixed, the VM inspected: its real hardware comes back.
    lab.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": wrong_mac, "pxe_network_mac_addr": "52:54:00:99:20:01"}));
    let job = lab.ok(json!({"action": "IntrospectBMNodes", "node_ids": [wrong_mac]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = lab
            .ok(json!({"action": "GetStatus", "job_action": "IntrospectBMNodes", "job_id": job}));
        if s["status"] == "successful" {
            break;
        }
        assert!(s["status"] != "failed" && Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let data = lab.ok(json!({"action": "GetIntrospectionData", "node_id": wrong_mac}));
    let p = &data["processed"];
    assert_eq!(p["cpu_count"], 1, "{data}");
    assert!(p["memory_mib"].as_u64().unwrap() > 150, "{data}");
    assert_eq!(p["disks"][0]["name"], "vda", "{data}");
    assert_eq!(p["disks"][0]["size_bytes"], 4u64 << 30, "{data}");
    assert_eq!(p["disks"][0]["serial"], "RB-LAB01-D1", "{data}");
    assert_eq!(p["boot_mode"], "bios", "{data}");
    assert!(
        data["data"]["nics"]
            .to_string()
            .contains("52:54:00:99:20:01"),
        "{data}"
    );
    assert_eq!(p["vendor"], "QEMU", "{data}");

    // The inspected VM provisioned from the qcow2 image. Its disk held old
    // data where the image has holes: afterwards the disk's first 2 GiB
    // are exactly what `qemu-img convert -O raw` makes of the image, and
    // only the image's data crossed the wire.
    sh(format!(
        "seq -f 'old %.0f' 1 300000 | dd of={d} bs=1M seek=1000 conv=notrunc status=none",
        d = lab.path("vm1/disk1.raw").display()
    ));
    lab.ok(
        json!({"action": "ModifyBMNodeAttributes", "node_id": wrong_mac, "os_version": "tiny-qcow2"}),
    );
    let job = lab.ok(json!({"action": "ProvisionBMNodes", "node_ids": [wrong_mac]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = lab.wait_job(&job, 180);
    assert_eq!(s["status"], "successful", "{s}");
    let log = lab.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job}))["log"].to_string();
    assert!(
        log.contains("step0: image: converting qcow2 to raw"),
        "{log}"
    );
    assert!(
        log.contains("image ready: qcow2 source, 2048 MiB on disk"),
        "{log}"
    );
    // The test OS (about 45 MiB) and the 1 MiB block at its end: what
    // crossed the wire, out of 2 GiB.
    let data_mib: u64 = log
        .split("MiB of data of a 2048 MiB image")
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(data_mib < 80, "{data_mib} MiB crossed the wire: {log}");
    let expected = lab.path("tiny.qcow2.expected");
    let mut disk = std::fs::File::open(lab.path("vm1/disk1.raw")).unwrap();
    let mut want = std::fs::File::open(&expected).unwrap();
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for mib in 0..2048u64 {
        std::io::Read::read_exact(&mut disk, &mut a).unwrap();
        std::io::Read::read_exact(&mut want, &mut b).unwrap();
        // Sector 1 holds the first-boot note of images that ask for it.
        assert!(
            a == b || (mib == 0 && a[1024..] == b[1024..]),
            "vm1's disk differs from qemu-img convert's output in MiB {mib}"
        );
    }

    // An abort mid-deploy powers the VM off.
    lab.ok(
        json!({"action": "ModifyBMNodeAttributes", "node_id": badsum, "os_version": "tiny-1.0"}),
    );
    let job = lab.ok(json!({"action": "ProvisionBMNodes", "node_ids": [badsum]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = lab.ok(json!({"action": "GetProvisionBMNodesStatus", "job_id": job}));
        if s["node_progress"][&badsum]["status"] == "step2"
            || s["node_progress"][&badsum]["status"] == "step3"
        {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.ok(json!({"action": "AbortProvisionBMNodes", "node_ids": [badsum]}));
    let s = lab.wait_job(&job, 30);
    assert_eq!(s["node_progress"][&badsum]["ret_code"], 3740, "{s}");
    let n = lab.ok(json!({"action": "DescribeBMNodes", "node_ids": [badsum]}));
    assert_eq!(n["node_set"][0]["status"], "provision_failed");
    assert!(!lab.vm_running(0), "aborted node is powered off");
}
