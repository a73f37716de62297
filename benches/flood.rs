//! The hardening figures of issue 11 (`cargo bench --bench flood`; root:
//! it creates two network namespaces joined by a veth, nothing touches a
//! real interface). The release daemon runs in the server namespace with
//! systemd's default open-file limit (1,024, set before it starts; it
//! cannot raise it since the hard limit is the same); the attacks come from
//! the client namespace (the API socket is a file: its clients are local
//! processes), bounded in count and time. Printed, each with its goal:
//!
//! 1. 5,000 idle connections to the HTTP boot port and 5,000 to the API
//!    socket: time of a plain GET of a boot file, a TFTP RRQ and an API call.
//! 2. 64 and 1,000 read requests that never acknowledge (timeout=255, from
//!    64 source addresses): how much later a real RRQ gets its file.
//! 3. 50,000 DECLINEs and 50,000 DISCOVERs from random MACs (discovery on),
//!    each stream at 10,000 packets/s (what the daemon takes in without
//!    the kernel dropping most; an unpaced burst is also sent): lease rows,
//!    boot_events rows, and how long a node registered during the flood
//!    waits for its address — once with a /16 range, once with a range of
//!    64 that the flood would empty.
//! 4. 1,000 concurrent wrong-password requests from another uid: time of a
//!    correct request, the daemon's RSS.
//!
//! Every load loop is bounded; the daemon is stopped and the namespaces are
//! deleted at the end (also on a panic).

#[path = "common/attack.rs"]
mod attack;
#[path = "common/netns.rs"]
mod netns;

use dhcproto::v4::MessageType;
use netns::{in_netns, Netns, Server};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const BOOT_FILE_BYTES: usize = 1 << 20;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Daemon {
    server: Server,
    state: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    fn start(ns: &Netns, dir: &Path, name: &str, dhcp: &str) -> Daemon {
        let state = dir.join(name);
        std::fs::create_dir_all(&state).unwrap();
        // The API socket where another uid can reach it (the guesser).
        let sockdir = dir.join(format!("{name}-sock"));
        std::fs::create_dir_all(&sockdir).unwrap();
        std::fs::set_permissions(
            &sockdir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let socket = sockdir.join("api.sock");
        let conf = dir.join(format!("{name}.toml"));
        std::fs::write(
            &conf,
            format!(
                "[daemon]\nlog_level = \"warn\"\n[api]\nsocket = \"{}\"\nsocket_mode = \"0666\"\n\
                 [dhcp]\ninterface = \"rb-srv\"\n{dhcp}\ndiscovery = true\nrouter_advertisement = false\n\
                 [boot]\nfiles_dir = \"{}\"\n[ipmi]\npower_sync_interval = 0\n",
                socket.display(),
                dir.join("files").display()
            ),
        )
        .unwrap();
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_rackboot"));
        cmd.args(["serve", "--config"])
            .arg(&conf)
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
        // systemd's default: 1,024 open files, soft and hard.
        // SAFETY: only setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 1024,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = Server::new("rackboot", cmd.spawn().expect("start rackboot"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "rackboot did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            server,
            state,
            socket,
        }
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.state.join("admin.password"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn call(&self, mut req: serde_json::Value) -> (serde_json::Value, Duration) {
        req["USER_ID"] = json!("admin");
        req["PASSWORD"] = json!(self.password());
        attack::api_call(&self.socket, &req).expect("API call")
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.server.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn counts(&self) -> (u64, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s =
                rackboot::foundation::store::Store::open(&self.state.join("rackboot.db")).unwrap();
            (
                s.lease_count().await.unwrap(),
                s.boot_event_count().await.unwrap(),
            )
        })
    }
}

fn guesser(socket: &str, count: usize) {
    // The attacker's process (uid 65534): `count` connections at once,
    // every request sent before any answer is read.
    let body =
        json!({"action": "DescribeBMNodes", "USER_ID": "admin", "PASSWORD": "not-the-password"})
            .to_string();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    attack::raise_nofile(4096);
    let mut conns = Vec::new();
    for _ in 0..count {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) {
            let _ = std::io::Write::write_all(&mut s, req.as_bytes());
            conns.push(s);
        }
    }
    let (mut busy, mut refused, mut other) = (0, 0, 0);
    for mut s in conns {
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        if out.contains("\"ret_code\":1300") {
            busy += 1;
        } else if out.contains("\"ret_code\":1200") {
            refused += 1;
        } else {
            other += 1;
        }
    }
    println!("{busy} {refused} {other}");
}

fn main() {
    if let Ok(socket) = std::env::var("RB_FLOOD_GUESSER") {
        guesser(&socket, 1000);
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the flood bench creates network namespaces: run as root"
    );
    attack::raise_nofile(65536);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let boot: Vec<u8> = (0..BOOT_FILE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(files.join("undionly.kpxe"), &boot).unwrap();
    let srv = Netns::new("fsrv");
    let cli = Netns::new("fcli");
    srv.veth_to(&cli, "10.99.0.1/16", "10.99.0.2/16");
    let sources: Vec<IpAddr> = (3..67u8).map(|i| IpAddr::from([10, 99, 0, i])).collect();
    for s in &sources {
        cli.ip(&["addr", "add", &format!("{s}/16"), "dev", "cli0"]);
    }
    let http = SocketAddr::from((SERVER, 8080));
    let tftp = SocketAddr::from((SERVER, 69));
    let me = IpAddr::from([10, 99, 0, 2]);

    let d = Daemon::start(
        &srv,
        dir.path(),
        "big",
        "range_start = \"10.99.1.0\"\nrange_end = \"10.99.255.254\"\nnetmask = \"255.255.0.0\"",
    );
    println!("rackboot under attack: daemon limited to 1,024 open files, attackers in a second namespace");
    let fds = rackboot::foundation::budget::FdBudget::compute(
        &rackboot::foundation::config::Config::default(),
        1024,
    );
    println!(
        "connection budgets from 1,024 descriptors: API {}, HTTP {} (32 per client address)",
        fds.api_connections, fds.http_connections
    );

    // Baseline.
    let get = |what: &str| {
        let (status, bytes, t) = in_netns(&cli.0, move || {
            attack::http_get(http, "/files/undionly.kpxe").unwrap()
        })
        .join()
        .unwrap();
        assert_eq!((status, bytes), (200, BOOT_FILE_BYTES), "{what}: GET");
        t
    };
    let rrq = |what: &str| {
        let (bytes, t, busy) = in_netns(&cli.0, move || {
            attack::tftp_get(tftp, "undionly.kpxe", me, Duration::from_secs(30)).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(bytes.len(), BOOT_FILE_BYTES, "{what}: RRQ");
        (t, busy)
    };
    let (g0, (r0, _), (_, a0)) = (
        get("baseline"),
        rrq("baseline"),
        d.call(json!({"action": "DescribeBMNodes"})),
    );
    println!("\n1. idle connections");
    println!(
        "   without attack:     GET 1 MiB {}, TFTP RRQ 1 MiB {}, API call {}",
        ms(g0),
        ms(r0),
        ms(a0)
    );

    // 1. 5,000 idle connections to each.
    let started = Instant::now();
    let held_http = in_netns(&cli.0, move || {
        attack::hold_tcp(http, 5000, Duration::from_secs(60))
    });
    let held_api = attack::hold_unix(&d.socket, 5000, Duration::from_secs(60));
    let held_http = held_http.join().unwrap();
    println!(
        "   held {} HTTP + {} API idle connections in {:.1} s; daemon has {} descriptors open",
        held_http.len(),
        held_api.len(),
        started.elapsed().as_secs_f64(),
        d.open_fds()
    );
    let (g1, (r1, _), (v1, a1)) = (
        get("idle"),
        rrq("idle"),
        d.call(json!({"action": "DescribeBMNodes"})),
    );
    assert_eq!(v1["ret_code"], 0);
    println!(
        "   with them:          GET 1 MiB {} (goal < 1 s), TFTP RRQ {} (goal < 1 s), API call {} (goal < 1 s)",
        ms(g1),
        ms(r1),
        ms(a1)
    );
    println!(
        "   still open (server kept): HTTP {} of {}, API {} of {}; daemon descriptors {} (limit 1,024)",
        attack::still_open(&held_http),
        held_http.len(),
        attack::still_open(&held_api),
        held_api.len(),
        d.open_fds()
    );
    drop(held_http);
    drop(held_api);

    // 2. Stalled TFTP requests.
    println!("\n2. TFTP read requests that never acknowledge (timeout=255 asked)");
    for count in [64usize, 1000] {
        let srcs = sources.clone();
        let (t, busy, slots) = in_netns(&cli.0, move || {
            let stalled = attack::tftp_stall(tftp, "undionly.kpxe", &srcs, count);
            // The real request comes right after the flood.
            let (bytes, t, busy) =
                attack::tftp_get(tftp, "undionly.kpxe", me, Duration::from_secs(30)).unwrap();
            assert_eq!(bytes.len(), BOOT_FILE_BYTES);
            (t, busy, attack::answered(&stalled))
        })
        .join()
        .unwrap();
        let delay = t.saturating_sub(r0);
        println!(
            "   {count:>5} stalled: real RRQ got 1 MiB in {} ({busy} tries refused busy or lost first), delay {} (goal ≤ 1 s); {slots} stalled requests were answered",
            ms(t),
            ms(delay)
        );
        // The stalled ones give their slots back (25 s at most).
    }

    // 3. DHCP floods.
    println!("\n3. DHCP: 50,000 DECLINEs + 50,000 DISCOVERs from random MACs (discovery on)");
    let pool_big = 65_279u64;
    dhcp_flood(&d, &cli, "/16 range", pool_big, 0x5254_0099);
    let (leases, events) = d.counts();
    println!(
        "   lease rows {leases} (goal ≤ pool {pool_big} + quarantine cap {}), boot_events {events} (goal ≤ bound {})",
        rackboot::foundation::dhcp::QUARANTINE_MAX,
        rackboot::foundation::store::EVENTS_MAX
    );

    // 4. Password guessing.
    println!("\n4. 1,000 concurrent wrong-password requests from another uid (65534)");
    let (_, t_cached) = d.call(json!({"action": "DescribeUsers"}));
    let rss_before = attack::rss_kib(d.server.pid());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("RB_FLOOD_GUESSER", &d.socket)
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = rss_before;
    let mut worst = Duration::ZERO;
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let (v, t) = d.call(json!({"action": "DescribeUsers"}));
        if v["ret_code"] == 0 {
            answered += 1;
            worst = worst.max(t);
        }
        peak = peak.max(attack::rss_kib(d.server.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = summary.split_whitespace().collect();
    println!(
        "   guesser's answers: {} busy-retry (1300), {} wrong password (1200), {} cut off",
        parts.first().unwrap_or(&"?"),
        parts.get(1).unwrap_or(&"?"),
        parts.get(2).unwrap_or(&"?")
    );
    println!(
        "   correct request meanwhile: {answered} answered, slowest {} (goal < 1 s; {} before the flood)",
        ms(worst),
        ms(t_cached)
    );
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "   daemon RSS: {} MiB before, peak {} MiB (goal < 100 MB), {} MiB after",
        rss_before / 1024,
        peak / 1024,
        attack::rss_kib(d.server.pid()) / 1024
    );
    drop(d);

    // 3b. The same flood against a range of 64 the flood alone would empty.
    println!("\n3b. the same DHCP flood, range of 64 addresses");
    let small = Daemon::start(
        &srv,
        dir.path(),
        "small",
        "range_start = \"10.99.0.100\"\nrange_end = \"10.99.0.163\"\nnetmask = \"255.255.0.0\"",
    );
    dhcp_flood(&small, &cli, "range of 64", 64, 0x5254_0098);
    let (leases, events) = small.counts();
    println!(
        "   lease rows {leases} (goal ≤ pool 64 + quarantine cap {}), boot_events {events}",
        rackboot::foundation::dhcp::QUARANTINE_MAX
    );
}

/// 50k DECLINEs and 50k DISCOVERs from two threads of the client
/// namespace; a node registered half a second in, and how long its DHCP
/// exchange takes from then.
fn dhcp_flood(d: &Daemon, cli: &Netns, what: &str, pool: u64, tag: u32) {
    let started = Instant::now();
    let decl = in_netns(&cli.0, move || {
        attack::dhcp_flood_paced(
            SERVER,
            MessageType::Decline,
            tag,
            50_000,
            (Ipv4Addr::new(10, 99, 1, 0), pool as u32),
            10_000,
        )
    });
    let disc = in_netns(&cli.0, move || {
        attack::dhcp_flood_paced(
            SERVER,
            MessageType::Discover,
            tag ^ 0xffff,
            50_000,
            (SERVER, 1),
            10_000,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let b = tag.to_be_bytes();
    let mac = [0x52, 0x54, b[2], b[3], 0x00, 0x42];
    let mac_text = mac
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let registered = Instant::now();
    let (r, _) = d.call(json!({
        "action": "RegisterBMNodes", "hostname": format!("flood{tag:x}"), "os_version": "tiny-1.0",
        "cpu_arch": "x86_64", "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin",
        "ipmi_password": "password", "pxe_network_mac_addr": mac_text,
    }));
    assert_eq!(r["ret_code"], 0, "{r}");
    let lease = in_netns(&cli.0, move || {
        let client = attack::DhcpClient::new("cli0", SERVER);
        client.lease(
            mac,
            0x4242,
            Duration::from_millis(500),
            Duration::from_secs(20),
        )
    })
    .join()
    .unwrap();
    let since_registration = registered.elapsed();
    let (sent_decl, sent_disc) = (decl.join().unwrap(), disc.join().unwrap());
    println!(
        "   {what}: sent {sent_decl} DECLINEs + {sent_disc} DISCOVERs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match lease {
        Some((ip, t)) => println!(
            "   node registered during the flood: address {ip} after {} of DHCP, {} after registration (goal ≤ 2 s)",
            ms(t),
            ms(since_registration)
        ),
        None => println!("   node registered during the flood: NO ADDRESS within 20 s"),
    }
}
