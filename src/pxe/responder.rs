//! The PXE responder's sockets, started when `[dhcp] interface` is set:
//! DHCP (full mode) on UDP 67 and TFTP on the interface's IPv4 address, both
//! bound to that interface (SO_BINDTODEVICE), so nothing ever answers on
//! another one. Decisions are [`super::dhcp::handle`]'s; leases live in
//! memory and are written through to the store.

use super::dhcp::{self, Decision, Lease, Leases, NodeInfo, Nodes, Pool, Settings};
use super::firmware::BootFiles;
use crate::api::Ctx;
use crate::tftp::proto::Limits;
use crate::tftp::server::{self as tftp, TftpSettings};
use dhcproto::{Encodable, Encoder};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
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
    UdpSocket::from_std(sock).map_err(|e| e.to_string())
}

/// Starts DHCP and TFTP when configured; returns whether they run.
pub async fn start(ctx: Arc<Ctx>, shutdown: CancellationToken) -> Result<bool, String> {
    let cfg = ctx.config();
    let iface = cfg.dhcp.interface.clone();
    if iface.is_empty() {
        tracing::info!("PXE services off: set [dhcp] interface to serve DHCP and TFTP");
        return Ok(false);
    }
    let ip = interface_ipv4(&iface)?;
    let d = &cfg.dhcp;
    let settings = Settings {
        server: ip,
        pool: Pool {
            start: d
                .range_start
                .parse()
                .map_err(|_| "dhcp.range_start is not an address".to_string())?,
            end: d
                .range_end
                .parse()
                .map_err(|_| "dhcp.range_end is not an address".to_string())?,
            netmask: d
                .netmask
                .parse()
                .map_err(|_| "dhcp.netmask is not a netmask".to_string())?,
            router: d.router.parse().ok(),
            lease_time: d.lease_time,
        },
        files: BootFiles::default(),
        http_base: format!("http://{ip}:{}", cfg.http.port),
        discovery: d.discovery,
    };
    let dhcp_sock = bound_socket(SocketAddr::from(([0, 0, 0, 0], 67)), &iface, true)?;
    let leases: HashMap<String, Lease> = ctx
        .store
        .load_leases()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| (l.mac.clone(), l))
        .collect();
    tokio::spawn(dhcp_loop(
        ctx.clone(),
        dhcp_sock,
        settings,
        leases,
        shutdown.clone(),
    ));
    if cfg.tftp.enabled {
        let tftp_sock = bound_socket(SocketAddr::from((ip, cfg.tftp.port)), &iface, false)?;
        let t = TftpSettings {
            root: PathBuf::from(&cfg.boot.files_dir),
            limits: Limits {
                max_blksize: cfg.tftp.max_blksize,
                max_windowsize: cfg.tftp.max_windowsize,
            },
            max_transfers: cfg.tftp.max_transfers,
            retries: 5,
            report: Some(tftp_reporter(ctx.clone())),
        };
        if !t.root.is_dir() {
            return Err(format!(
                "boot.files_dir {} is not a directory: install Debian's ipxe package or set boot.files_dir",
                t.root.display()
            ));
        }
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
    let templates = Arc::new(super::templates::Templates::load()?);
    let http_addr = SocketAddr::from((ip, cfg.http.port));
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|e| format!("cannot listen on {http_addr} (http.port): {e}"))?;
    tokio::spawn(super::http::serve(
        listener,
        ctx.clone(),
        templates,
        shutdown.clone(),
    ));
    tracing::info!(interface = %iface, address = %ip, tftp = cfg.tftp.enabled, http = cfg.http.port, "PXE services listening (DHCP full mode, TFTP, HTTP)");
    Ok(true)
}

/// Adds a step to a machine's boot timeline, in the background.
fn record(ctx: &Arc<Ctx>, mac: &str, kind: &'static str, detail: String) {
    let (store, mac) = (ctx.store.clone(), mac.to_string());
    tokio::spawn(async move {
        if let Err(e) = store.record_boot_event(mac, kind, detail).await {
            tracing::debug!("boot timeline: {e}");
        }
    });
}

/// Reports TFTP transfers to the boot timeline (the MAC from the lease of
/// the client's address).
fn tftp_reporter(ctx: Arc<Ctx>) -> crate::tftp::server::TransferHook {
    let handle = tokio::runtime::Handle::current();
    Arc::new(
        move |peer: SocketAddr, file: String, bytes: u64, ms: u64, outcome: Result<(), String>| {
            let ctx = ctx.clone();
            handle.spawn(async move {
                let Ok(Some(mac)) = ctx.store.mac_of_lease(peer.ip().to_string()).await else {
                    return;
                };
                let detail = match outcome {
                    Ok(()) => format!("{file}: {bytes} bytes in {ms} ms"),
                    Err(e) => format!("{file}: not sent ({e})"),
                };
                record(&ctx, &mac, "tftp", detail);
            });
        },
    )
}

/// The lease table in memory, indexed both ways (the DHCP path looks
/// addresses up once per pool address while choosing one), remembering
/// which MACs changed so that only those are written back.
struct Table {
    leases: HashMap<String, Lease>,
    by_ip: HashMap<Ipv4Addr, String>,
    touched: HashSet<String>,
}

impl Table {
    fn new(leases: HashMap<String, Lease>) -> Table {
        let by_ip = leases.values().map(|l| (l.ip, l.mac.clone())).collect();
        Table {
            leases,
            by_ip,
            touched: HashSet::new(),
        }
    }
}

impl Leases for Table {
    fn by_mac(&self, mac: &str) -> Option<Lease> {
        self.leases.get(mac).cloned()
    }
    fn by_ip(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.by_ip
            .get(&ip)
            .and_then(|mac| self.leases.get(mac))
            .cloned()
    }
    fn put(&mut self, lease: Lease) {
        // One lease per address: a new holder replaces the old one.
        if let Some(old) = self
            .by_ip
            .get(&lease.ip)
            .filter(|m| **m != lease.mac)
            .cloned()
        {
            self.leases.remove(&old);
            self.touched.insert(old);
        }
        if let Some(prev) = self.leases.get(&lease.mac) {
            self.by_ip.remove(&prev.ip);
        }
        self.touched.insert(lease.mac.clone());
        self.by_ip.insert(lease.ip, lease.mac.clone());
        self.leases.insert(lease.mac.clone(), lease);
    }
    fn remove(&mut self, mac: &str) {
        self.touched.insert(mac.to_string());
        if let Some(l) = self.leases.remove(mac) {
            self.by_ip.remove(&l.ip);
        }
    }
}

struct OneNode(Option<(String, NodeInfo)>);

impl Nodes for OneNode {
    fn by_mac(&self, mac: &str) -> Option<NodeInfo> {
        self.0
            .as_ref()
            .filter(|(m, _)| m == mac)
            .map(|(_, n)| n.clone())
    }
}

async fn dhcp_loop(
    ctx: Arc<Ctx>,
    sock: UdpSocket,
    settings: Settings,
    leases: HashMap<String, Lease>,
    shutdown: CancellationToken,
) {
    let mut table = Table::new(leases);
    let mut buf = vec![0u8; 1500];
    let mut limit = dhcp::RateLimit::default();
    let started = std::time::Instant::now();
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("dhcp: receive failed: {e}");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Some(msg) = dhcp::decode(&buf[..n]) else {
            tracing::debug!(%peer, "dhcp: dropped a malformed packet");
            continue;
        };
        let Some(mac) = dhcp::mac_of(&msg) else {
            tracing::debug!(%peer, "dhcp: dropped a packet without an Ethernet address");
            continue;
        };
        if !limit.allow(&mac, started.elapsed().as_secs_f64()) {
            tracing::debug!(%mac, "dhcp: rate limited");
            continue;
        }
        let node = ctx.store.node_by_pxe_mac(&mac).await;
        let node_known = matches!(node, Ok(Some(_)));
        let node = match node {
            Ok(found) => found.map(|(node_id, fixed)| {
                (
                    mac.clone(),
                    NodeInfo {
                        node_id,
                        fixed_address: fixed.parse().ok(),
                    },
                )
            }),
            Err(e) => {
                tracing::warn!("dhcp: node lookup failed: {e}");
                continue;
            }
        };
        let decision = dhcp::handle(
            &msg,
            crate::ids::now_secs(),
            &settings,
            &OneNode(node),
            &mut table,
        );
        for touched in std::mem::take(&mut table.touched) {
            let lease = table.leases.get(&touched).cloned();
            if let Err(e) = ctx.store.save_lease(touched, lease).await {
                tracing::warn!("dhcp: cannot save a lease: {e}");
            }
        }
        let asked = dhcp::message_type(&msg)
            .map(|t| format!("{t:?}").to_uppercase())
            .unwrap_or_default();
        let arch = super::firmware::classify(&msg)
            .arch
            .map(|a| format!(", arch {a}"))
            .unwrap_or_default();
        let known = node_known;
        match decision {
            Decision::Ignore(why) => {
                tracing::debug!(%mac, xid = msg.xid(), "dhcp: no answer: {why}");
                if known {
                    record(
                        &ctx,
                        &mac,
                        "dhcp",
                        format!("{asked}{arch}: no answer ({why})"),
                    );
                }
            }
            Decision::Reply { message, to } => {
                let answer = dhcp::message_type(&message)
                    .map(|t| format!("{t:?}").to_uppercase())
                    .unwrap_or_default();
                let file = match message.opts().get(dhcproto::v4::OptionCode::BootfileName) {
                    Some(dhcproto::v4::DhcpOption::BootfileName(f)) => {
                        format!(", boot {}", String::from_utf8_lossy(f))
                    }
                    _ => String::new(),
                };
                record(
                    &ctx,
                    &mac,
                    "dhcp",
                    format!("{asked}{arch} → {answer} {}{file}", message.yiaddr()),
                );
                let mut out = Vec::with_capacity(576);
                if message.encode(&mut Encoder::new(&mut out)).is_err() {
                    continue;
                }
                tracing::info!(%mac, xid = msg.xid(), yiaddr = %message.yiaddr(), %to, "dhcp: answered");
                if let Err(e) = sock.send_to(&out, SocketAddr::V4(to)).await {
                    tracing::warn!(%mac, "dhcp: cannot send the answer: {e}");
                }
            }
        }
    }
}
