//! Zero-touch intake with real parts: three lab VMs (QEMU, TCG) behind
//! ipmi_sim BMCs whose FRU product serial is the VM's SMBIOS system serial
//! and whose LAN configuration reports their own MAC. VM 0 has an in-band
//! IPMI interface (QEMU's isa-ipmi-kcs + ipmi-bmc-extern to its ipmi_sim);
//! VM 2's system serial is another than its FRU's, so only the one-at-a-
//! time path can join it. The BMCs are found by ScanBMNodes (no MAC typed
//! anywhere), then one scan with `intake: 1` powers them into the
//! discovery ramdisk, joins each machine to its BMC (by the BMC address
//! read in-band, by serial, by order), and leaves them `ready`, off, with
//! the right PXE MACs and their inventory; then they provision. Needs root
//! (CI is root).

mod common;

use common::lab::Lab;
use serde_json::{json, Value};
use std::time::Instant;

/// The job's final GetStatus.
fn wait(lab: &Lab, job: &str, secs: u64) -> Value {
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let s = lab.ok(json!({"action": "GetStatus", "job_id": job}));
        if s["status"] == "successful" || s["status"] == "failed" {
            return s;
        }
        assert!(Instant::now() < deadline, "job {job} still running: {s}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn three_bmcs_without_a_mac_are_joined_to_their_machines_and_provision() {
    let (lab, _) = Lab::up(
        "int",
        &[
            "--nodes",
            "3",
            "--no-provision",
            "--hardware",
            "bmc=inband",
            "--hardware",
            "bmc=lan",
            "--hardware",
            "bmc=lan",
        ],
    );
    // VM 2's system serial is not its BMC's FRU serial.
    let env = lab.path("vm2/vm.env");
    let text = std::fs::read_to_string(&env).unwrap();
    std::fs::write(
        &env,
        text.replace("SYSSERIAL=RB-LAB02-SYS", "SYSSERIAL=OTHER-0002"),
    )
    .unwrap();

    // The BMCs, found by scans (the lab's share one address, one port each).
    for i in 0..3 {
        let job = lab.ok(json!({
            "action": "ScanBMNodes", "ip_start": "10.99.0.1", "ip_end": "10.99.0.1", "ipmi_port": 6230 + i,
            "ipmi_username": "admin", "ipmi_password": "password", "protocols": ["ipmi"],
        }))["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        let s = wait(&lab, &job, 60);
        assert_eq!(s["status"], "successful", "{s}");
    }
    let nodes = lab.ok(json!({"action": "DescribeBMNodes"}));
    let set = nodes["node_set"].as_array().unwrap().clone();
    assert_eq!(set.len(), 3, "{nodes}");
    let mut by_port = std::collections::HashMap::new();
    for n in &set {
        assert_eq!(n["pxe"]["pxe_network_mac_addr"], "", "{n}");
        let port = n["ipmi"]["ipmi_port"].as_i64().unwrap();
        // The FRU serial was read by the scan.
        assert_eq!(
            n["general"]["serial_number"],
            format!("RB-LAB{:02}-SYS", port - 6230),
            "{n}"
        );
        by_port.insert(port, n["node_id"].as_str().unwrap().to_string());
    }
    let ids: Vec<String> = (6230..6233).map(|p| by_port[&p].clone()).collect();

    // One intake for the three.
    let started = Instant::now();
    let job = lab.ok(json!({"action": "ScanBMNodes", "node_ids": ids, "intake": 1}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait(&lab, &job, 900);
    let log = lab.ok(json!({"action": "GetScanBMNodesLog", "job_id": job}))["log"].to_string();
    assert_eq!(s["status"], "successful", "{s}\n{log}");
    eprintln!(
        "intake.rs: intake of 3 machines in {:.0} s; log: {log}",
        started.elapsed().as_secs_f64()
    );
    for (i, id) in ids.iter().enumerate() {
        let mac = format!("52:54:00:99:20:{i:02x}");
        let how = match i {
            0 => "by BMC address (the BMC it reads in-band has LAN MAC 02:00:00:99:01:00)"
                .to_string(),
            1 => format!("by serial RB-LAB{i:02}-SYS"),
            _ => "by order".to_string(),
        };
        let line = format!(
            "joined {id} (bmc-10-99-0-1-{}) to the machine with PXE MAC {mac} {how}",
            6230 + i
        );
        assert!(log.contains(&line), "no `{line}` in: {log}");
        let n = &lab.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}))["node_set"][0];
        assert_eq!(n["pxe"]["pxe_network_mac_addr"], mac.as_str(), "{n}");
        assert_eq!(n["status"], "ready", "{n}");
        assert_eq!(n["power_state"], "off", "{n}");
        // The firmware booted the ramdisk as BIOS: that is its boot mode now.
        assert_eq!(n["boot_mode"], "bios", "{n}");
    }
    for i in 0..3 {
        assert!(!lab.vm_running(i), "vm{i} was left on");
        // The inventory the discovery ramdisk sent is kept.
        let data = lab.ok(json!({"action": "GetIntrospectionData", "node_id": ids[i as usize]}));
        assert!(
            data.to_string()
                .contains(&format!("52:54:00:99:20:{i:02x}")),
            "{data}"
        );
    }

    // A second intake finds nothing to do.
    let again = lab.ok(json!({"action": "ScanBMNodes", "node_ids": ids, "intake": 1}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait(&lab, &again, 120)["status"], "successful");
    let log = lab.ok(json!({"action": "GetScanBMNodesLog", "job_id": again}))["log"].to_string();
    assert!(log.contains("every BMC found has its PXE MAC"), "{log}");

    // No MAC was typed, and they provision.
    for id in &ids {
        lab.ok(
            json!({"action": "ModifyBMNodeAttributes", "node_id": id, "os_version": "tiny-1.0"}),
        );
    }
    let job = lab.ok(json!({"action": "ProvisionBMNodes", "node_ids": ids}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait(&lab, &job, 900);
    assert_eq!(
        s["status"],
        "successful",
        "{s}\n{}",
        lab.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": job}))["log"]
    );
}
