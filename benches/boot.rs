//! Lab boot benchmark (`cargo bench --bench boot`).
//!
//! The issue's goal: "Lab boot: seconds from QEMU start to the kernel
//! fetched, rackboot vs dnsmasq with `--no-ping --enable-ra`".
//!
//! Needs root (network namespaces, a tap) and Debian's `qemu-system-x86`,
//! `ipxe-qemu` (the e1000 option ROM, /usr/lib/ipxe/qemu/pxe-e1000.rom),
//! `dnsmasq` and `nginx-light` (or any nginx) installed — their services
//! never started — plus iproute2. KVM is not used (TCG), so the figures
//! include emulation time; both servers pay it alike.
//!
//! Nothing touches a real interface: one namespace `rbb-boot-<pid>` holds a
//! bridge `br0` (10.99.0.1/24 and fd99::1/64, forward_delay 0), the tap
//! `tap0` QEMU's NIC is plugged into, and a veth pair whose end on the
//! bridge keeps br0's carrier up (a provisioning switch port is always up
//! in a lab; without it, br0's IPv6 link-local address would only appear,
//! and be tentative, once QEMU opens the tap). Deleted on exit and on panic.
//!
//! The machine: `qemu-system-x86_64 -accel tcg -m 256`, an e1000 whose
//! option ROM is iPXE, MAC 52:54:00:99:00:20, serial console to a file.
//! Its boot script fetches an 8 MiB "kernel" over HTTP with `imgfetch` (the
//! blob is not bootable, `kernel` would fail on it) and then prints
//! `KERNEL-FETCHED`. The time measured: QEMU spawned → `KERNEL-FETCHED` in
//! the serial log (polled every 50 ms, at most 90 s).
//!
//! - rackboot: `[dhcp] interface = "br0"`, full mode, router advertisements
//!   on; the node registered through the API (`rackboot call`, admin's
//!   password from the state dir), so rackboot hands iPXE
//!   `http://10.99.0.1:8080/boot/<node_id>.ipxe`. A node that is not being
//!   provisioned gets the local-disk template, replaced here through
//!   `boot.templates_dir` (`ipxe/local.ipxe`) by the fetch script, which
//!   takes the kernel from rackboot's `/images/bench/image`.
//! - dnsmasq: `--no-ping --enable-ra` (RA-only on br0), iPXE clients
//!   (user class iPXE) get `http://10.99.0.1:8081/boot.ipxe` served by
//!   nginx, which also serves the kernel.
//!
//! Runs rackboot and dnsmasq alternately, fresh state each time, 2 runs
//! each (BENCH_BOOT_RUNS overrides), and prints per run the times of the
//! milestones seen on the serial console (iPXE starts DHCP, "Configuring";
//! network configured — DHCPv4 and IPv6 router discovery both done,
//! "Filename:"; boot script fetched; kernel fetched), the mean time to the
//! kernel and the ratio dnsmasq ÷ rackboot (> 1: rackboot is faster).
//!
//! Environment: BENCH_VERBOSE=1 prints each run's serial log and the
//! server's log (rackboot at debug level, dnsmasq with `--log-dhcp`).
//! BENCH_BOOT_IPV6_FORWARDING=1 turns IPv6 forwarding on in the namespace,
//! so that the kernel joins ff02::2 (all routers) on br0 — a diagnostic: a
//! raw ICMPv6 socket only sees iPXE's router solicitations (sent to
//! ff02::2) when something joined that group.

#[path = "common/netns.rs"]
mod netns;
use netns::{Netns, Server};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SRV_IP: &str = "10.99.0.1";
const VM_MAC: &str = "52:54:00:99:00:20";
const RACKBOOT_PORT: u16 = 8080;
const NGINX_PORT: u16 = 8081;
const KERNEL_BYTES: usize = 8 * 1024 * 1024;
const DONE: &str = "KERNEL-FETCHED";
const TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);
const E1000_ROM: &str = "/usr/lib/ipxe/qemu/pxe-e1000.rom";

/// Serial-console text → milestone, in boot order.
const MILESTONES: [(&str, &str); 4] = [
    ("Configuring (net0", "DHCP"),
    ("Filename:", "net up"),
    (".ipxe... ok", "script"),
    (DONE, "kernel"),
];

/// A process of ours (a [`Server`]) with its log, shown when it dies early.
struct Proc {
    server: Server,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            server: Server::new(name, child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics when the process has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.server.child.try_wait() {
            panic!(
                "{} exited early ({status}):\n{}",
                self.server.name,
                self.log()
            );
        }
    }

    fn stop(self) {
        self.server.stop();
    }
}

/// Waits until `ready()` holds (at most 30 s), checking `p` stays alive.
fn wait_for(p: &mut Proc, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        p.check_alive();
        if ready() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {what} not ready in 30 s:\n{}",
            p.server.name,
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic non-zero bytes: the "kernel".
fn write_kernel(path: &Path) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut data = vec![0u8; KERNEL_BYTES];
    for chunk in data.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}

fn fetch_script(kernel_url: &str) -> String {
    format!("#!ipxe\nimgfetch --name kernel {kernel_url}\necho {DONE}\n")
}

/// The bridge, its always-up port and the tap, with both addresses usable.
fn lab(ns: &Netns) {
    ns.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "forward_delay",
        "0",
        "stp_state",
        "0",
    ]);
    // No DAD on br0: its addresses are usable at once, for both servers.
    let _ = ns.output("sysctl", &["-qw", "net.ipv6.conf.br0.accept_dad=0"]);
    ns.ip(&["addr", "add", &format!("{SRV_IP}/24"), "dev", "br0"]);
    ns.ip(&["addr", "add", "fd99::1/64", "dev", "br0", "nodad"]);
    ns.ip(&[
        "link", "add", "rb-up0", "type", "veth", "peer", "name", "rb-up1",
    ]);
    ns.ip(&["link", "set", "rb-up0", "master", "br0"]);
    ns.ip(&["link", "set", "rb-up0", "up"]);
    ns.ip(&["link", "set", "rb-up1", "up"]);
    ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ns.ip(&["link", "set", "tap0", "master", "br0"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = ns.output("ip", &["-6", "addr", "show", "dev", "br0"]);
        if a.contains("scope link") && !a.contains("tentative") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "br0 has no usable IPv6 link-local address:\n{a}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listening(ns: &Netns, flags: &str, needle: &str) -> bool {
    ns.output("ss", &[flags]).contains(needle)
}

fn start_rackboot(ns: &Netns, dir: &Path, kernel: &Path, log_level: &str) -> Proc {
    let state = dir.join("rackboot-state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let files = dir.join("boot-files");
    let templates = dir.join("templates");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(templates.join("ipxe")).unwrap();
    let undionly = Path::new("/usr/lib/ipxe/undionly.kpxe");
    if undionly.is_file() {
        std::fs::copy(undionly, files.join("undionly.kpxe")).unwrap();
    } else {
        std::fs::write(
            files.join("undionly.kpxe"),
            b"not used: iPXE is the NIC's ROM",
        )
        .unwrap();
    }
    std::fs::write(
        templates.join("ipxe/local.ipxe"),
        fetch_script(&format!(
            "http://{SRV_IP}:{RACKBOOT_PORT}/images/bench/image"
        )),
    )
    .unwrap();
    let conf = dir.join("rackboot.toml");
    std::fs::write(
        &conf,
        format!(
            "[daemon]\nlog_level = \"{log_level}\"\n[dhcp]\ninterface = \"br0\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.199\"\n\
             router_advertisement = true\n[tftp]\nenabled = false\n\
             [boot]\nfiles_dir = \"{}\"\ntemplates_dir = \"{}\"\n\
             [http]\nport = {RACKBOOT_PORT}\n[ipmi]\npower_sync_interval = 0\n\
             [[images]]\nos_version = \"bench\"\nfile = \"{}\"\n",
            files.display(),
            templates.display(),
            kernel.display()
        ),
    )
    .unwrap();
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_rackboot"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&conf)
        .arg("--state-dir")
        .arg(&state)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET");
    let mut p = Proc::spawn("rackboot", cmd, dir.join("rackboot.log"));
    let socket = state.join("api.sock");
    let log = p.log.clone();
    wait_for(&mut p, "API and PXE services", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
            && text.contains("API listening")
            && text.contains("PXE services listening")
    });
    let request = serde_json::json!({
        "action": "RegisterBMNodes", "hostname": "boot01", "os_version": "bench",
        "cpu_arch": "x86_64", "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin",
        "ipmi_password": "password", "pxe_network_mac_addr": VM_MAC,
    });
    let out = Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--json", "call", &request.to_string()])
        .env_remove("RACKBOOT_USER")
        .env_remove("RACKBOOT_PASSWORD")
        .output()
        .expect("run rackboot call");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        answer["ret_code"],
        0,
        "RegisterBMNodes failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

fn start_nginx(ns: &Netns, dir: &Path, root: &Path) -> Proc {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {pid};\nerror_log {tmp}/error.log;\n\
             events {{}}\n\
             http {{\n  sendfile on;\n  access_log off;\n\
               client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
               fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n\
               scgi_temp_path {tmp}/scgi;\n\
               server {{\n    listen {SRV_IP}:{NGINX_PORT};\n    root {root};\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            tmp = prefix.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let mut cmd = ns.command("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(&prefix);
    let mut p = Proc::spawn("nginx", cmd, prefix.join("stderr.log"));
    let url = format!("http://{SRV_IP}:{NGINX_PORT}/boot.ipxe");
    wait_for(&mut p, "HTTP", || {
        ns.output(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "2",
                "-w",
                "%{http_code}",
                &url,
            ],
        )
        .trim()
            == "200"
    });
    p
}

fn start_dnsmasq(ns: &Netns, dir: &Path, verbose: bool) -> Proc {
    let leases = dir.join("dnsmasq.leases");
    let _ = std::fs::remove_file(&leases);
    let mut cmd = ns.command("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=br0",
        "--bind-interfaces",
        "--user=root",
        "--dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h",
        "--dhcp-range=::,constructor:br0,ra-only",
        "--enable-ra",
        "--no-ping",
        "--dhcp-userclass=set:ipxe,iPXE",
        &format!("--dhcp-boot=tag:ipxe,http://{SRV_IP}:{NGINX_PORT}/boot.ipxe"),
        // Its log to its stderr (our file), never the host's syslog.
        "--log-facility=-",
        &format!("--dhcp-leasefile={}", leases.display()),
        &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
    ]);
    if verbose {
        cmd.arg("--log-dhcp");
    }
    let mut p = Proc::spawn("dnsmasq", cmd, dir.join("dnsmasq.log"));
    wait_for(&mut p, "DHCP", || listening(ns, "-lun", ":67 "));
    p
}

/// One boot: seconds from QEMU's spawn to each milestone seen (None: not
/// seen within the timeout), and the serial log.
fn boot(ns: &Netns, dir: &Path, run: &str, verbose: bool) -> (Vec<Option<f64>>, String) {
    let serial = dir.join(format!("serial-{run}.log"));
    let _ = std::fs::remove_file(&serial);
    let mut cmd = ns.command("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-m", "256", "-nographic", "-nodefaults"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args([
            "-boot",
            "n",
            "-no-reboot",
            "-netdev",
            "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device",
            &format!("e1000,netdev=n0,mac={VM_MAC},romfile={E1000_ROM}"),
        ]);
    if verbose {
        let now = Command::new("date")
            .args(["-u", "+%H:%M:%S.%3N"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        println!("{run}: QEMU started at {now} UTC");
    }
    let started = Instant::now();
    let mut qemu = Proc::spawn("qemu", cmd, dir.join(format!("qemu-{run}.log")));
    let mut seen: Vec<Option<f64>> = vec![None; MILESTONES.len()];
    let mut text = String::new();
    while started.elapsed() < TIMEOUT {
        text = std::fs::read_to_string(&serial).unwrap_or_default();
        let now = started.elapsed().as_secs_f64();
        for (slot, (needle, _)) in seen.iter_mut().zip(MILESTONES) {
            if slot.is_none() && text.contains(needle) {
                *slot = Some(now);
            }
        }
        if seen.last().copied().flatten().is_some() {
            break;
        }
        if let Ok(Some(status)) = qemu.server.child.try_wait() {
            eprintln!("qemu exited ({status}) before {DONE}:\n{}", qemu.log());
            break;
        }
        std::thread::sleep(POLL);
    }
    // QEMU ignores nothing we need: kill it outright.
    let _ = qemu.server.child.kill();
    let _ = qemu.server.child.wait();
    (seen, text)
}

fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} must be installed (Debian packages qemu-system-x86, ipxe-qemu, dnsmasq, nginx-light, curl)"
    );
}

fn fmt_time(t: Option<f64>) -> String {
    t.map_or_else(|| "—".to_string(), |s| format!("{s:.2}"))
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the boot bench creates network namespaces and a tap: run it as root"
    );
    for p in [
        "qemu-system-x86_64",
        "dnsmasq",
        "nginx",
        "curl",
        "ss",
        "sysctl",
    ] {
        require(p);
    }
    assert!(
        Path::new(E1000_ROM).is_file(),
        "{E1000_ROM} missing (Debian package ipxe-qemu)"
    );
    let runs: usize = std::env::var("BENCH_BOOT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let verbose = std::env::var("BENCH_VERBOSE").is_ok_and(|v| v == "1");

    let dir = tempfile::Builder::new()
        .prefix("rbb-boot-")
        .tempdir()
        .unwrap();
    // nginx workers run as www-data: they must be able to read the files.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let kernel = www.join("kernel.bin");
    write_kernel(&kernel);
    std::fs::write(
        www.join("boot.ipxe"),
        fetch_script(&format!("http://{SRV_IP}:{NGINX_PORT}/kernel.bin")),
    )
    .unwrap();

    let ns = Netns::new("boot");
    lab(&ns);
    if std::env::var("BENCH_BOOT_IPV6_FORWARDING").is_ok_and(|v| v == "1") {
        // Diagnostic: the kernel then joins ff02::2 (all routers) on br0.
        ns.output("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
        println!("(net.ipv6.conf.all.forwarding=1 in the namespace)");
    }

    println!(
        "Lab boot: QEMU (TCG, e1000 with iPXE ROM) → {} MiB kernel fetched over HTTP; {} cores",
        KERNEL_BYTES >> 20,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("seconds from QEMU's start to each serial-console milestone:\n");
    let header: Vec<String> = MILESTONES
        .iter()
        .map(|(_, label)| format!("{label:>8}"))
        .collect();
    println!("{:<5} {:<9} {}", "run", "server", header.join(" "));

    let mut totals: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut failures = 0;
    for run in 1..=runs {
        for (i, name) in ["rackboot", "dnsmasq"].into_iter().enumerate() {
            let tag = format!("{name}-{run}");
            let (seen, serial, server_log) = if i == 0 {
                let level = if verbose { "debug" } else { "info" };
                let server = start_rackboot(&ns, dir.path(), &kernel, level);
                let (seen, serial) = boot(&ns, dir.path(), &tag, verbose);
                let log = server.log();
                server.stop();
                (seen, serial, log)
            } else {
                let web = start_nginx(&ns, dir.path(), &www);
                let server = start_dnsmasq(&ns, dir.path(), verbose);
                let (seen, serial) = boot(&ns, dir.path(), &tag, verbose);
                let log = server.log();
                server.stop();
                web.stop();
                (seen, serial, log)
            };
            let cells: Vec<String> = seen
                .iter()
                .map(|t| format!("{:>8}", fmt_time(*t)))
                .collect();
            println!("{run:<5} {name:<9} {}", cells.join(" "));
            match seen.last().copied().flatten() {
                Some(t) => totals[i].push(t),
                None => {
                    failures += 1;
                    eprintln!("{name} run {run}: no {DONE} in {TIMEOUT:?}; serial log:\n{serial}");
                }
            }
            if verbose {
                println!(
                    "--- serial log, {tag} ---\n{serial}\n--- {name} log ---\n{server_log}\n---"
                );
            }
        }
    }

    let mean = |v: &Vec<f64>| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let (r, d) = (mean(&totals[0]), mean(&totals[1]));
    println!("\nQEMU start → kernel fetched, mean of the successful runs:");
    println!("  rackboot: {r:.2} s ({} of {runs} runs)", totals[0].len());
    println!(
        "  dnsmasq --no-ping --enable-ra + nginx: {d:.2} s ({} of {runs} runs)",
        totals[1].len()
    );
    println!(
        "  ratio dnsmasq ÷ rackboot: {:.2} (> 1: rackboot is faster)",
        d / r
    );
    if failures > 0 {
        println!("  {failures} run(s) never reached {DONE} (see stderr)");
    }
}
