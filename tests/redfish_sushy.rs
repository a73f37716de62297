//! Redfish against the real peer Ironic's CI uses: sushy-tools' emulator
//! (2.2.0, libvirt driver, HTTPS on 443 with a certificate of the test CA,
//! HTTP Basic from an htpasswd file) driving QEMU TCG domains through a
//! libvirtd and virtlogd this test starts itself, inside a network namespace
//! it creates (tests/run.sh installs libvirt-daemon-system, python3-libvirt,
//! python3-venv and the emulator's venv). rackboot runs in the namespace on
//! its bridge. Every change is cross-checked with `virsh domstate` and the
//! domain XML:
//! - power on/off/cycle, boot device (pxe, disk), the BMC's inventory (the
//!   domain's NIC), a wrong password, a scan of 443 finding both systems;
//! - one node provisioned by PXE and one by virtual media, end to end in one
//!   job (deploy, checksum, boot from disk, the installed OS calls back).
//!
//! The virtual-media node boots the ISO from its virtual CD (its serial
//! console shows ISOLINUX and the kernel line with BOOTIF and rackboot.ip);
//! until the lead's new ramdisk lands, today's ramdisk ignores rackboot.ip
//! and takes its address by DHCP on that NIC from rackboot on the same
//! bridge — the timeline shows that no PXE boot file, TFTP transfer or boot
//! script was served to it. sushy-tools offers no SessionService, ETags or
//! task monitors: rackboot uses HTTP Basic with it (checked in its log);
//! tests/redfish_fake.rs covers those against the project's fake BMCs.

mod common;

use common::fakeredfish::{self, Cert};
use common::netns::Netns;
use common::Daemon;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rackboot");
const VENV: &str = "/var/cache/rackboot-tests/redfish-venv";
const BMC: &str = "10.98.0.1";
const PXE_MAC: &str = "52:54:00:98:00:11";
const VM_MAC: &str = "52:54:00:98:00:21";

/// The deploy ramdisk, built once per target folder.
fn ramdisk() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmedia-ramdisk");
    if !dir.join("vmlinuz").exists() {
        let out = Command::new(BIN)
            .args(["ramdisk", "build", "--out"])
            .arg(&dir)
            .arg("--agent")
            .arg(common::agent())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ramdisk build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh (libvirt-clients) installed");
    assert!(
        out.status.success(),
        "virsh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn domstate(name: &str) -> String {
    virsh(&["domstate", name])
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The libvirt daemons, the emulator and the domains; stopped by pid and
/// removed on drop.
struct Peer {
    dir: tempfile::TempDir,
    ns: Netns,
    pool: String,
    domains: Vec<String>,
    sushy: Option<Child>,
}

impl Peer {
    fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join(name))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn start() -> Peer {
        assert!(
            Path::new(&format!("{VENV}/bin/sushy-emulator")).exists(),
            "sushy-tools' venv is missing at {VENV}: run tests/run.sh (it creates it)"
        );
        let live = Command::new("virsh")
            .args(["-c", "qemu:///system", "version"])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(!live, "a libvirtd already runs on this machine: this test starts its own in its namespace; stop that one first");
        // Domains a killed run of this test left defined (rf-*-<pid> of a
        // process that is gone) would show up in the emulator: remove them.
        for f in std::fs::read_dir("/etc/libvirt/qemu")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().to_string();
            let stale = (name.starts_with("rf-pxe-") || name.starts_with("rf-vm-"))
                && name.ends_with(".xml")
                && name
                    .trim_end_matches(".xml")
                    .rsplit('-')
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_err()
                    });
            if stale {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let ns = Netns::new("sushy");
        let dir = tempfile::tempdir().unwrap();
        // QEMU runs as libvirt-qemu: it must reach the disks in here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        ns.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
        ns.ip(&["addr", "add", &format!("{BMC}/24"), "dev", "br0"]);
        ns.ip(&["link", "set", "br0", "up"]);
        let peer = Peer {
            pool: format!("rbpool{}", std::process::id()),
            dir,
            ns,
            domains: Vec::new(),
            sushy: None,
        };
        let d = peer.dir.path();
        let st = Command::new("ip")
            .args([
                "netns",
                "exec",
                &peer.ns.name,
                "/usr/sbin/virtlogd",
                "--daemon",
                "--pid-file",
            ])
            .arg(d.join("virtlogd.pid"))
            .status()
            .expect("libvirt-daemon-system installed");
        assert!(st.success(), "virtlogd did not start");
        // /dev/kvm exists here but does not work (lab facts): libvirt then
        // re-probes QEMU on every capabilities call (8 s each, which made
        // sushy take 97 s per GET of a system). libvirtd gets its own mount
        // namespace where /dev/kvm is a file it cannot use and its qemu.conf
        // turns off the per-domain /dev (which would copy that file); the
        // host's /dev/kvm and /etc/libvirt stay as they are.
        let nokvm = d.join("nokvm");
        std::fs::write(&nokvm, b"").unwrap();
        std::fs::set_permissions(&nokvm, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let qemu_conf = d.join("qemu.conf");
        let mut conf = std::fs::read_to_string("/etc/libvirt/qemu.conf").unwrap_or_default();
        conf.push_str("\nnamespaces = []\n");
        std::fs::write(&qemu_conf, conf).unwrap();
        let st = Command::new("ip")
            .args(["netns", "exec", &peer.ns.name, "unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /dev/kvm && mount --bind {} /etc/libvirt/qemu.conf && exec /usr/sbin/libvirtd --daemon --pid-file {}",
                nokvm.display(),
                qemu_conf.display(),
                d.join("libvirtd.pid").display()
            ))
            .status()
            .unwrap();
        assert!(st.success(), "libvirtd did not start");
        wait_for("libvirtd", 30, || {
            Command::new("virsh")
                .args(["-c", "qemu:///system", "version"])
                .stderr(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let pool_dir = peer.dir.path().join("pool");
        std::fs::create_dir(&pool_dir).unwrap();
        virsh(&[
            "pool-create-as",
            &peer.pool,
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ]);
        peer
    }

    /// Defines a QEMU TCG domain on the bridge (virtio disk and NIC, serial
    /// console to a file, SeaBIOS printing to it); returns its UUID.
    fn domain(&mut self, name: &str, mac: &str) -> String {
        let d = self.dir.path();
        let disk = d.join(format!("{name}.raw"));
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let xml = format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>384</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><bios useserial='yes'/></os>\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
             <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>\
             <interface type='bridge'><source bridge='br0'/><mac address='{mac}'/><model type='virtio'/></interface>\
             <serial type='file'><source path='{}' append='on'/><target port='0'/></serial></devices></domain>",
            disk.display(),
            d.join(format!("{name}.serial")).display()
        );
        let file = d.join(format!("{name}.xml"));
        std::fs::write(&file, xml).unwrap();
        virsh(&["define", file.to_str().unwrap()]);
        self.domains.push(name.to_string());
        virsh(&["domuuid", name])
    }

    fn serial(&self, name: &str) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.dir.path().join(format!("{name}.serial"))).unwrap_or_default(),
        )
        .to_string()
    }

    fn disk(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.raw"))
    }

    /// sushy-emulator on BMC:443 with TLS (a certificate of the test CA)
    /// and Basic auth (admin/password); returns the CA's PEM file.
    fn emulator(&mut self) -> PathBuf {
        let d = self.dir.path();
        let (ca, cert, key) = fakeredfish::certificates(Cert::Good);
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        std::fs::write(d.join("ca.pem"), ca).unwrap();
        std::fs::write(d.join("bmc.pem"), pem("CERTIFICATE", &cert)).unwrap();
        std::fs::write(d.join("bmc.key"), pem("PRIVATE KEY", &key)).unwrap();
        let htpasswd = Command::new(format!("{VENV}/bin/python3"))
            .args(["-c", "import bcrypt,sys; print('admin:' + bcrypt.hashpw(b'password', bcrypt.gensalt()).decode())"])
            .output()
            .unwrap();
        assert!(htpasswd.status.success());
        std::fs::write(d.join("htpasswd"), &htpasswd.stdout).unwrap();
        std::fs::write(
            d.join("sushy.conf"),
            format!(
                "SUSHY_EMULATOR_LISTEN_IP = '{BMC}'\nSUSHY_EMULATOR_LISTEN_PORT = 443\n\
                 SUSHY_EMULATOR_SSL_CERT = '{0}/bmc.pem'\nSUSHY_EMULATOR_SSL_KEY = '{0}/bmc.key'\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{0}/htpasswd'\nSUSHY_EMULATOR_LIBVIRT_URI = 'qemu:///system'\n\
                 SUSHY_EMULATOR_STORAGE_POOL = '{1}'\n",
                d.display(),
                self.pool
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("sushy.log")).unwrap();
        self.sushy = Some(
            Command::new("ip")
                .args(["netns", "exec", &self.ns.name])
                .arg(format!("{VENV}/bin/sushy-emulator"))
                .arg("--config")
                .arg(d.join("sushy.conf"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let ca = d.join("ca.pem");
        let ca_arg = ca.to_str().unwrap().to_string();
        wait_for("sushy-emulator", 60, || {
            self.ns
                .curl(&["--cacert", &ca_arg, &format!("https://{BMC}/redfish/v1")])
                .0
                == 200
        });
        ca
    }

    fn sushy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sushy.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.sushy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.domains {
            let _ = Command::new("virsh")
                .args(["-c", "qemu:///system", "destroy", d])
                .output();
            for _ in 0..20 {
                let gone = Command::new("virsh")
                    .args(["-c", "qemu:///system", "undefine", d])
                    .output()
                    .is_ok_and(|o| {
                        o.status.success()
                            || String::from_utf8_lossy(&o.stderr).contains("failed to get domain")
                    });
                if gone {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let _ = Command::new("virsh")
            .args(["-c", "qemu:///system", "pool-destroy", &self.pool])
            .output();
        for pid in ["libvirtd.pid", "virtlogd.pid"] {
            if let Some(p) = self.pid(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        // libvirtd takes its time to stop (>10 s seen): wait, then kill.
        let alive = |p: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok();
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in ["libvirtd.pid", "virtlogd.pid"] {
            let Some(p) = self.pid(name) else { continue };
            while alive(p) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(p) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn run_job(d: &Daemon, request: Value, secs: u64) -> Value {
    let r = d.ok(request);
    let (id, action) = (r["job_id"].clone(), r["job_action"].clone());
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_action": action, "job_id": id}));
        if s["status"] == "successful" || s["status"] == "failed" {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "job still running: {s}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn timeline(d: &Daemon, id: &str) -> Vec<Value> {
    d.ok(json!({"action": "DescribeBootEvents", "node_id": id, "limit": 1000}))["event_set"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn sushy_tools_over_libvirt_power_boot_scan_and_two_deploys() {
    let ramdisk = ramdisk();
    let mut peer = Peer::start();
    let pxe_uuid = peer.domain(&format!("rf-pxe-{}", std::process::id()), PXE_MAC);
    let vm_uuid = peer.domain(&format!("rf-vm-{}", std::process::id()), VM_MAC);
    let (pxe_dom, vm_dom) = (peer.domains[0].clone(), peer.domains[1].clone());
    let ca = peer.emulator();

    let image = peer.dir.path().join("tiny.raw");
    let sha = rackboot::entry::lab::test_image(
        &image,
        &ramdisk.join("vmlinuz"),
        &ramdisk.join("initrd.img"),
        &ramdisk,
    )
    .unwrap();
    let config = format!(
        "[dhcp]\ninterface = \"br0\"\nrange_start = \"10.98.0.100\"\nrange_end = \"10.98.0.199\"\n\
         [redfish]\nca_file = \"{}\"\n\
         [deploy]\nkernel = \"{}/vmlinuz\"\ninitrd = \"{}/initrd.img\"\n\
         [provision]\nboot_timeout = 240\ndeploy_timeout = 240\npower_on_timeout = 60\nfirst_boot_timeout = 300\n\
         [[images]]\nos_version = \"tiny-1.0\"\nfile = \"{}\"\nsha256 = \"{sha}\"\nfirst_boot_callback = true\n",
        ca.display(),
        ramdisk.display(),
        ramdisk.display(),
        image.display()
    );
    let d = Daemon::start_in_netns(&peer.ns.name, Some(&config), |_| {});
    let node = |name: &str, url: String, mac: &str| {
        json!({"hostname": name, "os_version": "tiny-1.0", "cpu_arch": "x86_64", "bmc_address": url,
               "ipmi_username": "admin", "ipmi_password": "password", "pxe_network_mac_addr": mac, "os_disk_name": "vda"})
    };
    let mut vm = node(
        "vmedia01",
        format!("redfish-virtualmedia://{BMC}/redfish/v1/Systems/{vm_uuid}"),
        VM_MAC,
    );
    // Static settings for the ramdisk (rackboot.ip), on the bridge's network.
    vm["mgmt_network_address"] = json!("10.98.0.50");
    vm["mgmt_network_netmask"] = json!("255.255.255.0");
    vm["mgmt_network_gateway"] = json!(BMC);
    let r = d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [
        node("pxe01", format!("redfish://{BMC}/redfish/v1/Systems/{pxe_uuid}"), PXE_MAC), vm]}));
    let ids: Vec<String> = r["node_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let (pxe, vmn) = (ids[0].clone(), ids[1].clone());

    // The BMC's inventory: the domain's NIC, read over HTTPS with Basic.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = d.ok(json!({"action": "DescribeBMNodes", "node_ids": [pxe]}));
        if !n["node_set"][0]["bmc_inventory_time"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no inventory: {n}\n{}\n{}",
            d.log(),
            peer.sushy_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = d.ok(json!({"action": "DescribeBMNodes", "node_ids": [pxe]}))["node_set"][0].clone();
    assert_eq!(n["bmc_driver"], "redfish");
    assert_eq!(n["bmc_inventory"]["manufacturer"], "Sushy Emulator", "{n}");
    assert!(
        n["bmc_inventory"]["nics"].to_string().contains(PXE_MAC),
        "{n}"
    );
    let v = d.ok(json!({"action": "DescribeBMNodes", "node_ids": [vmn]}))["node_set"][0].clone();
    assert_eq!(v["bmc_driver"], "redfish-virtualmedia");

    // Power and boot device, each checked with virsh.
    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [pxe]}), 60);
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(domstate(&pxe_dom), "running");
    let s = run_job(
        &d,
        json!({"action": "RestartBMNodes", "node_ids": [pxe], "force": 0}),
        60,
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(domstate(&pxe_dom), "running");
    let s = run_job(&d, json!({"action": "StopBMNodes", "node_ids": [pxe]}), 60);
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(domstate(&pxe_dom), "shut off");
    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [pxe], "boot_device": "pxe"}),
        60,
    );
    assert_eq!(s["status"], "successful", "{s}");
    let xml = virsh(&["dumpxml", "--inactive", &pxe_dom]);
    let iface = &xml[xml.find("<interface").unwrap()..xml.find("</interface>").unwrap()];
    assert!(iface.contains("<boot order='1'/>"), "{xml}");
    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [pxe], "boot_device": "disk"}),
        60,
    );
    assert_eq!(s["status"], "successful", "{s}");
    let xml = virsh(&["dumpxml", "--inactive", &pxe_dom]);
    let disk = &xml[xml.find("<disk").unwrap()..xml.find("</disk>").unwrap()];
    assert!(disk.contains("<boot order='1'/>"), "{xml}");
    // A wrong password: the BMC's refusal, named.
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": pxe, "ipmi_password": "nope"}));
    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [pxe]}), 60);
    assert_eq!(s["node_progress"][&pxe]["ret_code"], 3200, "{s}");
    assert_eq!(domstate(&pxe_dom), "shut off");
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": pxe, "ipmi_password": "password"}));

    // A scan of 443 finds both systems behind the emulator: known, updated.
    let s = run_job(
        &d,
        json!({"action": "ScanBMNodes", "ip_start": BMC, "ip_end": BMC, "protocols": "redfish",
        "ipmi_username": "admin", "ipmi_password": "password"}),
        120,
    );
    let log = d
        .ok(json!({"action": "GetScanBMNodesLog", "job_id": s["job_id"]}))
        .to_string();
    assert!(
        log.contains(&format!("updated {pxe} (pxe01)"))
            && log.contains(&format!("updated {vmn} (vmedia01)")),
        "{log}"
    );
    assert!(log.contains("found 1, registered 0, updated 2"), "{log}");

    // Both deploys in one job: PXE and virtual media.
    let s = run_job(
        &d,
        json!({"action": "ProvisionBMNodes", "node_ids": [pxe, vmn]}),
        900,
    );
    let log = d.ok(json!({"action": "GetProvisionBMNodesLog", "job_id": s["job_id"]}));
    assert_eq!(
        s["status"],
        "successful",
        "{s}\n{log}\n{}\nserial pxe:\n{}\nserial vm:\n{}",
        d.log(),
        peer.serial(&pxe_dom),
        peer.serial(&vm_dom)
    );
    for id in [&pxe, &vmn] {
        let n = d.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}))["node_set"][0].clone();
        assert_eq!(n["status"], "active", "{n}");
    }
    for dom in [&pxe_dom, &vm_dom] {
        assert_eq!(domstate(dom), "running", "{dom}");
        // Boots its disk now.
        let xml = virsh(&["dumpxml", "--inactive", dom]);
        let disk = xml
            .split("<disk")
            .find(|d| d.contains("device='disk'"))
            .unwrap();
        assert!(disk.contains("<boot order='1'/>"), "{dom}: {xml}");
        // The image is on the disk (its boot sector; sector 1 holds the callback).
        let written = std::fs::read(peer.disk(dom)).unwrap();
        let original = std::fs::read(&image).unwrap();
        assert_eq!(
            written[..446],
            original[..446],
            "{dom}: the image's boot code is on the disk"
        );
        assert_eq!(written[4096..1 << 20], original[4096..1 << 20], "{dom}");
    }

    // The PXE node network-booted: DHCP with a boot file, its iPXE script.
    let t = timeline(&d, &pxe)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        t.contains(", boot ") && t.contains(&format!("/boot/{pxe}.ipxe")),
        "{t}"
    );

    // The virtual-media node booted its CD: no PXE boot file, TFTP or boot
    // script; the ISO was fetched by the BMC; ISOLINUX and the kernel line
    // with the node's NIC and static settings on its console.
    let events = timeline(&d, &vmn);
    let t = events
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !t.contains(", boot ") && !t.contains(", arch "),
        "a PXE exchange: {t}"
    );
    assert!(
        !t.contains("/boot/") && !events.iter().any(|e| e["kind"] == "tftp"),
        "{t}"
    );
    assert!(
        t.contains("/deploy.iso (virtual media, fetched by the BMC at 10.98.0.1)"),
        "{t}"
    );
    assert!(t.contains("callback") && t.contains("booted"), "{t}");
    let serial = peer.serial(&vm_dom);
    assert!(serial.contains("ISOLINUX"), "{serial}");
    let line = serial
        .lines()
        .find(|l| l.contains("Command line:") && l.contains("rackboot.mode=deploy"))
        .unwrap_or_else(|| panic!("{serial}"));
    assert!(
        line.contains(&format!("rackboot.node={vmn}"))
            && line.contains(
                "BOOTIF=01-52-54-00-98-00-21 rackboot.ip=10.98.0.50/24 rackboot.gateway=10.98.0.1"
            ),
        "{line}"
    );
    // Ejected: no CD image left in the domain; the BMC had uploaded it.
    let xml = virsh(&["dumpxml", "--inactive", &vm_dom]);
    assert!(
        !xml.split("<disk")
            .any(|d| d.contains("device='cdrom'") && d.contains("<source")),
        "{xml}"
    );
    let uploaded = std::fs::read_dir(peer.dir.path().join("pool"))
        .unwrap()
        .flatten()
        .any(|f| {
            f.file_name().to_string_lossy().contains("deploy-iso")
                && f.metadata().unwrap().len() > 10 << 20
        });
    assert!(uploaded, "the emulator never stored the ISO");
    assert!(
        !rackboot_iso_left(&d),
        "the ISO was deleted after the deploy"
    );

    // sushy-tools has no SessionService: rackboot used Basic, never a session.
    assert!(
        !peer.sushy_log().contains("SessionService"),
        "{}",
        peer.sushy_log()
    );
}

fn rackboot_iso_left(d: &Daemon) -> bool {
    std::fs::read_dir(d.state_dir().join("vmedia"))
        .map(|r| {
            r.flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".iso"))
        })
        .unwrap_or(false)
}
