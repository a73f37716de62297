//! DHCP answers of the PXE responder, as plain functions over a parsed
//! request, the registered nodes and the lease table (both behind narrow
//! traits), and the time.
//!
//! Full mode ([`handle`]): a registered PXE MAC gets an address (its fixed
//! one, its lease, or a free one of the range) and, when it is
//! network-booting, boot information; an unknown MAC gets nothing unless
//! discovery is on and it is network-booting.
//!
//! Proxy mode ([`handle_proxy`], ProxyDHCP per the PXE spec): beside a DHCP
//! server we do not control, a network-booting client of a registered node
//! (or any, under discovery) gets boot information without an address — an
//! OFFER on port 67 and an ACK to its request on port 4011. Nothing else is
//! ever answered. The socket loop (`transport::pxe::responder`, a layer
//! up) sends what these return where they say.

use super::firmware::{self, Boot, BootFiles};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The address range and network handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    /// Seconds a lease lasts.
    pub lease_time: u32,
}

/// What the responder is and serves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our address on the provisioning network (server id, next-server).
    pub server: Ipv4Addr,
    pub pool: Pool,
    pub files: BootFiles,
    /// `http://server:port` of the HTTP boot server.
    pub http_base: String,
    /// Answer unknown network-boot clients with the discovery boot.
    pub discovery: bool,
}

/// A registered node, as DHCP needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub fixed_address: Option<Ipv4Addr>,
}

/// Looks up registered nodes by PXE MAC (`aa:bb:cc:dd:ee:ff`).
pub trait Nodes {
    fn by_mac(&self, mac: &str) -> Option<NodeInfo>;
}

/// A lease: an address bound (or offered) to a MAC until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: i64,
    /// False while only offered.
    pub bound: bool,
    /// Held by a client that was not a registered node when it got the
    /// address (discovery): short-lived, and its offers are reclaimed when
    /// a registered node needs an address.
    pub discovery: bool,
}

/// The prefix of the lease that keeps a declined address out of the pool
/// (`declined:<ip>` in place of a MAC).
pub const QUARANTINE_PREFIX: &str = "declined:";

impl Lease {
    /// The quarantine of a declined address `ip` until `expires`.
    pub fn quarantine(ip: Ipv4Addr, expires: i64) -> Lease {
        Lease {
            mac: format!("{QUARANTINE_PREFIX}{ip}"),
            ip,
            expires,
            bound: true,
            discovery: false,
        }
    }

    /// Whether this is a declined address's quarantine, not a client's lease.
    pub fn is_quarantine(&self) -> bool {
        self.mac.starts_with(QUARANTINE_PREFIX)
    }
}

/// The lease table (persisted by the caller).
pub trait Leases {
    fn by_mac(&self, mac: &str) -> Option<Lease>;
    fn by_ip(&self, ip: Ipv4Addr) -> Option<Lease>;
    fn put(&mut self, lease: Lease);
    fn remove(&mut self, mac: &str);
    /// How many declined addresses are in quarantine (expired ones may
    /// still count until they are swept).
    fn quarantined(&self) -> usize;
    /// The quarantine that ends first.
    fn oldest_quarantine(&self) -> Option<Lease>;
    /// How many unexpired leases and offers discovery clients hold.
    fn discovery_held(&self, now: i64) -> usize;
    /// An address only offered (not bound) to a discovery client, which a
    /// registered node may take over; the oldest offer first.
    fn reclaimable(&self, now: i64) -> Option<Ipv4Addr>;
    /// A pool address nobody holds (or whose lease has expired), or `mac`'s
    /// own. The default scans the pool from its start; a table may keep a
    /// cursor so that allocation does not grow with the leases.
    fn free_address(&mut self, pool: &Pool, mac: &str, now: i64) -> Option<Ipv4Addr> {
        (u32::from(pool.start)..=u32::from(pool.end))
            .map(Ipv4Addr::from)
            .find(|ip| {
                self.by_ip(*ip)
                    .is_none_or(|l| l.expires <= now || l.mac == mac)
            })
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Reply {
        message: Box<Message>,
        to: SocketAddrV4,
    },
    /// Nothing is sent; the reason goes to the debug log.
    Ignore(&'static str),
}

/// Decodes a DHCP packet; `None` when it is malformed. dhcproto 0.15 has
/// `debug_assert!`s on option lengths (and slices `chaddr` by the packet's
/// `hlen`): a hostile packet must not take the server down, so decoding is
/// also guarded against panics.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    use dhcproto::{Decodable, Decoder};
    std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)).ok())
        .ok()
        .flatten()
        .filter(|m| m.hlen() <= 16)
}

/// A per-MAC token bucket: one looping client cannot starve the others.
#[derive(Debug, Default)]
pub struct RateLimit {
    buckets: std::collections::HashMap<String, (f64, f64)>,
}

impl RateLimit {
    /// Packets a MAC may send in a burst, and per second after that.
    pub const BURST: f64 = 10.0;
    pub const PER_SECOND: f64 = 2.0;
    /// MACs tracked at most.
    pub const MAX_TRACKED: usize = 100_000;

    /// Whether a packet from `mac` at time `now` (seconds, fractional) is
    /// answered.
    pub fn allow(&mut self, mac: &str, now: f64) -> bool {
        if self.buckets.len() > Self::MAX_TRACKED {
            // A flood of made-up MACs must not grow the map (or make every
            // packet scan it): forget the quiet ones, and everyone when that
            // is not enough (they start with a full bucket again).
            self.buckets.retain(|_, (_, t)| now - *t < 60.0);
            if self.buckets.len() > Self::MAX_TRACKED / 2 {
                self.buckets.clear();
            }
        }
        let (tokens, last) = self
            .buckets
            .entry(mac.to_string())
            .or_insert((Self::BURST, now));
        *tokens = (*tokens + (now - *last) * Self::PER_SECOND).min(Self::BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long an offer to a registered node holds its address.
const OFFER_HOLD: i64 = 60;
/// How long an offer to an unknown (discovery) client holds its address; a
/// registered node may take it over even sooner.
pub const DISCOVERY_OFFER_HOLD: i64 = 10;
/// The longest lease an unknown (discovery) client gets, seconds.
pub const DISCOVERY_LEASE_MAX: u32 = 300;
/// How long a declined address stays out of the pool, seconds.
pub const QUARANTINE_SECS: i64 = 600;
/// Declined addresses in quarantine at once; past it the quarantine that
/// ends first is lifted early, so declines can never empty the pool.
pub const QUARANTINE_MAX: usize = 64;

/// Addresses of `pool` kept for registered nodes: discovery clients may
/// hold every other one (a quarter of the range, at most 256, at least 1
/// when the range has two addresses or more).
pub fn registered_reserve(pool: &Pool) -> usize {
    let size = pool_size(pool);
    if size < 2 {
        0
    } else {
        (size / 4).clamp(1, 256)
    }
}

/// How many addresses the range has.
pub fn pool_size(pool: &Pool) -> usize {
    let (a, b) = (u32::from(pool.start), u32::from(pool.end));
    if b < a {
        0
    } else {
        (b - a) as usize + 1
    }
}

/// The client's Ethernet address. dhcproto's `chaddr()` slices by the
/// packet's `hlen` and panics past 16: a hostile `hlen` is refused first.
pub fn mac_of(msg: &Message) -> Option<String> {
    if msg.hlen() > 16 {
        return None;
    }
    let c = msg.chaddr();
    (c.len() >= 6).then(|| {
        c[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// The DHCP message type (option 53).
pub fn message_type(msg: &Message) -> Option<MessageType> {
    match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

fn requested_ip(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => (!msg.ciaddr().is_unspecified()).then(|| msg.ciaddr()),
    }
}

fn in_pool(pool: &Pool, ip: Ipv4Addr) -> bool {
    (u32::from(pool.start)..=u32::from(pool.end)).contains(&u32::from(ip))
}

/// The address for `mac`: its fixed address, its live lease, or the first
/// free address of the pool.
fn choose(
    mac: &str,
    node: Option<&NodeInfo>,
    pool: &Pool,
    leases: &mut dyn Leases,
    now: i64,
) -> Option<Ipv4Addr> {
    if let Some(ip) = node.and_then(|n| n.fixed_address) {
        return Some(ip);
    }
    if let Some(l) = leases.by_mac(mac) {
        // Keep a client on its address while the range still holds it.
        if in_pool(pool, l.ip)
            && leases
                .by_ip(l.ip)
                .is_none_or(|o| o.mac == mac || o.expires <= now)
        {
            return Some(l.ip);
        }
    }
    if node.is_none() {
        // Discovery clients never take the addresses kept for registered
        // nodes.
        if leases.discovery_held(now) + registered_reserve(pool) >= pool_size(pool) {
            return None;
        }
        return leases.free_address(pool, mac, now);
    }
    leases
        .free_address(pool, mac, now)
        .or_else(|| leases.reclaimable(now))
}

/// Where the answer goes (RFC 2131 §4.1): the relay, the client's address,
/// or broadcast.
fn destination(msg: &Message) -> SocketAddrV4 {
    if !msg.giaddr().is_unspecified() {
        SocketAddrV4::new(msg.giaddr(), 67)
    } else if !msg.ciaddr().is_unspecified() && !msg.flags().broadcast() {
        SocketAddrV4::new(msg.ciaddr(), 68)
    } else {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    }
}

fn reply(msg: &Message, kind: MessageType, s: &Settings) -> Message {
    let mut r = Message::default();
    r.set_opcode(Opcode::BootReply)
        .set_xid(msg.xid())
        .set_flags(msg.flags())
        .set_giaddr(msg.giaddr())
        .set_chaddr(&msg.chaddr()[..msg.chaddr().len().min(16)]);
    r.opts_mut().insert(DhcpOption::MessageType(kind));
    r.opts_mut().insert(DhcpOption::ServerIdentifier(s.server));
    // Option 97 is echoed when present (PXE clients check it).
    if let Some(DhcpOption::ClientMachineIdentifier(uuid)) =
        msg.opts().get(OptionCode::ClientMachineIdentifier)
    {
        r.opts_mut()
            .insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    r
}

fn add_address(r: &mut Message, ip: Ipv4Addr, s: &Settings, lease_time: u32) {
    r.set_yiaddr(ip);
    r.opts_mut().insert(DhcpOption::SubnetMask(s.pool.netmask));
    if let Some(router) = s.pool.router {
        r.opts_mut().insert(DhcpOption::Router(vec![router]));
    }
    r.opts_mut()
        .insert(DhcpOption::AddressLeaseTime(lease_time));
}

/// Adds next-server, the file field (when it fits) and option 67.
fn add_boot(r: &mut Message, boot: &Boot, s: &Settings) {
    let (file, http_client) = match boot {
        Boot::Tftp(f) => (f.as_str(), false),
        Boot::Http { url, http_client } => (url.as_str(), *http_client),
    };
    r.set_siaddr(s.server);
    if file.len() <= firmware::FILE_FIELD_MAX {
        r.set_fname_str(file);
    }
    r.opts_mut()
        .insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
    if http_client {
        r.opts_mut()
            .insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
    }
}

/// An OFFER or ACK giving `ip` (and boot information when there is some).
fn address_reply(
    msg: &Message,
    kind: MessageType,
    ip: Ipv4Addr,
    boot: Option<&Boot>,
    lease_time: u32,
    s: &Settings,
) -> Decision {
    let mut r = reply(msg, kind, s);
    add_address(&mut r, ip, s, lease_time);
    if let Some(b) = boot {
        add_boot(&mut r, b, s);
    }
    Decision::Reply {
        to: destination(msg),
        message: Box::new(r),
    }
}

/// The script a node (or an unknown machine, under discovery) boots.
pub fn script_url(s: &Settings, node: Option<&NodeInfo>) -> String {
    match node {
        Some(n) => format!(
            "{}/boot/{}.ipxe",
            s.http_base.trim_end_matches('/'),
            n.node_id
        ),
        None => format!("{}/boot/discovery.ipxe", s.http_base.trim_end_matches('/')),
    }
}

/// Which ProxyDHCP port a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyPort {
    /// 67, broadcast: DISCOVERs are answered with a ProxyDHCP OFFER.
    Dhcp,
    /// 4011, unicast from `from` (the client has its address by then):
    /// REQUESTs and INFORMs get the ACK carrying the boot file.
    BootServer { from: SocketAddrV4 },
}

/// PXE vendor options (option 43): discovery control (sub-option 6) = 8,
/// "boot the file named in this offer, no boot-server discovery or menu".
const PXE_BOOT_THE_FILE: [u8; 4] = [6, 1, 8, 255];

/// Decides the ProxyDHCP answer to `msg` arriving on `port`.
pub fn handle_proxy(msg: &Message, port: ProxyPort, s: &Settings, nodes: &dyn Nodes) -> Decision {
    if msg.opcode() != Opcode::BootRequest {
        return Decision::Ignore("not a request");
    }
    let Some(mac) = mac_of(msg) else {
        return Decision::Ignore("no (or a malformed) hardware address");
    };
    let Some(kind) = message_type(msg) else {
        return Decision::Ignore("no message type (BOOTP is not served)");
    };
    let client = firmware::classify(msg);
    if !client.network_boot() {
        return Decision::Ignore("proxy mode: not a network-boot client");
    }
    let node = nodes.by_mac(&mac);
    if node.is_none() && !s.discovery {
        return Decision::Ignore("unknown MAC");
    }
    let Some(boot) = firmware::decide(
        &client,
        &s.files,
        &s.http_base,
        &script_url(s, node.as_ref()),
    ) else {
        return Decision::Ignore("no boot file for this firmware architecture");
    };
    let (answer, to) = match (port, kind) {
        (ProxyPort::Dhcp, MessageType::Discover) => (MessageType::Offer, destination(msg)),
        (ProxyPort::BootServer { from }, MessageType::Request | MessageType::Inform) => {
            (MessageType::Ack, from)
        }
        (ProxyPort::Dhcp, _) => {
            return Decision::Ignore("proxy mode: only DISCOVERs are answered on port 67")
        }
        (ProxyPort::BootServer { .. }, _) => {
            return Decision::Ignore("proxy mode: only REQUESTs are answered on port 4011")
        }
    };
    let mut r = reply(msg, answer, s);
    r.set_ciaddr(msg.ciaddr());
    // The client recognises a ProxyDHCP answer by option 60 without an
    // address; HTTP-boot clients want "HTTPClient" (set by add_boot).
    r.opts_mut()
        .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    add_boot(&mut r, &boot, s);
    if client.pxe && !client.ipxe {
        r.opts_mut()
            .insert(DhcpOption::VendorExtensions(PXE_BOOT_THE_FILE.to_vec()));
    }
    Decision::Reply {
        to,
        message: Box::new(r),
    }
}

/// Decides the answer to `msg` at time `now` (Unix seconds).
pub fn handle(
    msg: &Message,
    now: i64,
    s: &Settings,
    nodes: &dyn Nodes,
    leases: &mut dyn Leases,
) -> Decision {
    if msg.opcode() != Opcode::BootRequest {
        return Decision::Ignore("not a request");
    }
    let Some(mac) = mac_of(msg) else {
        return Decision::Ignore("no (or a malformed) hardware address");
    };
    let Some(kind) = message_type(msg) else {
        return Decision::Ignore("no message type (BOOTP is not served)");
    };
    let client = firmware::classify(msg);
    let node = nodes.by_mac(&mac);
    // Under discovery, an unknown machine is answered when its firmware
    // network-boots, and afterwards while it holds the lease that boot got
    // (the discovery ramdisk's own DHCP, which names no architecture).
    let booted_here = || {
        leases
            .by_mac(&mac)
            .is_some_and(|l| l.bound && l.discovery && l.expires > now)
    };
    if node.is_none() && !(s.discovery && (client.network_boot() || booted_here())) {
        return Decision::Ignore("unknown MAC");
    }
    let lease_time = if node.is_none() {
        s.pool.lease_time.min(DISCOVERY_LEASE_MAX)
    } else {
        s.pool.lease_time
    };
    let boot = client
        .network_boot()
        .then(|| {
            firmware::decide(
                &client,
                &s.files,
                &s.http_base,
                &script_url(s, node.as_ref()),
            )
        })
        .flatten();
    match kind {
        MessageType::Discover => {
            let Some(ip) = choose(&mac, node.as_ref(), &s.pool, leases, now) else {
                return Decision::Ignore("the address range is exhausted");
            };
            let discovery = node.is_none();
            let hold = if discovery {
                DISCOVERY_OFFER_HOLD
            } else {
                OFFER_HOLD
            };
            // A client that already holds its address keeps its lease as
            // it is; the offer only renews nothing.
            let holds = leases
                .by_mac(&mac)
                .is_some_and(|l| l.ip == ip && l.bound && l.expires > now);
            if !holds {
                leases.put(Lease {
                    mac: mac.clone(),
                    ip,
                    expires: now + hold,
                    bound: false,
                    discovery,
                });
            }
            address_reply(msg, MessageType::Offer, ip, boot.as_ref(), lease_time, s)
        }
        MessageType::Request => {
            if let Some(DhcpOption::ServerIdentifier(id)) =
                msg.opts().get(OptionCode::ServerIdentifier)
            {
                if *id != s.server {
                    // The client took another server's offer: free ours.
                    if leases.by_mac(&mac).is_some_and(|l| !l.bound) {
                        leases.remove(&mac);
                    }
                    return Decision::Ignore("request for another server");
                }
            }
            let wanted = requested_ip(msg);
            let ours = choose(&mac, node.as_ref(), &s.pool, leases, now);
            let taken = wanted
                .and_then(|ip| leases.by_ip(ip))
                .is_some_and(|l| l.mac != mac && l.expires > now);
            let acceptable = wanted.is_some()
                && wanted == ours
                && !taken
                && (node.as_ref().and_then(|n| n.fixed_address) == wanted
                    || wanted.is_some_and(|ip| in_pool(&s.pool, ip)));
            if !acceptable {
                let mut r = reply(msg, MessageType::Nak, s);
                r.set_flags(Flags::default().set_broadcast());
                return Decision::Reply {
                    to: SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                    message: Box::new(r),
                };
            }
            let ip = wanted.unwrap_or(Ipv4Addr::UNSPECIFIED);
            leases.put(Lease {
                mac,
                ip,
                expires: now + i64::from(lease_time),
                bound: true,
                discovery: node.is_none(),
            });
            address_reply(msg, MessageType::Ack, ip, boot.as_ref(), lease_time, s)
        }
        MessageType::Release => {
            if leases.by_mac(&mac).is_some_and(|l| l.ip == msg.ciaddr()) {
                leases.remove(&mac);
            }
            Decision::Ignore("released")
        }
        MessageType::Decline => {
            // Someone else uses that address: keep it out of the pool a
            // while. Only the client holding the address may say so, and
            // only of an address of our range: anyone else could take
            // addresses (a registered node's) away with one packet.
            let Some(ip) = requested_ip(msg) else {
                return Decision::Ignore("decline without an address");
            };
            if !in_pool(&s.pool, ip) {
                return Decision::Ignore("decline of an address outside the range");
            }
            if leases.by_mac(&mac).is_none_or(|l| l.ip != ip) {
                return Decision::Ignore("decline from a client that does not hold that address");
            }
            leases.remove(&mac);
            while leases.quarantined() >= QUARANTINE_MAX {
                match leases.oldest_quarantine() {
                    Some(q) => leases.remove(&q.mac),
                    None => break,
                }
            }
            leases.put(Lease::quarantine(ip, now + QUARANTINE_SECS));
            Decision::Ignore("declined")
        }
        MessageType::Inform => {
            let mut r = reply(msg, MessageType::Ack, s);
            r.opts_mut().insert(DhcpOption::SubnetMask(s.pool.netmask));
            if let Some(b) = &boot {
                add_boot(&mut r, b, s);
            }
            Decision::Reply {
                to: destination(msg),
                message: Box::new(r),
            }
        }
        _ => Decision::Ignore("message type not handled"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Architecture;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Table(HashMap<String, Lease>);
    impl Leases for Table {
        fn by_mac(&self, mac: &str) -> Option<Lease> {
            self.0.get(mac).cloned()
        }
        fn by_ip(&self, ip: Ipv4Addr) -> Option<Lease> {
            self.0.values().find(|l| l.ip == ip).cloned()
        }
        fn put(&mut self, lease: Lease) {
            self.0.insert(lease.mac.clone(), lease);
        }
        fn remove(&mut self, mac: &str) {
            self.0.remove(mac);
        }
        fn quarantined(&self) -> usize {
            self.0.values().filter(|l| l.is_quarantine()).count()
        }
        fn oldest_quarantine(&self) -> Option<Lease> {
            self.0
                .values()
                .filter(|l| l.is_quarantine())
                .min_by_key(|l| l.expires)
                .cloned()
        }
        fn discovery_held(&self, now: i64) -> usize {
            self.0
                .values()
                .filter(|l| l.discovery && l.expires > now)
                .count()
        }
        fn reclaimable(&self, now: i64) -> Option<Ipv4Addr> {
            self.0
                .values()
                .filter(|l| l.discovery && !l.bound && l.expires > now)
                .min_by_key(|l| l.expires)
                .map(|l| l.ip)
        }
    }

    struct Registered(Vec<(&'static str, NodeInfo)>);
    impl Nodes for Registered {
        fn by_mac(&self, mac: &str) -> Option<NodeInfo> {
            self.0
                .iter()
                .find(|(m, _)| *m == mac)
                .map(|(_, n)| n.clone())
        }
    }

    fn settings() -> Settings {
        Settings {
            server: Ipv4Addr::new(10, 99, 0, 1),
            pool: Pool {
                start: Ipv4Addr::new(10, 99, 0, 100),
                end: Ipv4Addr::new(10, 99, 0, 101),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                router: Some(Ipv4Addr::new(10, 99, 0, 1)),
                lease_time: 3600,
            },
            files: BootFiles::default(),
            http_base: "http://10.99.0.1:8080".into(),
            discovery: false,
        }
    }

    fn nodes() -> Registered {
        Registered(vec![
            (
                "52:54:00:99:00:10",
                NodeInfo {
                    node_id: "n-Jr8KE6cf".into(),
                    fixed_address: None,
                },
            ),
            (
                "52:54:00:99:00:11",
                NodeInfo {
                    node_id: "n-ACHI1x2T".into(),
                    fixed_address: Some(Ipv4Addr::new(10, 99, 0, 50)),
                },
            ),
            (
                "52:54:00:99:00:12",
                NodeInfo {
                    node_id: "n-test1234".into(),
                    fixed_address: None,
                },
            ),
        ])
    }

    fn request(mac_last: u8, kind: MessageType, opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[0x52, 0x54, 0, 0x99, 0, mac_last],
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    fn pxe_bios() -> Vec<DhcpOption> {
        vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            DhcpOption::ClientSystemArchitecture(Architecture::from(0)),
            DhcpOption::ClientMachineIdentifier(vec![0; 17]),
        ]
    }

    fn reply_of(d: Decision) -> (Message, SocketAddrV4) {
        match d {
            Decision::Reply { message, to } => (*message, to),
            Decision::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn a_registered_pxe_client_gets_address_and_boot_file() {
        let (s, n, mut l) = (settings(), nodes(), Table::default());
        let (offer, to) = reply_of(handle(
            &request(0x10, MessageType::Discover, pxe_bios()),
            1000,
            &s,
            &n,
            &mut l,
        ));
        assert_eq!(to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 99, 0, 100));
        assert_eq!(offer.siaddr(), s.server);
        assert_eq!(offer.fname().unwrap(), b"undionly.kpxe");
        assert!(
            offer
                .opts()
                .get(OptionCode::ClientMachineIdentifier)
                .is_some(),
            "option 97 echoed"
        );
        let mut req = pxe_bios();
        req.push(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        req.push(DhcpOption::ServerIdentifier(s.server));
        let (ack, _) = reply_of(handle(
            &request(0x10, MessageType::Request, req),
            1001,
            &s,
            &n,
            &mut l,
        ));
        assert_eq!(message_type(&ack), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), Ipv4Addr::new(10, 99, 0, 100));
        assert!(l.by_mac("52:54:00:99:00:10").unwrap().bound);
    }

    #[test]
    fn plain_clients_unknown_macs_fixed_addresses_and_exhaustion() {
        let (s, n, mut l) = (settings(), nodes(), Table::default());
        // Registered, not network-booting: an address, no boot file.
        let (offer, _) = reply_of(handle(
            &request(0x10, MessageType::Discover, vec![]),
            1,
            &s,
            &n,
            &mut l,
        ));
        assert!(
            offer.fname().is_none_or(|f| f.iter().all(|b| *b == 0))
                && offer.opts().get(OptionCode::BootfileName).is_none()
        );
        // Unknown MAC, PXE or not: nothing.
        assert_eq!(
            handle(
                &request(0x77, MessageType::Discover, pxe_bios()),
                1,
                &s,
                &n,
                &mut l
            ),
            Decision::Ignore("unknown MAC")
        );
        // Fixed address outside the pool.
        let (offer, _) = reply_of(handle(
            &request(0x11, MessageType::Discover, vec![]),
            1,
            &s,
            &n,
            &mut l,
        ));
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 99, 0, 50));
        // A one-address range held by another client: none left.
        let mut tiny = s.clone();
        tiny.pool.end = tiny.pool.start;
        let mut t = Table::default();
        t.put(Lease {
            mac: "52:54:00:99:00:10".into(),
            ip: tiny.pool.start,
            expires: 100,
            bound: true,
            discovery: false,
        });
        assert_eq!(
            handle(
                &request(0x12, MessageType::Discover, vec![]),
                2,
                &tiny,
                &n,
                &mut t
            ),
            Decision::Ignore("the address range is exhausted")
        );
    }

    #[test]
    fn requests_for_other_addresses_are_naked_and_discovery_answers_unknown_pxe() {
        let (mut s, n, mut l) = (settings(), nodes(), Table::default());
        let req = vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            10, 99, 0, 200,
        ))];
        let (nak, to) = reply_of(handle(
            &request(0x10, MessageType::Request, req),
            1,
            &s,
            &n,
            &mut l,
        ));
        assert_eq!(message_type(&nak), Some(MessageType::Nak));
        assert_eq!(to.ip(), &Ipv4Addr::BROADCAST);
        s.discovery = true;
        let mut ipxe = pxe_bios();
        ipxe.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        let (offer, _) = reply_of(handle(
            &request(0x77, MessageType::Discover, ipxe.clone()),
            1,
            &s,
            &n,
            &mut l,
        ));
        let file = match offer.opts().get(OptionCode::BootfileName) {
            Some(DhcpOption::BootfileName(f)) => String::from_utf8(f.clone()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(file, "http://10.99.0.1:8080/boot/discovery.ipxe");
        // The discovery ramdisk's own DHCP (no architecture) is answered
        // once its firmware's boot bound a lease, and only then.
        let plain = || request(0x77, MessageType::Discover, vec![]);
        assert!(matches!(
            handle(&plain(), 1, &s, &n, &mut l),
            Decision::Ignore(_)
        ));
        let mut take = ipxe.clone();
        take.push(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        let (ack, _) = reply_of(handle(
            &request(0x77, MessageType::Request, take),
            2,
            &s,
            &n,
            &mut l,
        ));
        assert_eq!(message_type(&ack), Some(MessageType::Ack));
        let (again, _) = reply_of(handle(&plain(), 3, &s, &n, &mut l));
        assert_eq!(again.yiaddr(), offer.yiaddr());
        assert!(matches!(
            handle(
                &request(0x78, MessageType::Discover, vec![]),
                3,
                &s,
                &n,
                &mut l
            ),
            Decision::Ignore(_)
        ));
        // A relayed request is answered to the relay.
        let mut relayed = request(0x10, MessageType::Discover, vec![]);
        relayed.set_giaddr(Ipv4Addr::new(10, 98, 0, 1));
        let (_, to) = reply_of(handle(&relayed, 1, &s, &n, &mut l));
        assert_eq!(to, SocketAddrV4::new(Ipv4Addr::new(10, 98, 0, 1), 67));
    }

    #[test]
    fn random_and_truncated_packets_never_panic() {
        use dhcproto::{Encodable, Encoder};
        let (s, n) = (settings(), nodes());
        let mut l = Table::default();
        let mut good = Vec::new();
        request(0x10, MessageType::Discover, pxe_bios())
            .encode(&mut Encoder::new(&mut good))
            .unwrap();
        let mut x: u32 = 3;
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|cut| good[..cut].to_vec()).collect();
        for _ in 0..3000 {
            let mut p = good.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (x as usize >> 8) % p.len();
                p[i] = (x >> 16) as u8;
            }
            cases.push(p);
        }
        for p in cases {
            if let Some(m) = decode(&p) {
                let _ = handle(&m, 1, &s, &n, &mut l);
                let _ = handle_proxy(&m, ProxyPort::Dhcp, &s, &n);
                let from = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 7), 68);
                let _ = handle_proxy(&m, ProxyPort::BootServer { from }, &s, &n);
            }
        }
    }

    #[test]
    fn proxy_mode_gives_boot_information_without_an_address() {
        let (mut s, n) = (settings(), nodes());
        // A registered BIOS PXE client: a ProxyDHCP OFFER, no address, option
        // 60 PXEClient, discovery control "boot this file", option 97 echoed.
        let (offer, to) = reply_of(handle_proxy(
            &request(0x10, MessageType::Discover, pxe_bios()),
            ProxyPort::Dhcp,
            &s,
            &n,
        ));
        assert_eq!(to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert_eq!(message_type(&offer), Some(MessageType::Offer));
        assert!(offer.yiaddr().is_unspecified());
        assert_eq!(offer.siaddr(), s.server);
        assert_eq!(offer.fname().unwrap(), b"undionly.kpxe");
        assert!(matches!(
            offer.opts().get(OptionCode::ClassIdentifier),
            Some(DhcpOption::ClassIdentifier(c)) if c == b"PXEClient"
        ));
        assert!(matches!(
            offer.opts().get(OptionCode::VendorExtensions),
            Some(DhcpOption::VendorExtensions(v)) if v == &[6, 1, 8, 255]
        ));
        assert!(offer
            .opts()
            .get(OptionCode::ClientMachineIdentifier)
            .is_some());
        assert!(offer.opts().get(OptionCode::AddressLeaseTime).is_none());
        // Its request on 4011 is answered to where it came from; iPXE gets
        // its script URL.
        let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 7, 23), 68);
        let mut ipxe = pxe_bios();
        ipxe.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        let (ack, to) = reply_of(handle_proxy(
            &request(0x10, MessageType::Request, ipxe),
            ProxyPort::BootServer { from },
            &s,
            &n,
        ));
        assert_eq!(to, from);
        assert_eq!(message_type(&ack), Some(MessageType::Ack));
        assert!(ack.yiaddr().is_unspecified());
        assert_eq!(
            ack.fname().unwrap(),
            b"http://10.99.0.1:8080/boot/n-Jr8KE6cf.ipxe"
        );
        // Never: a plain DHCP client, a REQUEST on 67 (the real server's
        // business), a DISCOVER on 4011, an unknown MAC.
        let ignored = |d: Decision| matches!(d, Decision::Ignore(_));
        assert!(ignored(handle_proxy(
            &request(0x10, MessageType::Discover, vec![]),
            ProxyPort::Dhcp,
            &s,
            &n
        )));
        assert!(ignored(handle_proxy(
            &request(0x10, MessageType::Request, pxe_bios()),
            ProxyPort::Dhcp,
            &s,
            &n
        )));
        assert!(ignored(handle_proxy(
            &request(0x10, MessageType::Discover, pxe_bios()),
            ProxyPort::BootServer { from },
            &s,
            &n
        )));
        assert!(ignored(handle_proxy(
            &request(0x33, MessageType::Discover, pxe_bios()),
            ProxyPort::Dhcp,
            &s,
            &n
        )));
        // Under discovery an unknown PXE client gets the discovery boot.
        s.discovery = true;
        let mut ipxe = pxe_bios();
        ipxe.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        let (offer, _) = reply_of(handle_proxy(
            &request(0x33, MessageType::Discover, ipxe),
            ProxyPort::Dhcp,
            &s,
            &n,
        ));
        assert_eq!(
            offer.fname().unwrap(),
            b"http://10.99.0.1:8080/boot/discovery.ipxe"
        );
    }

    #[test]
    fn a_looping_client_is_limited_and_others_are_not() {
        let mut r = RateLimit::default();
        let answered = (0..100)
            .filter(|i| r.allow("52:54:00:00:00:01", *i as f64 * 0.01))
            .count();
        assert!(answered <= 12, "{answered} of 100 packets in 1 s answered");
        assert!(
            r.allow("52:54:00:00:00:02", 1.0),
            "another client is still answered"
        );
        assert!(
            r.allow("52:54:00:00:00:01", 10.0),
            "the looping client recovers"
        );
    }

    #[test]
    fn a_flood_of_made_up_macs_keeps_the_rate_limiter_bounded() {
        let mut r = RateLimit::default();
        for i in 0..(3 * RateLimit::MAX_TRACKED as u32) {
            assert!(r.allow(&format!("02:00:{i:08x}"), 1.0 + f64::from(i) * 1e-5));
            assert!(r.buckets.len() <= RateLimit::MAX_TRACKED + 1);
        }
    }

    #[test]
    fn a_long_boot_url_goes_in_option_67_only() {
        let (mut s, n, mut l) = (settings(), nodes(), Table::default());
        s.http_base = format!("http://10.99.0.1:8080/{}", "x".repeat(140));
        let mut ipxe = pxe_bios();
        ipxe.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        let (offer, _) = reply_of(handle(
            &request(0x10, MessageType::Discover, ipxe),
            1,
            &s,
            &n,
            &mut l,
        ));
        assert!(offer.fname().is_none_or(|f| f.iter().all(|b| *b == 0)));
        assert!(
            matches!(offer.opts().get(OptionCode::BootfileName), Some(DhcpOption::BootfileName(f)) if f.len() > 140)
        );
    }
}
