//! The PXE responder's DHCP (full mode) and TFTP against real clients in
//! network namespaces of the test's own (never a real interface): busybox
//! udhcpc with a PXE vendor class gets an address from the range, the
//! next-server and the BIOS boot file, and fetches that file over TFTP with
//! atftp; a registered MAC that is not network-booting gets an address and
//! no boot file; an unknown MAC gets nothing; the address is kept across a
//! renewal and a daemon restart. ISC dhclient gets the same. In proxy mode,
//! beside dnsmasq as the network's ordinary DHCP server, QEMU's iPXE gets
//! its address from dnsmasq and its boot script from rackboot. Beside a
//! competing dnsmasq in full mode, a registered node's client that takes
//! dnsmasq's offer is named by the boot diagnosis (offer_not_taken).

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
        // The DHCP thread's lines reach the store after its answers (a
        // batching writer): wait for them too, not only the TFTP one.
        if text.contains("undionly.kpxe: 100000 bytes")
            && text.contains("→ ACK")
            && text.contains("boot undionly.kpxe")
        {
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

/// A QEMU VM (TCG) in `srv`'s tap0 that network-boots with Debian's iPXE
/// ROM, its serial console in `serial`.
fn ipxe_vm(srv: &Netns, serial: &std::path::Path, mac: &str) -> KillOnDrop {
    KillOnDrop(
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
            ])
            .args(["-nographic", "-nodefaults", "-boot", "n", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args([
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no",
                "-device",
            ])
            .arg(format!(
                "e1000,netdev=n0,mac={mac},romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom"
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "qemu-system-x86_64 must be installed (tests/run.sh installs it and ipxe-qemu)",
            ),
    )
}

/// Waits (90 s at most) until the VM's serial console shows `wanted`.
fn wait_serial(serial: &std::path::Path, wanted: &str, d: &Daemon) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(serial).unwrap_or_default();
        if text.contains(wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the VM never ran our script; serial:\n{text}\ndaemon:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Kills a process we started when the test ends, whatever happens.
/// A bridge `br0` (10.99.0.1) in a new `srv` namespace, with veths into
/// a `dh` namespace (dh0, 10.99.0.2, MAC `dh_mac`) and a `cli` one (cli0,
/// MAC `cli_mac`): (srv, dh, cli).
fn bridged(tag: &str, dh_mac: &str, cli_mac: &str) -> (Netns, Netns, Netns) {
    let srv = Netns::new(&format!("{tag}srv"));
    let dh = Netns::new(&format!("{tag}dh"));
    let cli = Netns::new(&format!("{tag}cli"));
    srv.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
    srv.ip(&["link", "set", "br0", "up"]);
    srv.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    for (ns, here, there, mac) in [
        (&dh, "v-dh", "dh0", dh_mac),
        (&cli, "v-cli", "cli0", cli_mac),
    ] {
        srv.ip(&[
            "link", "add", here, "type", "veth", "peer", "name", there, "netns", &ns.name,
        ]);
        srv.ip(&["link", "set", here, "master", "br0"]);
        srv.ip(&["link", "set", here, "up"]);
        ns.ip(&["link", "set", there, "address", mac]);
        ns.ip(&["link", "set", there, "up"]);
    }
    dh.ip(&["addr", "add", "10.99.0.2/24", "dev", "dh0"]);
    (srv, dh, cli)
}

/// dnsmasq as a full DHCP server on `dh`'s dh0 (10.99.0.150–159), its
/// files in `files`.
fn dnsmasq(dh: &Netns, files: &std::path::Path) -> KillOnDrop {
    KillOnDrop(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &dh.name,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=dh0",
                "--bind-interfaces",
                "--user=root",
                "--dhcp-range=10.99.0.150,10.99.0.159,255.255.255.0,1h",
                "--no-ping",
            ])
            .arg(format!(
                "--dhcp-leasefile={}",
                files.join("dnsmasq.leases").display()
            ))
            .arg(format!(
                "--pid-file={}",
                files.join("dnsmasq.pid").display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed (tests/run.sh installs dnsmasq-base)"),
    )
}

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
    let _vm = ipxe_vm(&srv, &serial, "52:54:00:99:00:20");
    let wanted = format!("rackboot: {node_id} pxe-vm: booting from the local disk");
    wait_serial(&serial, &wanted, &d);
    let log = d.log();
    assert!(
        log.contains("dhcp: answered")
            && log.contains("served the boot script")
            && log.contains("mode=Local"),
        "{log}"
    );
}

/// Runs ISC dhclient once in the client namespace (config `conf`); the
/// variables of its BOUND event.
fn dhclient(cli: &Netns, conf: &str) -> HashMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = dir.path().join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$reason\" = BOUND ] && env > {}.tmp && mv {0}.tmp {0}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("dhclient.conf"), conf).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &cli.name, "dhclient", "-d", "-1", "-cf"])
        .arg(dir.path().join("dhclient.conf"))
        .arg("-lf")
        .arg(dir.path().join("leases"))
        .arg("-pf")
        .arg(dir.path().join("pid"))
        .arg("-sf")
        .arg(&script)
        .arg("cli0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dhclient must be installed (tests/run.sh installs isc-dhcp-client)");
    let _client = KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !out.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "dhclient got no lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

#[test]
fn isc_dhclient_gets_address_next_server_and_boot_file() {
    let lab = lab();
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config(lab.files.path())), |_| {});
    d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "pxe02", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:00:10",
    }));
    let env = dhclient(
        &lab.cli,
        "option pxe-arch code 93 = unsigned integer 16;\n\
         send vendor-class-identifier \"PXEClient:Arch:00007:UNDI:003016\";\n\
         send pxe-arch 7;\n\
         request subnet-mask, routers;\n",
    );
    assert!(
        env.get("new_ip_address")
            .is_some_and(|ip| ip.starts_with("10.99.0.1") && ip.len() == 11),
        "{env:?}"
    );
    assert_eq!(
        env.get("new_next_server").map(String::as_str),
        Some("10.99.0.1"),
        "{env:?}"
    );
    assert_eq!(
        env.get("new_filename").map(String::as_str),
        Some("ipxe.efi"),
        "{env:?}"
    );
    assert_eq!(
        env.get("new_routers").map(String::as_str),
        Some("10.99.0.1"),
        "{env:?}"
    );
    assert_eq!(
        env.get("new_dhcp_server_identifier").map(String::as_str),
        Some("10.99.0.1"),
        "{env:?}"
    );
    assert_eq!(
        env.get("new_dhcp_lease_time").map(String::as_str),
        Some("3600"),
        "{env:?}"
    );
}

#[test]
fn proxy_mode_beside_dnsmasq_boots_qemus_ipxe() {
    // srv: rackboot on br0 (10.99.0.1), the VM's tap on br0; dh: dnsmasq,
    // the network's ordinary DHCP server (10.99.0.2), on a veth into br0;
    // cli: a plain DHCP client on another veth into br0.
    let (srv, dh, cli) = bridged("x", "52:54:00:99:01:02", "52:54:00:99:01:03");
    srv.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    srv.ip(&["link", "set", "tap0", "master", "br0"]);
    srv.ip(&["link", "set", "tap0", "up"]);

    let files = tempfile::tempdir().unwrap();
    let dnsmasq = dnsmasq(&dh, files.path());
    std::fs::write(
        files.path().join("undionly.kpxe"),
        b"not used: QEMU's ROM is iPXE",
    )
    .unwrap();
    let config = format!(
        "[dhcp]\ninterface = \"br0\"\nmode = \"proxy\"\n[boot]\nfiles_dir = \"{}\"\n",
        files.path().display()
    );
    let d = Daemon::start_in_netns(&srv.name, Some(&config), |_| {});
    assert!(d.log().contains("ProxyDHCP on 67 and 4011"), "{}", d.log());
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "proxy-vm", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:01:20",
    }));
    let node_id = r["node_ids"][0].as_str().unwrap().to_string();
    // A registered MAC that is not network-booting: its address comes from
    // dnsmasq, and rackboot says nothing to it.
    d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "proxy-plain", "os_version": "tiny-1.0", "cpu_arch": "x86_64", "ipmi_port": 624,
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:01:03",
    }));
    let plain = udhcpc(&cli, None).expect("dnsmasq answers a plain client");
    assert_eq!(
        plain.get("serverid").map(String::as_str),
        Some("10.99.0.2"),
        "{plain:?}"
    );
    assert!(
        plain.get("boot_file").is_none_or(|f| f.is_empty()),
        "{plain:?}"
    );

    let serial = files.path().join("serial.log");
    let _vm = ipxe_vm(&srv, &serial, "52:54:00:99:01:20");
    let wanted = format!("rackboot: {node_id} proxy-vm: booting from the local disk");
    wait_serial(&serial, &wanted, &d);
    // Its address is dnsmasq's; rackboot's timeline shows the ProxyDHCP
    // OFFER without an address and the 4011 exchange.
    let leases = std::fs::read_to_string(files.path().join("dnsmasq.leases")).unwrap();
    assert!(leases.contains("52:54:00:99:01:20 10.99.0.15"), "{leases}");
    let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": node_id}));
    let text = t["event_set"].to_string();
    assert!(text.contains("→ OFFER (proxy, no address)"), "{text}");
    // (iPXE boots the file named in the ProxyDHCP OFFER itself; it does
    // not ask port 4011, which the unit tests cover.)
    assert!(
        text.contains("\"http\"") && text.contains(".ipxe: local-disk boot script"),
        "{text}"
    );
    assert!(
        text.contains(&format!("boot http://10.99.0.1:8080/boot/{node_id}.ipxe")),
        "{text}"
    );
    let plain_events = d.ok(json!({"action": "DescribeBootEvents", "mac": "52:54:00:99:01:03"}));
    assert!(
        !plain_events["event_set"].to_string().contains("→"),
        "{plain_events}"
    );
    drop(dnsmasq);
}

/// A UEFI VM (OVMF, its own PXE stack: the NIC's iPXE ROM turned off, so
/// a UEFI PXE client, arch 7) on a bridge in namespace `ns`, and rackboot
/// serving `files` there with `boot_extra` added to `[boot]`. Returns the
/// daemon, the node id, the serial log and the VM.
fn ovmf_netboot(
    ns: &str,
    files: &std::path::Path,
    boot_extra: &str,
    hostname: &str,
    mac: &str,
) -> (Netns, Daemon, String, std::path::PathBuf, KillOnDrop) {
    ovmf_netboot_with(ns, files, boot_extra, "", hostname, mac, |_, _, _| {})
}

/// [`ovmf_netboot`] with `config_tail` appended to the config, and
/// `before_vm(namespace, daemon, node_id)` run before the VM starts.
fn ovmf_netboot_with(
    ns: &str,
    files: &std::path::Path,
    boot_extra: &str,
    config_tail: &str,
    hostname: &str,
    mac: &str,
    before_vm: impl FnOnce(&Netns, &Daemon, &str),
) -> (Netns, Daemon, String, std::path::PathBuf, KillOnDrop) {
    let srv = Netns::new(ns);
    srv.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
    srv.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    srv.ip(&["link", "set", "tap0", "master", "br0"]);
    srv.ip(&["link", "set", "tap0", "up"]);
    srv.ip(&["link", "set", "br0", "up"]);
    srv.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    let vars = files.join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars)
        .expect("OVMF must be installed (tests/run.sh installs ovmf)");
    let config = config(files)
        .replace("interface = \"rb-srv\"", "interface = \"br0\"")
        .replace("[boot]\n", &format!("[boot]\n{boot_extra}"))
        + config_tail;
    let d = Daemon::start_in_netns(&srv.name, Some(&config), |_| {});
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": hostname, "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "os_disk_name": "vda", "ipmi_network_address": "127.0.0.1", "ipmi_port": GRUB_BMC_PORT,
        "ipmi_username": "admin", "ipmi_password": "password", "pxe_network_mac_addr": mac,
    }));
    let node_id = r["node_ids"][0].as_str().unwrap().to_string();
    before_vm(&srv, &d, &node_id);
    let serial = files.join("serial.log");
    let vm = KillOnDrop(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &srv.name,
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-m",
                "256",
                "-machine",
                "q35",
                "-nographic",
                "-nodefaults",
            ])
            .args([
                "-drive",
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
            ])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args([
                "-no-reboot",
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no",
            ])
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={mac},romfile="))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 must be installed"),
    );
    (srv, d, node_id, serial, vm)
}

/// Polls `node_id`'s boot timeline until `done` holds (150 s at most: TCG).
fn wait_timeline(
    d: &Daemon,
    node_id: &str,
    serial: &std::path::Path,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    loop {
        let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": node_id}));
        let text = t["event_set"].to_string();
        if done(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}; timeline: {text}\nserial:\n{}",
            std::fs::read_to_string(serial).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn uefi_ovmf_fetches_ipxe_efi_over_tftp() {
    // OVMF must be given ipxe.efi, fetch it over TFTP, and then iPXE asks
    // again and gets its script.
    let files = tempfile::tempdir().unwrap();
    let ipxe_efi = std::fs::read("/usr/lib/ipxe/ipxe.efi")
        .expect("Debian's ipxe package must be installed (tests/run.sh installs it)");
    std::fs::write(files.path().join("ipxe.efi"), &ipxe_efi).unwrap();
    let (_srv, d, node_id, serial, _vm) =
        ovmf_netboot("usrv", files.path(), "", "uefi-vm", "52:54:00:99:00:30");
    let wanted = format!("ipxe.efi: {} bytes", ipxe_efi.len());
    let script = format!("/boot/{node_id}.ipxe");
    let text = wait_timeline(
        &d,
        &node_id,
        &serial,
        "OVMF did not fetch ipxe.efi and then the script",
        |t| t.contains(&wanted) && t.contains(&script) && t.contains("\"http\""),
    );
    assert!(
        text.contains("arch 7 → OFFER") && text.contains("boot ipxe.efi"),
        "{text}"
    );
}

/// The fake BMC of the GRUB deploy test (inside its namespace).
const GRUB_BMC_PORT: u16 = 16300;

/// GRUB's netboot tree (grub-mknetdir) in `files`.
fn grub_netdir(files: &std::path::Path) {
    let made = Command::new("grub-mknetdir")
        .arg(format!("--net-directory={}", files.display()))
        .args(["--subdir=grub", "-d", "/usr/lib/grub/x86_64-efi"])
        .output()
        .expect("grub-mknetdir must be installed (tests/run.sh installs grub-efi-amd64-bin)");
    assert!(made.status.success(), "{made:?}");
}

const GRUB_EFI: &str = "uefi_x64_file = \"grub/x86_64-efi/core.efi\"\n";

#[test]
fn uefi_grub_netboots_with_its_per_mac_config() {
    // An operator who boots UEFI machines into GRUB instead of iPXE: GRUB's
    // own netboot image (grub-mknetdir, Debian's grub-efi-amd64-bin) as the
    // UEFI boot file; GRUB then asks over TFTP for its per-MAC config, which
    // rackboot renders from pxe-templates/grub/grub.cfg, and shows its menu.
    let files = tempfile::tempdir().unwrap();
    grub_netdir(files.path());
    let (_srv, d, node_id, serial, _vm) = ovmf_netboot(
        "gsrv",
        files.path(),
        GRUB_EFI,
        "grub-vm",
        "52:54:00:99:00:31",
    );
    let text = wait_timeline(
        &d,
        &node_id,
        &serial,
        "GRUB did not fetch its per-MAC config",
        |t| t.contains("grub.cfg-01-52-54-00-99-00-31: "),
    );
    assert!(
        text.contains("arch 7 → OFFER") && text.contains("boot grub/x86_64-efi/core.efi"),
        "{text}"
    );
    // The menu GRUB draws is the one rendered for this node (not being
    // provisioned: the local disk).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let console =
            String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
        if console.contains("grub-vm: boot the local disk") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GRUB's menu never showed the node's entry; serial:\n{console}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn uefi_grub_fetches_the_deploy_kernel_over_http_when_provisioning() {
    // A node being provisioned: its GRUB config names the deploy kernel as
    // `(http,10.99.0.1:8080)/deploy/kernel`; GRUB's own HTTP client fetches
    // it from rackboot, and the provision sees its network boot (step3).
    // (The kernel here is a stand-in file: GRUB refuses to boot it after
    // the fetch, which is all this test needs.)
    let files = tempfile::tempdir().unwrap();
    grub_netdir(files.path());
    let d = files.path();
    std::fs::write(d.join("vmlinuz"), vec![0x5au8; 300_000]).unwrap();
    std::fs::write(d.join("initrd.img"), b"initrd").unwrap();
    std::fs::write(d.join("tiny.raw"), vec![7u8; 4096]).unwrap();
    let tail = format!(
        "[deploy]\nkernel = \"{0}/vmlinuz\"\ninitrd = \"{0}/initrd.img\"\n\
         [[images]]\nos_version = \"tiny-1.0\"\nfile = \"{0}/tiny.raw\"\n",
        d.display()
    );
    let (_srv, daemon, node_id, serial, _vm) = ovmf_netboot_with(
        "gdsrv",
        d,
        GRUB_EFI,
        &tail,
        "grub-deploy",
        "52:54:00:99:00:32",
        |srv, daemon, node_id| {
            let at =
                common::fakebmc::addresses(1, std::net::Ipv4Addr::LOCALHOST, GRUB_BMC_PORT, None);
            common::netns::run_in(&srv.name, move || common::fakebmc::spawn(at));
            let r = daemon.ok(json!({"action": "ProvisionBMNodes", "node_ids": [node_id]}));
            assert!(r["job_id"].is_string(), "{r}");
            // Before the VM boots, the node is waiting for its network boot.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let n = daemon.ok(json!({"action": "DescribeBMNodes", "node_ids": [node_id]}));
                if n["node_set"][0]["status"] == "provisioning" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{n}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        },
    );
    let text = wait_timeline(
        &daemon,
        &node_id,
        &serial,
        "GRUB did not fetch the deploy kernel over HTTP",
        // GRUB reads the stand-in's header and hangs up once it sees no
        // kernel there: the request over HTTP is what counts here.
        |t| t.contains("GET /deploy/kernel: "),
    );
    assert!(text.contains("grub.cfg-01-52-54-00-99-00-32: "), "{text}");
    let s = daemon.ok(json!({"action": "GetProvisionBMNodesStatus"}));
    let share = &s["node_progress"][&node_id];
    assert_eq!(
        share["status"], "step3",
        "the kernel fetch did not end step2: {s}"
    );
}

/// Runs curl in `ns`; (HTTP status, body).
fn curl(ns: &Netns, args: &[&str]) -> (u16, Vec<u8>) {
    ns.curl(args)
}

#[test]
fn http_serves_files_with_ranges_and_tftp_serves_per_node_loader_configs() {
    let lab = lab();
    lab.cli.ip(&["addr", "add", "10.99.0.50/24", "dev", "cli0"]);
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let image_path = lab.files.path().join("tiny.raw");
    std::fs::write(&image_path, &image).unwrap();
    let config = format!(
        "{}[[images]]\nos_version = \"tiny-1.0\"\nfile = \"{}\"\n",
        config(lab.files.path()),
        image_path.display()
    );
    let d = Daemon::start_in_netns(&lab.srv.name, Some(&config), |_| {});
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "files01", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:00:10",
    }));
    let node_id = r["node_ids"][0].as_str().unwrap().to_string();

    // Whole file and a byte range, as an installer or ramdisk fetches them.
    let (code, body) = curl(&lab.cli, &["http://10.99.0.1:8080/images/tiny-1.0/image"]);
    assert_eq!((code, body.len()), (200, image.len()));
    assert!(body == image);
    let (code, body) = curl(
        &lab.cli,
        &[
            "-r",
            "1000-1999",
            "http://10.99.0.1:8080/images/tiny-1.0/image",
        ],
    );
    assert_eq!(code, 206);
    assert!(body == image[1000..2000]);
    let (code, body) = curl(&lab.cli, &["http://10.99.0.1:8080/files/undionly.kpxe"]);
    assert_eq!(code, 200);
    assert!(body == std::fs::read(lab.files.path().join("undionly.kpxe")).unwrap());
    // Out of the folder, unknown things: 4xx with a reason, never a path.
    for (url, want) in [
        ("http://10.99.0.1:8080/files/..%2f..%2fetc%2fpasswd", 403),
        ("http://10.99.0.1:8080/files/nope.efi", 404),
        ("http://10.99.0.1:8080/images/other/image", 404),
        ("http://10.99.0.1:8080/config/n-Jr8KE6cf/abc/user-data", 404),
    ] {
        let (code, body) = curl(&lab.cli, &["--path-as-is", url]);
        assert_eq!(code, want, "{url}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains(&lab.files.path().display().to_string()));
    }
    std::os::unix::fs::symlink("/etc/passwd", lab.files.path().join("escape")).unwrap();
    let (code, _) = curl(&lab.cli, &["http://10.99.0.1:8080/files/escape"]);
    assert_eq!(code, 403);
    let callback = format!("http://10.99.0.1:8080/callback/{node_id}/not-the-token/done");
    let (code, _) = curl(&lab.cli, &["-X", "POST", &callback]);
    assert_eq!(code, 403);

    // The node's GRUB config over TFTP (tftp-hpa) and HTTP, rendered on
    // request: it is not provisioning, so it boots its disk.
    let dest = lab.files.path().join("grub.cfg");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli.name,
            "tftp",
            "10.99.0.1",
            "-m",
            "binary",
            "-c",
            "get",
            "grub/grub.cfg-01-52-54-00-99-00-10",
        ])
        .arg(&dest)
        .output()
        .unwrap();
    let grub = std::fs::read_to_string(&dest).unwrap_or_default();
    assert!(
        grub.contains("files01: boot the local disk"),
        "{grub} {out:?}"
    );
    let (code, body) = curl(
        &lab.cli,
        &["http://10.99.0.1:8080/boot/pxelinux.cfg/01-52-54-00-99-00-10"],
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("LOCALBOOT 0"));

    // The timeline names the files, their sizes and durations (the MAC from
    // the server's neighbour table: the client has no lease of ours).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": node_id}));
        let text = t["event_set"].to_string();
        if text.contains("GET /images/tiny-1.0/image: 3000000 bytes in")
            && text.contains("GET /boot/pxelinux.cfg/01-52-54-00-99-00-10")
        {
            // A ramdisk fetches an image range by range: those do not
            // flood the timeline (its progress callbacks show the write).
            assert!(!text.contains("(range)"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_node_that_takes_a_competing_servers_offer_is_diagnosed() {
    // srv: rackboot on br0 (10.99.0.1); dh: dnsmasq, a second full DHCP
    // server on the same bridge (10.99.0.2); cli: the node's NIC.
    let (srv, dh, cli) = bridged("o", "52:54:00:99:02:02", "52:54:00:99:02:03");
    let files = tempfile::tempdir().unwrap();
    let _dnsmasq = dnsmasq(&dh, files.path());
    let d = Daemon::start_in_netns(
        &srv.name,
        Some(&format!(
            "[dhcp]\ninterface = \"br0\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.199\"\n\
             router_advertisement = false\n[boot]\nfiles_dir = \"{}\"\n",
            files.path().display()
        )),
        |_| {},
    );
    let r = d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "rogue-victim", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:02:03",
    }));
    let node_id = r["node_ids"][0].as_str().unwrap().to_string();
    // The node hears both offers and takes dnsmasq's (ISC dhclient told to
    // refuse rackboot's: which offer a real firmware takes first is chance).
    let env = dhclient(&cli, "reject 10.99.0.1;\n");
    assert_eq!(
        env.get("new_dhcp_server_identifier").map(String::as_str),
        Some("10.99.0.2"),
        "{env:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let t = loop {
        let t = d.ok(json!({"action": "DescribeBootEvents", "node_id": node_id}));
        if t["diagnosis_cause"] == "offer_not_taken" {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "{t}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let events = t["event_set"].to_string();
    assert!(
        events.contains("→ OFFER 10.99.0.1") && events.contains("(request for another server)"),
        "{t}"
    );
    assert!(
        t["diagnosis"]
            .as_str()
            .unwrap()
            .contains("the node took another DHCP server's offer"),
        "{t}"
    );
}
