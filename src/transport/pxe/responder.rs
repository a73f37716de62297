//! The PXE responder's sockets, started when `[dhcp] interface` is set:
//! DHCP on UDP 67 (and 4011 in proxy mode), TFTP and HTTP on the
//! interface's IPv4 address, all bound to that interface (SO_BINDTODEVICE),
//! so nothing ever answers on another one. Decisions are
//! [`crate::foundation::dhcp::handle`]'s and [`crate::foundation::dhcp::handle_proxy`]'s; leases
//! live in memory ([`LeaseTable`]) and are written to the store before the
//! ACK that hands them out, one transaction per batch of packets. DHCP runs
//! on a thread of its own with its own store connection ([`LeaseDb`]): no
//! hop between threads lies between a packet and its answer.

use crate::foundation::config::DhcpMode;
use crate::foundation::dhcp::{self, Decision, NodeInfo, Nodes, Pool, ProxyPort, Settings};
use crate::foundation::firmware::BootFiles;
use crate::foundation::lease_table::LeaseTable;
use crate::foundation::store::{LeaseDb, PxeNode};
use crate::foundation::tftp::Limits;
use crate::service::app::App;
use crate::transport::pxe::tftp::{self as tftp, TftpSettings};
use dhcproto::{Encodable, Encoder};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// The IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Result<Ipv4Addr, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list interfaces: {e}"))?;
    let mut seen = false;
    for a in addrs {
        if a.interface_name != name {
            continue;
        }
        seen = true;
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Ok(sin.ip());
        }
    }
    Err(if seen {
        format!("interface {name} (dhcp.interface) has no IPv4 address: give it one, e.g. ip addr add 10.99.0.1/24 dev {name}")
    } else {
        format!("there is no interface {name} (dhcp.interface): check `ip link`")
    })
}

/// The Ethernet address of interface `name`, if it has one.
fn interface_mac(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    bytes.try_into().ok()
}

fn bound_socket(addr: SocketAddr, iface: &str, broadcast: bool) -> Result<UdpSocket, String> {
    let sock = bound_std_socket(addr, iface, broadcast)?;
    UdpSocket::from_std(sock).map_err(|e| e.to_string())
}

/// A non-blocking UDP socket on `addr`, bound to interface `iface`.
fn bound_std_socket(
    addr: SocketAddr,
    iface: &str,
    broadcast: bool,
) -> Result<std::net::UdpSocket, String> {
    let sock = std::net::UdpSocket::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::BindToDevice,
        &OsString::from(iface),
    )
    .map_err(|e| format!("cannot bind {addr} to interface {iface} (needs CAP_NET_RAW): {e}"))?;
    if broadcast {
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::Broadcast, &true)
            .map_err(|e| format!("cannot enable broadcast on {addr}: {e}"))?;
    }
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(sock)
}

/// Starts DHCP and TFTP when configured; returns whether they run.
pub async fn start(app: Arc<App>, shutdown: CancellationToken) -> Result<bool, String> {
    let cfg = app.config();
    let iface = cfg.dhcp.interface.clone();
    if iface.is_empty() {
        if cfg.http.address.is_empty() {
            tracing::info!("PXE services off: set [dhcp] interface to serve DHCP and TFTP");
            return Ok(false);
        }
        // Virtual-media deploys need the HTTP server only.
        let addr = SocketAddr::new(
            cfg.http
                .address
                .parse()
                .map_err(|_| "http.address is not an address".to_string())?,
            cfg.http.port,
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (http.address, http.port): {e}"))?;
        tokio::spawn(super::http::serve(listener, app.clone(), shutdown.clone()));
        tracing::info!(address = %addr, "HTTP boot server listening (no [dhcp] interface: no DHCP, TFTP or PXE)");
        return Ok(true);
    }
    let ip = interface_ipv4(&iface)?;
    // The HTTP server's address: http.address, else the interface's.
    let http_ip: Ipv4Addr = if cfg.http.address.is_empty() {
        ip
    } else {
        cfg.http
            .address
            .parse()
            .map_err(|_| "http.address is not an address".to_string())?
    };
    let d = &cfg.dhcp;
    let addr = |key: &str, v: &str| -> Result<Ipv4Addr, String> {
        if d.mode == DhcpMode::Proxy && v.is_empty() {
            return Ok(Ipv4Addr::UNSPECIFIED);
        }
        v.parse().map_err(|_| format!("{key} is not an address"))
    };
    let settings = Settings {
        server: ip,
        pool: Pool {
            start: addr("dhcp.range_start", &d.range_start)?,
            end: addr("dhcp.range_end", &d.range_end)?,
            netmask: d
                .netmask
                .parse()
                .map_err(|_| "dhcp.netmask is not a netmask".to_string())?,
            router: d.router.parse().ok(),
            lease_time: d.lease_time,
        },
        files: BootFiles {
            bios: cfg.boot.bios_file.clone(),
            uefi_x64: cfg.uefi_x64_file().to_string(),
            uefi_arm64: cfg.boot.uefi_arm64_file.clone(),
        },
        http_base: format!("http://{http_ip}:{}", cfg.http.port),
        discovery: d.discovery,
    };
    let dhcp_sock = bound_std_socket(SocketAddr::from(([0, 0, 0, 0], 67)), &iface, true)?;
    let (boot_sock, table) = match d.mode {
        DhcpMode::Proxy => (
            Some(bound_std_socket(
                SocketAddr::from((ip, 4011)),
                &iface,
                false,
            )?),
            None,
        ),
        DhcpMode::Full => {
            let leases = app.store.load_leases().await.map_err(|e| e.to_string())?;
            (None, Some(LeaseTable::new(leases)))
        }
    };
    let db = app.store.lease_db().map_err(|e| e.to_string())?;
    let dhcp_shutdown = shutdown.clone();
    let socks = Sockets {
        dhcp: dhcp_sock,
        boot_server: boot_sock,
    };
    std::thread::Builder::new()
        .name("rackboot-dhcp".into())
        .spawn({
            let intake = app.shared.intake.flag();
            move || dhcp_loop(socks, settings, table, db, dhcp_shutdown, intake)
        })
        .map_err(|e| format!("cannot start the DHCP thread: {e}"))?;
    let dhcp_where = match d.mode {
        DhcpMode::Full => format!("{iface} {ip}:67 (full)"),
        DhcpMode::Proxy => format!("{iface} {ip}:67 and :4011 (proxy)"),
    };
    app.shared.set_listening("dhcp", dhcp_where);
    if cfg.tftp.enabled {
        let tftp_sock = bound_socket(SocketAddr::from((ip, cfg.tftp.port)), &iface, false)?;
        let t = TftpSettings {
            root: PathBuf::from(&cfg.boot.files_dir),
            limits: Limits {
                max_blksize: cfg.tftp.max_blksize,
                max_windowsize: cfg.tftp.max_windowsize,
            },
            max_transfers: cfg.tftp.max_transfers,
            max_per_client: cfg.tftp.max_transfers_per_client,
            retries: 5,
            report: Some(tftp_reporter(app.clone())),
            generate: Some(tftp_generator(app.clone(), http_ip, cfg.http.port)),
            named: Some({
                let app = app.clone();
                Arc::new(move |name: &str| app.config().tftp_file(name))
            }),
        };
        if !t.root.is_dir() {
            return Err(format!(
                "boot.files_dir {} is not a directory: install Debian's ipxe package or set boot.files_dir",
                t.root.display()
            ));
        }
        app.shared
            .set_listening("tftp", format!("{iface} {ip}:{}", cfg.tftp.port));
        let tftp_shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = tftp::serve(tftp_sock, t, tftp_shutdown).await {
                tracing::error!("TFTP server stopped: {e}");
            }
        });
    }
    if d.router_advertisement {
        super::ra::start(&iface, interface_mac(&iface), shutdown.clone())?;
    }
    let http_addr = SocketAddr::from((http_ip, cfg.http.port));
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|e| format!("cannot listen on {http_addr} (http.port): {e}"))?;
    tokio::spawn(super::http::serve(listener, app.clone(), shutdown.clone()));
    let mode = match d.mode {
        DhcpMode::Full => "DHCP full mode",
        DhcpMode::Proxy => "ProxyDHCP on 67 and 4011",
    };
    tracing::info!(interface = %iface, address = %ip, tftp = cfg.tftp.enabled, http = cfg.http.port, "PXE services listening ({mode}, TFTP, HTTP)");
    Ok(true)
}

/// Adds a step to a machine's boot timeline, in the background.
fn record(app: &Arc<App>, mac: &str, kind: &'static str, detail: String) {
    let (store, mac) = (app.store.clone(), mac.to_string());
    tokio::spawn(async move {
        if let Err(e) = store.record_boot_event(mac, kind, detail).await {
            tracing::debug!("boot timeline: {e}");
        }
    });
}

/// Reports TFTP transfers to the boot timeline (the MAC from the lease of
/// the client's address).
fn tftp_reporter(app: Arc<App>) -> crate::transport::pxe::tftp::TransferHook {
    let handle = tokio::runtime::Handle::current();
    Arc::new(
        move |peer: SocketAddr, file: String, bytes: u64, ms: u64, outcome: Result<(), String>| {
            let app = app.clone();
            let result = if outcome.is_ok() { "ok" } else { "failed" };
            let m = crate::foundation::metrics::metrics();
            m.tftp_transfers.with_label_values(&[result]).inc();
            m.tftp_bytes.with_label_values(&[result]).inc_by(bytes);
            handle.spawn(async move {
                let Ok(Some(mac)) = app.store.mac_of_lease(peer.ip().to_string()).await else {
                    return;
                };
                let detail = match outcome {
                    Ok(()) => format!("{file}: {bytes} bytes in {ms} ms"),
                    Err(e) => format!("{file}: not sent ({e})"),
                };
                record(&app, &mac, "tftp", detail);
                // GRUB fetches the deploy ramdisk over TFTP under Secure Boot.
                match file.trim_start_matches('/') {
                    "deploy/kernel" => app.provision.fetched(&mac, "kernel").await,
                    "deploy/initrd" => app.provision.fetched(&mac, "initrd").await,
                    _ => {}
                }
            });
        },
    )
}

/// Per-MAC boot loader configs over TFTP (`grub/grub.cfg-01-<mac>`,
/// `pxelinux.cfg/01-<mac>`, and GRUB's first `grub/grub.cfg`), rendered on
/// request, no file written.
fn tftp_generator(
    app: Arc<App>,
    ip: Ipv4Addr,
    http_port: u16,
) -> crate::transport::pxe::tftp::Generator {
    Arc::new(move |name: String| {
        let app = app.clone();
        Box::pin(async move {
            super::http::generated_config(&app, &ip.to_string(), http_port, &name)
                .await
                .map(|(_, body)| body.into_bytes())
        })
    })
}

/// Registered nodes among the MACs of one batch of packets.
struct Known(HashMap<String, PxeNode>);

impl Nodes for Known {
    fn by_mac(&self, mac: &str) -> Option<NodeInfo> {
        self.0.get(mac).map(|n| NodeInfo {
            node_id: n.node_id.clone(),
            fixed_address: n.pxe_address.parse().ok(),
        })
    }
}

/// The DHCP sockets (non-blocking): 67, and 4011 in proxy mode.
struct Sockets {
    dhcp: std::net::UdpSocket,
    boot_server: Option<std::net::UdpSocket>,
}

impl Sockets {
    /// Waits until a socket is readable, at most `ms` milliseconds.
    fn wait(&self, ms: i32) {
        use std::os::fd::AsRawFd;
        let mut fds = vec![libc::pollfd {
            fd: self.dhcp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(b) = &self.boot_server {
            fds.push(libc::pollfd {
                fd: b.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: poll on descriptors we own, with the array's length.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms);
        }
    }
}

/// A request taken off a socket.
struct Incoming {
    msg: dhcproto::v4::Message,
    mac: String,
    /// `None`: port 67; `Some(peer)`: port 4011, from `peer`.
    boot_server_peer: Option<SocketAddrV4>,
}

/// Packets handled per batch: one node lookup, one lease write and one
/// timeline write (at most every 64 lines) per batch, however busy the network.
const BATCH: usize = 256;

fn drain(
    sock: &std::net::UdpSocket,
    boot_server: bool,
    buf: &mut [u8],
    limit: &mut dhcp::RateLimit,
    now: f64,
    out: &mut Vec<Incoming>,
) {
    while out.len() < BATCH {
        let (n, peer) = match sock.recv_from(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::debug!("dhcp: receive failed: {e}");
                return;
            }
        };
        let Some(msg) = dhcp::decode(&buf[..n]) else {
            counted("malformed", "ignored");
            tracing::debug!(%peer, "dhcp: dropped a malformed packet");
            continue;
        };
        let Some(mac) = dhcp::mac_of(&msg) else {
            tracing::debug!(%peer, "dhcp: dropped a packet without an Ethernet address");
            continue;
        };
        if !limit.allow(&mac, now) {
            counted(&upper(dhcp::message_type(&msg)), "rate_limited");
            tracing::debug!(%mac, "dhcp: rate limited");
            continue;
        }
        let boot_server_peer = match (boot_server, peer) {
            (false, _) => None,
            (true, SocketAddr::V4(p)) => Some(p),
            (true, SocketAddr::V6(_)) => continue,
        };
        out.push(Incoming {
            msg,
            mac,
            boot_server_peer,
        });
    }
}

/// Counts a DHCP packet for the metrics.
fn counted(kind: &str, answer: &str) {
    crate::foundation::metrics::metrics()
        .dhcp_packets
        .with_label_values(&[kind, answer])
        .inc();
}

fn upper<T: std::fmt::Debug>(t: Option<T>) -> String {
    t.map(|t| format!("{t:?}").to_uppercase())
        .unwrap_or_default()
}

/// The DHCP responder, on its own thread (as a single-threaded DHCP server
/// works: no hop to another thread between a packet and its answer): wait
/// for packets, take up to [`BATCH`], look their MACs up and write their
/// leases on its own store connection ([`LeaseDb`]), answer. Ends when
/// `shutdown` is cancelled (checked every 250 ms).
fn dhcp_loop(
    socks: Sockets,
    mut settings: Settings,
    mut table: Option<LeaseTable>,
    mut db: LeaseDb,
    shutdown: CancellationToken,
    intake: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    // Discovery answers: as configured, and while an intake runs.
    let discovery = settings.discovery;
    let mut buf = vec![0u8; 1500];
    let mut limit = dhcp::RateLimit::default();
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut timeline = Timeline::default();
    loop {
        if shutdown.is_cancelled() {
            while !timeline.lines.is_empty() {
                let _ = db.save(Vec::new(), timeline.take());
            }
            let _ = db.save(Vec::new(), timeline.take_unregistered());
            return;
        }
        socks.wait(timeline.wait_ms());
        settings.discovery = discovery || intake.load(std::sync::atomic::Ordering::Relaxed);
        if timeline.due() {
            if let Err(e) = db.save(Vec::new(), timeline.take()) {
                tracing::debug!("boot timeline: {e}");
            }
        }
        let now = started.elapsed().as_secs_f64();
        drain(&socks.dhcp, false, &mut buf, &mut limit, now, &mut batch);
        if let Some(s) = &socks.boot_server {
            drain(s, true, &mut buf, &mut limit, now, &mut batch);
        }
        if batch.is_empty() {
            if timeline.unregistered_due() {
                if let Err(e) = db.save(Vec::new(), timeline.take_unregistered()) {
                    tracing::debug!("boot timeline: {e}");
                }
            }
            continue;
        }
        timeline.packets_seen();
        let macs: Vec<String> = batch
            .iter()
            .map(|p| p.mac.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let known = match db.nodes_by_pxe_macs(&macs) {
            Ok(k) => Known(k),
            Err(e) => {
                tracing::warn!("dhcp: node lookup failed: {e}");
                batch.clear();
                continue;
            }
        };
        let unix_now = crate::foundation::ids::now_secs();
        let mut events = Vec::new();
        let mut replies = Vec::new();
        for p in batch.drain(..) {
            let decision = match (&mut table, p.boot_server_peer) {
                (Some(t), _) => dhcp::handle(&p.msg, unix_now, &settings, &known, t),
                (None, None) => dhcp::handle_proxy(&p.msg, ProxyPort::Dhcp, &settings, &known),
                (None, Some(from)) => {
                    dhcp::handle_proxy(&p.msg, ProxyPort::BootServer { from }, &settings, &known)
                }
            };
            let known_mac = known.0.contains_key(&p.mac);
            let client_arch = crate::foundation::firmware::classify(&p.msg).arch;
            let asked = upper(dhcp::message_type(&p.msg));
            let port = if p.boot_server_peer.is_some() {
                " (4011)"
            } else {
                ""
            };
            // The firmware's mode, and whether it is the registered one.
            let mismatch = known
                .0
                .get(&p.mac)
                .and_then(|n| crate::foundation::firmware::mode_mismatch(client_arch, n.uefi))
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            let arch = client_arch
                .map(|a| format!(", arch {a}{mismatch}"))
                .unwrap_or_default();
            match decision {
                Decision::Ignore(why) => {
                    counted(&asked, "ignored");
                    tracing::debug!(mac = %p.mac, xid = p.msg.xid(), "dhcp: no answer: {why}");
                    // Unregistered MACs: only PXE firmware (it names its
                    // architecture), what "is that the node's PXE MAC?" needs.
                    let line = (
                        p.mac,
                        "dhcp",
                        format!("{asked}{port}{arch}: no answer ({why})"),
                    );
                    if known_mac {
                        events.push(line);
                    } else if client_arch.is_some() {
                        timeline.add_unregistered(line);
                    }
                }
                Decision::Reply { message, to } => {
                    let answer = upper(dhcp::message_type(&message));
                    counted(&asked, &answer.to_lowercase());
                    let file = match message.opts().get(dhcproto::v4::OptionCode::BootfileName) {
                        Some(dhcproto::v4::DhcpOption::BootfileName(f)) => {
                            format!(", boot {}", String::from_utf8_lossy(f))
                        }
                        _ => String::new(),
                    };
                    let address = if message.yiaddr().is_unspecified() {
                        "(proxy, no address)".to_string()
                    } else {
                        message.yiaddr().to_string()
                    };
                    let line = (
                        p.mac.clone(),
                        "dhcp",
                        format!("{asked}{port}{arch} → {answer} {address}{file}"),
                    );
                    if known_mac {
                        events.push(line);
                    } else {
                        timeline.add_unregistered(line);
                    }
                    let mut out = Vec::with_capacity(576);
                    if message.encode(&mut Encoder::new(&mut out)).is_err() {
                        continue;
                    }
                    tracing::info!(mac = %p.mac, xid = p.msg.xid(), yiaddr = %message.yiaddr(), %to, "dhcp: answered");
                    let needs_lease = table.is_some()
                        && dhcp::message_type(&message) == Some(dhcproto::v4::MessageType::Ack);
                    replies.push(Outgoing {
                        bytes: out,
                        to,
                        from_boot_server: p.boot_server_peer.is_some(),
                        needs_lease,
                        mac: p.mac,
                    });
                }
            }
        }
        // What does not depend on a written lease (offers: RFC 2131 lets a
        // server forget them; NAKs; proxy answers) goes out at once; ACKs
        // only once their leases are on disk.
        let (now_out, after_save): (Vec<_>, Vec<_>) =
            replies.into_iter().partition(|r| !r.needs_lease);
        send_all(&socks, now_out);
        timeline.add(events);
        let changes = match &mut table {
            Some(t) => {
                t.sweep(unix_now);
                t.changes()
            }
            None => Vec::new(),
        };
        if !changes.is_empty() || timeline.due() {
            if let Err(e) = db.save(changes, timeline.take()) {
                tracing::warn!("dhcp: cannot save leases, not acknowledging this batch: {e}");
                continue;
            }
        }
        send_all(&socks, after_save);
    }
}

/// The DHCP exchanges' boot timeline lines waiting to be written, in two
/// queues.
///
/// - A registered node's lines ride on the next lease transaction (the one
///   an ACK waits for anyway, see [`LeaseDb::save`]), or go in one of their
///   own once they have waited [`TIMELINE_EVERY`] or number
///   [`TIMELINE_BATCH`]; at most [`TIMELINE_PENDING_MAX`] wait.
/// - Lines of unregistered MACs (discovery clients, strangers) wait until
///   the sockets have been quiet for [`UNREGISTERED_QUIET`], or at most
///   [`UNREGISTERED_EVERY`], and then go in one transaction: each line of a
///   random MAC touches its own page of the timeline's MAC index, and
///   written with every ACK they made a discovery flood's answers 1.5–3.7×
///   slower than Kea's (measured, `cargo bench --bench dhcp`). At most
///   [`UNREGISTERED_MAX`] wait; beyond, the oldest are left out (counted,
///   logged at DEBUG): the answers come first.
struct Timeline {
    lines: Vec<BootLine>,
    since: Option<std::time::Instant>,
    unregistered: std::collections::VecDeque<BootLine>,
    unregistered_since: Option<std::time::Instant>,
    last_packets: std::time::Instant,
    dropped: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            lines: Vec::new(),
            since: None,
            unregistered: std::collections::VecDeque::new(),
            unregistered_since: None,
            last_packets: std::time::Instant::now(),
            dropped: 0,
        }
    }
}

impl Timeline {
    /// A registered node's lines.
    fn add(&mut self, lines: Vec<BootLine>) {
        if lines.is_empty() {
            return;
        }
        let room = TIMELINE_PENDING_MAX.saturating_sub(self.lines.len());
        self.dropped += lines.len().saturating_sub(room) as u64;
        self.lines.extend(lines.into_iter().take(room));
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    /// A line of an unregistered MAC.
    fn add_unregistered(&mut self, line: BootLine) {
        if self.unregistered.len() >= UNREGISTERED_MAX {
            self.unregistered.pop_front();
            self.dropped += 1;
        }
        self.unregistered.push_back(line);
        self.unregistered_since
            .get_or_insert_with(std::time::Instant::now);
    }

    /// Packets arrived (the sockets are not quiet).
    fn packets_seen(&mut self) {
        self.last_packets = std::time::Instant::now();
    }

    /// How long the loop may wait for packets before some lines are due.
    fn wait_ms(&self) -> i32 {
        let mut wait = std::time::Duration::from_millis(250);
        if let Some(t) = self.since {
            wait = wait.min(TIMELINE_EVERY.saturating_sub(t.elapsed()));
        }
        if let Some(t) = self.unregistered_since {
            wait = wait
                .min(UNREGISTERED_EVERY.saturating_sub(t.elapsed()))
                .min(UNREGISTERED_QUIET.saturating_sub(self.last_packets.elapsed()));
        }
        wait.as_millis() as i32
    }

    /// Whether the registered nodes' lines should be written without a
    /// lease transaction.
    fn due(&self) -> bool {
        self.lines.len() >= TIMELINE_BATCH
            || self.since.is_some_and(|t| t.elapsed() >= TIMELINE_EVERY)
    }

    /// Whether the unregistered MACs' lines should be written now.
    fn unregistered_due(&self) -> bool {
        self.unregistered_since.is_some_and(|t| {
            t.elapsed() >= UNREGISTERED_EVERY || self.last_packets.elapsed() >= UNREGISTERED_QUIET
        })
    }

    /// The registered nodes' lines to write now (at most [`TIMELINE_BATCH`]).
    fn take(&mut self) -> Vec<BootLine> {
        let n = self.lines.len().min(TIMELINE_BATCH);
        let lines: Vec<BootLine> = self.lines.drain(..n).collect();
        self.log_dropped();
        self.since = (!self.lines.is_empty()).then(std::time::Instant::now);
        lines
    }

    /// Every waiting line of unregistered MACs.
    fn take_unregistered(&mut self) -> Vec<BootLine> {
        self.log_dropped();
        self.unregistered_since = None;
        self.unregistered.drain(..).collect()
    }

    fn log_dropped(&mut self) {
        if self.dropped > 0 {
            tracing::debug!(
                lines = self.dropped,
                "boot timeline: left out lines (a DHCP flood)"
            );
            self.dropped = 0;
        }
    }
}

/// An answer ready to go.
struct Outgoing {
    bytes: Vec<u8>,
    to: SocketAddrV4,
    from_boot_server: bool,
    /// An ACK handing out a lease: sent only once the lease is on disk.
    needs_lease: bool,
    mac: String,
}

fn send_all(socks: &Sockets, out: Vec<Outgoing>) {
    for o in out {
        let sock = match (&socks.boot_server, o.from_boot_server) {
            (Some(s), true) => s,
            _ => &socks.dhcp,
        };
        // Non-blocking: a full send buffer waits a little, never long.
        let mut tries = 0;
        loop {
            match sock.send_to(&o.bytes, SocketAddr::V4(o.to)) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                Err(e) => {
                    tracing::warn!(mac = %o.mac, "dhcp: cannot send the answer: {e}");
                    break;
                }
            }
        }
    }
}

/// One timeline line: MAC, kind, detail.
type BootLine = (String, &'static str, String);
const TIMELINE_BATCH: usize = 64;
const TIMELINE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const TIMELINE_PENDING_MAX: usize = 16 * 1024;
const UNREGISTERED_QUIET: std::time::Duration = std::time::Duration::from_millis(20);
const UNREGISTERED_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const UNREGISTERED_MAX: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(mac: &str) -> BootLine {
        (mac.to_string(), "dhcp", "DISCOVER → OFFER".to_string())
    }

    #[test]
    fn unregistered_lines_wait_for_quiet_sockets() {
        let mut t = Timeline::default();
        t.packets_seen();
        t.add_unregistered(line("52:54:00:00:00:01"));
        assert!(!t.unregistered_due(), "due while packets keep coming");
        assert!(t.wait_ms() <= UNREGISTERED_QUIET.as_millis() as i32);
        std::thread::sleep(UNREGISTERED_QUIET + Duration::from_millis(5));
        assert!(t.unregistered_due(), "not due after the sockets went quiet");
        let lines = t.take_unregistered();
        assert_eq!(lines, vec![line("52:54:00:00:00:01")]);
        assert!(!t.unregistered_due());
        assert!(t.take_unregistered().is_empty());
    }

    #[test]
    fn unregistered_lines_are_written_within_a_second_of_a_flood() {
        let mut t = Timeline::default();
        t.add_unregistered(line("52:54:00:00:00:02"));
        let start = std::time::Instant::now();
        // Packets every 5 ms: never quiet for 20 ms.
        while !t.unregistered_due() {
            t.packets_seen();
            assert!(start.elapsed() < Duration::from_secs(3), "never due");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(start.elapsed() >= UNREGISTERED_EVERY - Duration::from_millis(50));
    }

    #[test]
    fn a_flood_keeps_the_newest_unregistered_lines_and_every_registered_one() {
        let mut t = Timeline::default();
        for i in 0..UNREGISTERED_MAX + 10 {
            t.add_unregistered(line(&format!(
                "52:54:00:00:{:02x}:{:02x}",
                i / 256,
                i % 256
            )));
        }
        t.add(vec![line("52:54:00:aa:aa:aa")]);
        let unregistered = t.take_unregistered();
        assert_eq!(unregistered.len(), UNREGISTERED_MAX);
        assert_eq!(
            unregistered[0],
            line("52:54:00:00:00:0a"),
            "the oldest ten left out"
        );
        assert_eq!(t.take(), vec![line("52:54:00:aa:aa:aa")]);
    }

    #[test]
    fn registered_lines_are_due_after_a_batch_or_their_delay() {
        let mut t = Timeline::default();
        t.add(vec![line("52:54:00:aa:aa:01")]);
        assert!(!t.due());
        std::thread::sleep(TIMELINE_EVERY + Duration::from_millis(5));
        assert!(t.due());
        t.take();
        t.add(
            (0..TIMELINE_BATCH)
                .map(|_| line("52:54:00:aa:aa:02"))
                .collect(),
        );
        assert!(t.due());
    }
}
