//! Provisioning at scale, simulated (`cargo bench --bench provision`; root:
//! it creates two network namespaces joined by a veth). 1,000 nodes are
//! registered with fake BMCs (the project's RMCP+ farm, inside the server
//! namespace) and provisioned in one job by the release daemon; from the
//! client namespace each simulated machine does what a real one does on the
//! wire: DHCP (DISCOVER/REQUEST as an iPXE client), its boot script over
//! HTTP, then progress callbacks (25/50/75/100 %) and done. Meanwhile
//! GetProvisionBMNodesStatus is polled on the API socket. Prints the wall
//! time to all-active, the status call latency (p50/p99) and the daemon's
//! peak RSS, against the goals (< 60 s, p99 < 20 ms, < 200 MB).

#[path = "common/netns.rs"]
mod netns;
use netns::{in_netns, Netns, Server};

#[path = "../tests/common/fakebmc.rs"]
mod fakebmc;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: u32 = 1000;
const BMC_PORT: u16 = 21000;
const CLIENTS: usize = 64;

fn api(socket: &Path, password: &str, mut req: Value) -> Value {
    req["USER_ID"] = "admin".into();
    req["PASSWORD"] = password.into();
    let body = req.to_string();
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let b = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let (a, z) = (b.find('{').unwrap(), b.rfind('}').unwrap());
    serde_json::from_str(&b[a..=z]).unwrap()
}

/// One HTTP/1.1 request; (status, body).
fn http(method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect("10.99.0.1:8080").unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 10.99.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn mac(i: u32) -> [u8; 6] {
    [0x52, 0x54, 0x01, 0x00, (i >> 8) as u8, i as u8]
}

/// DISCOVER and REQUEST for every machine, as iPXE sends them.
fn dhcp_all(nodes: u32) -> usize {
    let sock = UdpSocket::bind("0.0.0.0:68").unwrap();
    sock.set_broadcast(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut bound = 0;
    let mut buf = [0u8; 1500];
    for i in 0..nodes {
        let send = |kind: MessageType, requested: Option<Ipv4Addr>, server: Option<Ipv4Addr>| {
            let mut m = Message::new_with_id(
                i,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                &mac(i),
            );
            m.set_opcode(Opcode::BootRequest);
            m.set_flags(dhcproto::v4::Flags::default().set_broadcast());
            m.opts_mut().insert(DhcpOption::MessageType(kind));
            m.opts_mut().insert(DhcpOption::ClassIdentifier(
                b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
            ));
            m.opts_mut().insert(DhcpOption::UserClass(b"iPXE".to_vec()));
            if let Some(ip) = requested {
                m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
            }
            if let Some(s) = server {
                m.opts_mut().insert(DhcpOption::ServerIdentifier(s));
            }
            let mut out = Vec::new();
            m.encode(&mut Encoder::new(&mut out)).unwrap();
            sock.send_to(&out, "255.255.255.255:67").unwrap();
        };
        let mut reply = |want: MessageType| -> Option<Message> {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                    continue;
                };
                let kind = m.opts().get(dhcproto::v4::OptionCode::MessageType);
                if m.xid() == i && matches!(kind, Some(DhcpOption::MessageType(k)) if *k == want) {
                    return Some(m);
                }
            }
            None
        };
        send(MessageType::Discover, None, None);
        let Some(offer) = reply(MessageType::Offer) else {
            continue;
        };
        send(
            MessageType::Request,
            Some(offer.yiaddr()),
            Some(Ipv4Addr::new(10, 99, 0, 1)),
        );
        if reply(MessageType::Ack).is_some() {
            bound += 1;
        }
    }
    bound
}

/// The deploy of one machine: its script until it is the deploy one, then
/// progress and done.
fn deploy(node_id: &str, pace: Duration) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    let callback = loop {
        let (code, script) = http("GET", &format!("/boot/{node_id}.ipxe"), "");
        if code == 200 {
            if let Some(cb) = script
                .split_whitespace()
                .find_map(|w| w.strip_prefix("rackboot.callback="))
            {
                break cb.trim_start_matches("http://10.99.0.1:8080").to_string();
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for p in [25, 50, 75, 100] {
        std::thread::sleep(pace);
        if http(
            "POST",
            &format!("{callback}/progress"),
            &format!("bytes={}&total=1048576", p * 1048576 / 100),
        )
        .0 != 200
        {
            return false;
        }
    }
    http("POST", &format!("{callback}/done"), "").0 == 200
}

fn rss_peak_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The daemon's stderr: the file named by RB_BENCH_DAEMON_LOG, else nowhere.
fn daemon_log() -> Stdio {
    match std::env::var_os("RB_BENCH_DAEMON_LOG") {
        Some(path) => std::fs::File::create(path).unwrap().into(),
        None => Stdio::null(),
    }
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the provisioning bench creates network namespaces: run as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let srv = Netns::new("psrv");
    let cli = Netns::new("pcli");
    srv.veth_to(&cli, "10.99.0.1/16", "10.99.0.2/16");
    // Broadcasts (DHCP) leave through cli0.
    cli.ip(&["route", "add", "default", "dev", "cli0"]);
    let at = fakebmc::addresses(NODES, Ipv4Addr::LOCALHOST, BMC_PORT, None);
    in_netns(&srv.0, move || fakebmc::spawn(at)).join().unwrap();
    let d = dir.path();
    for f in ["vmlinuz", "initrd.img", "undionly.kpxe"] {
        std::fs::write(d.join(f), f).unwrap();
    }
    std::fs::write(d.join("image.raw"), vec![1u8; 1 << 20]).unwrap();
    let state: PathBuf = d.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        d.join("rackboot.toml"),
        format!(
            "[daemon]\nlog_level = \"warn\"\n[dhcp]\ninterface = \"rb-srv\"\nrange_start = \"10.99.1.0\"\nrange_end = \"10.99.9.255\"\nnetmask = \"255.255.0.0\"\nrouter_advertisement = false\n\
             [tftp]\nenabled = false\n[boot]\nfiles_dir = \"{0}\"\n[deploy]\nkernel = \"{0}/vmlinuz\"\ninitrd = \"{0}/initrd.img\"\n\
             [provision]\nmax_concurrent = 1000\n[ipmi]\npower_sync_interval = 0\nmax_concurrent = 256\n\
             [[images]]\nos_version = \"sim-1.0\"\nfile = \"{0}/image.raw\"\n",
            d.display()
        ),
    )
    .unwrap();
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &srv.0,
            env!("CARGO_BIN_EXE_rackboot"),
            "serve",
            "--config",
        ])
        .arg(d.join("rackboot.toml"))
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(daemon_log())
        .spawn()
        .unwrap();
    let daemon = Server::new("rackboot", child);
    let socket = state.join("api.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(socket.exists() && state.join("admin.password").exists()) {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let password = std::fs::read_to_string(state.join("admin.password"))
        .unwrap()
        .trim()
        .to_string();
    let nodes: Vec<Value> = (0..NODES)
        .map(|i| {
            let m = mac(i);
            json!({
                "hostname": format!("sim{i:04}"), "os_version": "sim-1.0", "cpu_arch": "x86_64", "os_disk_name": "vda",
                "ipmi_network_address": "127.0.0.1", "ipmi_port": BMC_PORT as u32 + i,
                "ipmi_username": "admin", "ipmi_password": "password",
                "pxe_network_mac_addr": format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]),
            })
        })
        .collect();
    let r = api(
        &socket,
        &password,
        json!({"action": "RegisterBMNodes", "bm_nodes": nodes}),
    );
    assert_eq!(r["ret_code"], 0, "{r}");
    let ids: Vec<String> = r["node_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    let started = Instant::now();
    let r = api(
        &socket,
        &password,
        json!({"action": "ProvisionBMNodes", "node_ids": ids}),
    );
    assert_eq!(r["ret_code"], 0, "{r}");
    let job = r["job_id"].as_str().unwrap().to_string();

    // The machines, from the client side of the wire.
    // A real deploy takes minutes; RB_PACE_MS (default 200) spaces each
    // machine's reports, 0 sends them back to back (a burst no rack makes).
    let pace = Duration::from_millis(
        std::env::var("RB_PACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200),
    );
    let machines = {
        let ids = ids.clone();
        in_netns(&cli.0, move || {
            let bound = dhcp_all(NODES);
            let next = Arc::new(AtomicUsize::new(0));
            let ids = Arc::new(ids);
            let ok = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (next, ids, ok) = (next.clone(), ids.clone(), ok.clone());
                    std::thread::spawn(move || loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = ids.get(i) else { return };
                        if deploy(id, pace) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            (bound, ok.load(Ordering::Relaxed))
        })
    };

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let final_status = loop {
        let t = Instant::now();
        let s = api(
            &socket,
            &password,
            json!({"action": "GetProvisionBMNodesStatus", "job_id": job}),
        );
        latencies
            .lock()
            .unwrap()
            .push(t.elapsed().as_secs_f64() * 1000.0);
        if s["status"] == "successful"
            || s["status"] == "failed"
            || started.elapsed() > Duration::from_secs(300)
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = started.elapsed().as_secs_f64();
    let (bound, deployed) = machines.join().unwrap();
    let rss = rss_peak_mb(daemon.pid());
    let mut idle: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            api(
                &socket,
                &password,
                json!({"action": "GetProvisionBMNodesStatus", "job_id": job}),
            );
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    idle.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| l[((l.len() as f64 - 1.0) * p) as usize];
    println!(
        "{NODES} simulated nodes, one ProvisionBMNodes job, {CLIENTS} client threads, {} ms between a machine's reports",
        pace.as_millis()
    );
    println!("  DHCP leases bound: {bound}/{NODES}; deploys reported done: {deployed}/{NODES}");
    println!(
        "  job: {} ({})",
        final_status["status"], final_status["progress"]
    );
    if final_status["status"] == "successful" {
        println!(
            "  wall time to all active: {wall:.1} s (goal < 60 s: ratio {:.2})",
            wall / 60.0
        );
    } else {
        // Not a figure: say why, from the job's own log.
        println!(
            "  NOT all active: the job ended {} after {wall:.1} s; its log says:",
            final_status["status"]
        );
        let log = api(
            &socket,
            &password,
            json!({"action": "GetProvisionBMNodesLog", "job_id": job}),
        );
        let lines = log["log"].as_object().cloned().unwrap_or_default();
        for line in lines
            .values()
            .filter(|l| !l.to_string().contains("active"))
            .take(12)
        {
            println!("    {line}");
        }
    }
    println!(
        "  GetProvisionBMNodesStatus while running ({} calls): p50 {:.2} ms, p99 {:.2} ms (goal p99 < 20 ms: ratio {:.2})",
        l.len(),
        pct(0.5),
        pct(0.99),
        pct(0.99) / 20.0
    );
    println!(
        "  the same call once the job has ended: p50 {:.2} ms",
        idle[10]
    );
    println!(
        "  daemon peak RSS: {rss:.0} MB (goal < 200 MB: ratio {:.2})",
        rss / 200.0
    );
}
