//! The PXE responder's DHCP (full mode) and TFTP against real clients in
//! network namespaces of the test's own (never a real interface): busybox
//! udhcpc with a PXE vendor class gets an address from the range, the
//! next-server and the BIOS boot file, and fetches that file over TFTP with
//! atftp; a registered MAC that is not network-booting gets an address and
//! no boot file; an unknown MAC gets nothing; the address is kept across a
//! renewal and a daemon restart.

mod common;

use common::netns::Netns;
use common::Daemon;
use serde_json::json;
use std::collections::HashMap;
use std::process::Command;

struct Lab {
    srv: Netns,
    cli: Netns,
    files: tempfile::TempDir,
}

fn lab() -> Lab {
    let srv = Netns::new("psrv");
    let cli = Netns::new("pcli");
    // A veth pair between the two namespaces: rb-srv (server) and cli0.
    srv.ip(&[
        "link", "add", "rb-srv", "type", "veth", "peer", "name", "cli0", "netns", &cli.name,
    ]);
    srv.ip(&["addr", "add", "10.99.0.1/24", "dev", "rb-srv"]);
    srv.ip(&["link", "set", "rb-srv", "up"]);
    cli.ip(&["link", "set", "cli0", "address", "52:54:00:99:00:10"]);
    cli.ip(&["link", "set", "cli0", "up"]);
    let files = tempfile::tempdir().unwrap();
    let boot: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(files.path().join("undionly.kpxe"), boot).unwrap();
    Lab { srv, cli, files }
}

fn config(files: &std::path::Path) -> String {
    format!(
        "[dhcp]\ninterface = \"rb-srv\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.199\"\nrouter = \"10.99.0.1\"\n\
         [boot]\nfiles_dir = \"{}\"\n[ipmi]\npower_sync_interval = 0\n",
        files.display()
    )
}

/// Runs udhcpc once in the client namespace; the variables of its `bound`
/// event, or `None` when no server answered.
fn udhcpc(cli: &Netns, vendor_class: Option<&str>) -> Option<HashMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = dir.path().join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", &cli.name, "busybox", "udhcpc", "-i", "cli0", "-n", "-q", "-f", "-t", "3",
        "-T", "1", "-s",
    ])
    .arg(&script);
    if let Some(v) = vendor_class {
        cmd.args(["-V", v]);
    }
    let status = cmd
        .output()
        .expect("busybox must be installed (tests/run.sh installs busybox-static)");
    if !status.status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn dhcp_full_mode_and_tftp_with_real_clients() {
    let lab = lab();
    let mut d = Daemon::start_in_netns(&lab.srv.name, Some(&config(lab.files.path())), |_| {});
    assert!(d.log().contains("PXE services listening"), "{}", d.log());

    // Unknown MAC: nothing, PXE or not.
    assert!(udhcpc(&lab.cli, Some("PXEClient:Arch:00000:UNDI:002001")).is_none());

    d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "pxe01", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:00:10",
    }));
    let pxe = udhcpc(&lab.cli, Some("PXEClient:Arch:00000:UNDI:002001"))
        .expect("a lease for the registered PXE client");
    let ip = pxe["ip"].clone();
    assert!(
        ip.starts_with("10.99.0.1") && ip.len() == "10.99.0.100".len(),
        "{pxe:?}"
    );
    assert_eq!(
        pxe.get("siaddr").map(String::as_str),
        Some("10.99.0.1"),
        "{pxe:?}"
    );
    assert_eq!(
        pxe.get("boot_file").map(String::as_str),
        Some("undionly.kpxe"),
        "{pxe:?}"
    );
    assert_eq!(pxe.get("router").map(String::as_str), Some("10.99.0.1"));

    // The boot file over TFTP, from the client's side of the wire.
    lab.cli
        .ip(&["addr", "add", &format!("{ip}/24"), "dev", "cli0"]);
    let dest = lab.files.path().join("fetched");
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli.name,
            "atftp",
            "--option",
            "blksize 1468",
            "-g",
            "-r",
            "undionly.kpxe",
            "-l",
        ])
        .arg(&dest)
        .args(["10.99.0.1", "69"])
        .status()
        .unwrap()
        .success();
    assert!(
        ok && std::fs::read(&dest).unwrap()
            == std::fs::read(lab.files.path().join("undionly.kpxe")).unwrap()
    );

    // The boot timeline shows the exchange and the file served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let t = d.ok(json!({"action": "DescribeBootEvents", "mac": "52-54-00-99-00-10"}));
        let text = t["event_set"].to_string();
        if text.contains("undionly.kpxe: 100000 bytes") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{t}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        text.contains("DISCOVER") && text.contains("→ OFFER 10.99.0.1") && text.contains("→ ACK"),
        "{text}"
    );
    assert!(text.contains("boot undionly.kpxe"), "{text}");

    // Not network-booting: an address, no boot file; the same address again.
    let plain = udhcpc(&lab.cli, None).expect("a lease without PXE");
    assert_eq!(plain["ip"], ip);
    assert!(
        plain.get("boot_file").is_none_or(|f| f.is_empty()),
        "{plain:?}"
    );

    // Router advertisements: the client learns the server's link-local
    // address as a router's (iPXE stops waiting for IPv6 on the first one).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    loop {
        let out = Command::new("ip")
            .args(["-n", &lab.cli.name, "-6", "neigh", "show", "dev", "cli0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text
            .lines()
            .any(|l| l.starts_with("fe80") && l.contains("router"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no router advertisement reached the client: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }

    // The lease survives a restart of the daemon.
    d.restart();
    let again =
        udhcpc(&lab.cli, Some("PXEClient:Arch:00000:UNDI:002001")).expect("a lease after restart");
    assert_eq!(again["ip"], ip);
}

/// Kills a process we started when the test ends, whatever happens.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn qemus_ipxe_gets_its_script_over_http_and_boots_the_local_disk() {
    let srv = Netns::new("qsrv");
    srv.ip(&["link", "add", "br0", "type", "bridge"]);
    srv.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    srv.ip(&["link", "set", "tap0", "master", "br0"]);
    srv.ip(&["link", "set", "tap0", "up"]);
    srv.ip(&["link", "set", "br0", "up"]);
    srv.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    let files = tempfile::tempdir().unwrap();
    std::fs::write(
        files.path().join("undionly.kpxe"),
        b"not used: QEMU's ROM is iPXE",
    )
    .unwrap();
    let config = config(files.path()).replace("interface = \"rb-srv\"", "interface = \"br0\"");
    let d = Daemon::start_in_netns(&srv.name, Some(&config), |_| {});
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "pxe-vm", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:00:20",
    }));
    let node_id = r["node_ids"][0].as_str().unwrap().to_string();
    let serial = files.path().join("serial.log");
    let _vm = KillOnDrop(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &srv.name,
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-m",
                "128",
                "-nographic",
                "-nodefaults",
            ])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args([
                "-boot",
                "n",
                "-no-reboot",
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no",
            ])
            .args([
                "-device",
                "e1000,netdev=n0,mac=52:54:00:99:00:20,romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "qemu-system-x86_64 must be installed (tests/run.sh installs it and ipxe-qemu)",
            ),
    );
    let wanted = format!("rackboot: {node_id} pxe-vm: booting from the local disk");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains(&wanted) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the VM never ran our script; serial:\n{text}\ndaemon:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = d.log();
    assert!(
        log.contains("dhcp: answered") && log.contains("served the local-disk boot script"),
        "{log}"
    );
}
