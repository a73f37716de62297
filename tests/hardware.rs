//! The hardware matrix: rackboot provisions QEMU VMs (TCG, behind ipmi_sim
//! BMCs, through `rackboot lab up --hardware …`) on every kind of hardware
//! QEMU emulates here, combined so that each NIC, disk controller and
//! firmware is covered at least once (virtio-net + virtio-blk + SeaBIOS is
//! the default lab of tests/lab.rs):
//!
//! | VM | NIC | disks | firmware |
//! |---|---|---|---|
//! | 0 | e1000e | AHCI (SATA), two disks: the OS goes to the second by serial | SeaBIOS |
//! | 1 | vmxnet3 | NVMe | OVMF (UEFI) |
//! | 2 | rtl8139 | LSI MegaRAID SAS (megasas) | SeaBIOS |
//! | 3 | virtio-net | LSI 53C895A (SCSI) | SeaBIOS |
//! | 4 | virtio-net | virtio-scsi | OVMF, Secure Boot enforced (Microsoft keys) |
//!
//! Each VM's deploy ramdisk loads its drivers by modalias, the node's
//! root-device hint (a disk serial) picks the disk, and the test checks
//! from the host that the image landed on that disk (and not the other),
//! and that the VM booted it (the installed test OS calls back). A second
//! lab shows that the Secure Boot VM refuses an unsigned boot program
//! (iPXE) when the signed chain is off.

mod common;

use common::lab::{head, holds_image, Lab};
use serde_json::json;
use std::time::{Duration, Instant};

const MATRIX: [&str; 5] = [
    "nic=e1000e,disk=ahci,firmware=bios,disks=2",
    "nic=vmxnet3,disk=nvme,firmware=uefi",
    "nic=rtl8139,disk=megasas,firmware=bios",
    "nic=virtio,disk=lsi,firmware=bios",
    "nic=virtio,disk=virtio-scsi,firmware=secureboot",
];

#[test]
fn every_nic_disk_controller_and_firmware_provisions_and_boots_the_image() {
    let mut args = vec!["--nodes", "5", "--boot-timeout", "240"];
    for h in MATRIX {
        args.extend(["--hardware", h]);
    }
    let (lab, out) = Lab::up("hw", &args);
    assert!(out.contains("all nodes active"), "{out}");
    // The installed OS booted on every VM (its first-boot callback).
    assert_eq!(out.matches("callback booted").count(), 5, "{out}");
    let image = lab.path("tiny.raw");
    for (vm, disk) in [(0, 2), (1, 1), (2, 1), (3, 1), (4, 1)] {
        assert!(
            holds_image(&lab.path(&format!("vm{vm}/disk{disk}.raw")), &image),
            "vm{vm} ({}): disk{disk} does not hold the image",
            MATRIX[vm]
        );
    }
    // VM 0's first disk (the kernel's sda) was left alone.
    assert!(
        head(&lab.path("vm0/disk1.raw"), 1 << 20)
            .iter()
            .all(|b| *b == 0),
        "the hint chose the second disk, yet the first was written"
    );
    let log = out.replace('\n', " ");
    // Each VM's ramdisk found its disk through the driver its controller
    // needs; the hint, not the kernel's name, chose it (VM 0's two SATA
    // disks are named in whatever order the kernel probed them).
    for (vm, disk) in [
        (0, "sd"),
        (1, "nvme0n1"),
        (2, "sda"),
        (3, "sda"),
        (4, "sda"),
    ] {
        let serial = if vm == 0 {
            "RB-LAB00-D2".to_string()
        } else {
            format!("RB-LAB{vm:02}-D1")
        };
        let line = log
            .split(&format!("(lab{vm:02}): step3: writing to "))
            .nth(1)
            .unwrap_or("");
        let line = &line[..line.find(')').map_or(line.len(), |i| i + 1)];
        assert!(
            line.starts_with(disk)
                && line.ends_with(&format!("(root_device hints serial={serial})")),
            "vm{vm}: {out}"
        );
    }
    assert!(log.contains("booted uefi with Secure Boot"), "{out}");
    let nodes = lab.ok(json!({"action": "DescribeBMNodes"}));
    for n in nodes["node_set"].as_array().unwrap() {
        assert_eq!(n["status"], "active", "{n}");
        let sb = n["general"]["hostname"] == "lab04";
        assert_eq!(n["secure_boot"], u8::from(sb), "{n}");
        let uefi = ["lab01", "lab04"].contains(&n["general"]["hostname"].as_str().unwrap());
        assert_eq!(n["boot_mode"], if uefi { "uefi" } else { "bios" }, "{n}");
    }
    // The Secure Boot VM went shim → signed GRUB → signed kernel over TFTP.
    for step in [
        "boot shimx64.efi",
        "tftp     shimx64.efi: 1048504 bytes",
        "tftp     grubx64.efi: ",
        "grub.cfg-01-52:54:00:99:20:04: ",
        "tftp     /deploy/kernel: ",
    ] {
        assert!(out.contains(step), "the timeline lacks {step}:\n{out}");
    }
    // Its serial console shows the kernel in Secure Boot lockdown.
    let serial =
        String::from_utf8_lossy(&std::fs::read(lab.path("vm4/serial.log")).unwrap()).into_owned();
    assert!(
        serial.contains("Secure boot enabled"),
        "vm4's console:\n{serial}"
    );
}

#[test]
fn a_secure_boot_machine_refuses_an_unsigned_boot_program() {
    let (lab, _) = Lab::up(
        "sb",
        &[
            "--nodes",
            "1",
            "--no-provision",
            "--boot-timeout",
            "60",
            "--secure-boot-chain",
            "off",
            "--hardware",
            "nic=virtio,disk=virtio-blk,firmware=secureboot",
        ],
    );
    let id = lab.ok(json!({
        "action": "RegisterBMNodes", "hostname": "sb00", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "10.99.0.1", "ipmi_port": 6230, "ipmi_username": "admin",
        "ipmi_password": "password", "pxe_network_mac_addr": "52:54:00:99:20:00",
    }))["node_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let job = lab.ok(json!({"action": "ProvisionBMNodes", "node_ids": [id]}))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The firmware fetches iPXE (unsigned) and refuses to run it: no script
    // is ever asked for, and step2 times out.
    let deadline = Instant::now() + Duration::from_secs(120);
    let timeline = loop {
        let t =
            lab.ok(json!({"action": "DescribeBootEvents", "node_id": id}))["event_set"].to_string();
        if t.contains("ipxe.efi: ") || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(timeline.contains("boot ipxe.efi"), "{timeline}");
    assert!(timeline.contains("ipxe.efi: "), "{timeline}");
    let s = lab.wait_job(&job, 180);
    assert_eq!(s["node_progress"][&id]["ret_code"], 3710, "{s}");
    assert!(
        s["node_progress"][&id]["message"]
            .as_str()
            .unwrap()
            .contains("Likely cause: the node fetched its boot loader (ipxe.efi: "),
        "{s}"
    );
    let timeline =
        lab.ok(json!({"action": "DescribeBootEvents", "node_id": id}))["event_set"].to_string();
    assert!(
        !timeline.contains("boot script"),
        "iPXE must not have run: {timeline}"
    );
    let serial =
        String::from_utf8_lossy(&std::fs::read(lab.path("vm0/serial.log")).unwrap()).into_owned();
    assert!(
        serial.contains("Access Denied") || serial.contains("Security Violation"),
        "the firmware should say it refused the unsigned image:\n{serial}"
    );
}
