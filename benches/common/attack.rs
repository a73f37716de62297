//! What an attacker on the provisioning segment (or a local user with
//! socket access) does, and the well-behaved clients measured beside it:
//! idle TCP and Unix connections held open, stalled TFTP read requests,
//! DHCP DISCOVER/DECLINE floods from random MACs, a minimal TFTP client, a
//! DHCP client, raw HTTP GETs and API calls. Plain std sockets, run on
//! threads inside a client namespace (`in_netns`). Shared by
//! `benches/flood.rs` (the figures) and `tests/hardening.rs` (the
//! behaviour) through `#[path]`. Every loop is bounded in count and time.
#![allow(dead_code)]

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Raises this process's open-file limit (root may raise the hard one).
pub fn raise_nofile(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: plain setrlimit.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Opens up to `n` TCP connections to `addr` that never send anything
/// (within `within`); returns those that connected.
pub fn hold_tcp(addr: SocketAddr, n: usize, within: Duration) -> Vec<TcpStream> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            out.push(s);
        }
    }
    out
}

/// Opens up to `n` connections to the Unix socket `path` that never send
/// anything (within `within`).
pub fn hold_unix(path: &Path, n: usize, within: Duration) -> Vec<UnixStream> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        if let Ok(s) = UnixStream::connect(path) {
            out.push(s);
        }
    }
    out
}

/// Whether the server has closed a connection we hold (EOF or reset).
pub fn closed<S: std::os::fd::AsRawFd>(s: &S) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a recv into our buffer on a descriptor we own.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock
}

/// How many of `conns` the server still keeps open.
pub fn still_open<S: std::os::fd::AsRawFd>(conns: &[S]) -> usize {
    conns.iter().filter(|c| !closed(*c)).count()
}

/// A plain `GET path` (Connection: close): (status, body bytes, time).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, usize, Duration), String> {
    let t = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out[..out.len().min(64)]).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| out.len() - i - 4)
        .unwrap_or(0);
    Ok((status, body, t.elapsed()))
}

/// One API call over the Unix socket: (response, time).
pub fn api_call(
    socket: &Path,
    body: &serde_json::Value,
) -> Result<(serde_json::Value, Duration), String> {
    let t = Instant::now();
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.to_string();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let json = text.find("\r\n\r\n").map(|i| &text[i + 4..]).unwrap_or("");
    let v = serde_json::from_str(json).map_err(|e| format!("{e}: {text}"))?;
    Ok((v, t.elapsed()))
}

fn rrq(file: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for part in [file, "octet"]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    p
}

/// Sends `count` read requests for `file` asking `timeout=255`, spread over
/// the source addresses `from`, that will never be acknowledged; returns the
/// sockets (kept open, so the server's packets are not refused by ICMP).
pub fn tftp_stall(server: SocketAddr, file: &str, from: &[IpAddr], count: usize) -> Vec<UdpSocket> {
    let req = rrq(
        file,
        &[("timeout", "255"), ("blksize", "1468"), ("tsize", "0")],
    );
    (0..count)
        .filter_map(|i| {
            let s = UdpSocket::bind(SocketAddr::new(from[i % from.len()], 0)).ok()?;
            s.send_to(&req, server).ok()?;
            Some(s)
        })
        .collect()
}

/// How many of `socks` got an answer from the server (an OACK or data).
pub fn answered(socks: &[UdpSocket]) -> usize {
    socks
        .iter()
        .filter(|s| {
            let mut b = [0u8; 4];
            s.set_nonblocking(true).ok();
            s.peek_from(&mut b).is_ok()
        })
        .count()
}

/// Fetches `file` over TFTP from `bind`, starting over when the server
/// answers "busy" or a packet is lost (2 s without one), for at most
/// `within`: (bytes, time to the whole file, tries that failed).
pub fn tftp_get(
    server: SocketAddr,
    file: &str,
    bind: IpAddr,
    within: Duration,
) -> Result<(Vec<u8>, Duration, u32), String> {
    let started = Instant::now();
    let mut busy = 0;
    loop {
        if started.elapsed() > within {
            return Err(format!(
                "no transfer within {within:?} ({busy} busy answers)"
            ));
        }
        match tftp_once(server, file, bind) {
            Ok(bytes) => return Ok((bytes, started.elapsed(), busy)),
            Err(e) if e.contains("busy") || e.contains("try again") => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            // A lost packet (this client does not retransmit): start over,
            // as a firmware client would.
            Err(e) if e.starts_with("no answer") => busy += 1,
            Err(e) => return Err(e),
        }
    }
}

fn tftp_once(server: SocketAddr, file: &str, bind: IpAddr) -> Result<Vec<u8>, String> {
    // As real clients do: the last packet (request or ACK) is sent again
    // after 500 ms without an answer, 4 times at most.
    let s = UdpSocket::bind(SocketAddr::new(bind, 0)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let mut last = (rrq(file, &[("blksize", "1468")]), server);
    s.send_to(&last.0, last.1).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut expect: u16 = 1;
    let mut buf = vec![0u8; 2048];
    let mut blksize = 512;
    let mut silent = 0;
    loop {
        let (n, from) = match s.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                silent += 1;
                if silent > 4 {
                    return Err(format!("no answer: {e}"));
                }
                s.send_to(&last.0, last.1).map_err(|e| e.to_string())?;
                continue;
            }
        };
        silent = 0;
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        match op {
            5 => {
                return Err(String::from_utf8_lossy(&buf[4..n])
                    .trim_end_matches('\0')
                    .to_string())
            }
            6 => {
                // OACK: blksize acknowledged.
                let parts: Vec<&[u8]> = buf[2..n].split(|b| *b == 0).collect();
                for kv in parts.chunks(2) {
                    if kv.len() == 2 && kv[0] == b"blksize" {
                        blksize = String::from_utf8_lossy(kv[1]).parse().unwrap_or(512);
                    }
                }
                last = (vec![0, 4, 0, 0], from);
                s.send_to(&last.0, from).map_err(|e| e.to_string())?;
            }
            3 => {
                let block = u16::from_be_bytes([buf[2], buf[3]]);
                if block == expect {
                    out.extend_from_slice(&buf[4..n]);
                    expect = expect.wrapping_add(1);
                }
                last = (vec![0, 4, buf[2], buf[3]], from);
                s.send_to(&last.0, from).map_err(|e| e.to_string())?;
                if block == expect.wrapping_sub(1) && n - 4 < blksize {
                    return Ok(out);
                }
            }
            _ => {}
        }
    }
}

/// A MAC from a number (locally administered).
pub fn random_mac(i: u32) -> [u8; 6] {
    let b = i.wrapping_mul(2_654_435_761).to_be_bytes();
    [0x02, 0x5a, b[0], b[1], b[2], b[3]]
}

/// A DHCP request from `mac` (a PXE client), asking for `ip` when given.
pub fn dhcp_packet(mac: [u8; 6], kind: MessageType, xid: u32, ip: Option<Ipv4Addr>) -> Vec<u8> {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
    ));
    m.opts_mut().insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    if let Some(ip) = ip {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    }
    let mut out = Vec::new();
    m.encode(&mut Encoder::new(&mut out)).expect("encodes");
    out
}

/// A DHCP client socket on port 68 of interface `iface` (answers are
/// broadcast there).
pub struct DhcpClient {
    sock: UdpSocket,
    server: SocketAddr,
}

impl DhcpClient {
    pub fn new(iface: &str, server: Ipv4Addr) -> DhcpClient {
        let sock = UdpSocket::bind("0.0.0.0:68").expect("bind port 68 in the client namespace");
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::BindToDevice,
            &std::ffi::OsString::from(iface),
        )
        .expect("SO_BINDTODEVICE");
        sock.set_broadcast(true).ok();
        DhcpClient {
            sock,
            server: SocketAddr::from((server, 67)),
        }
    }

    pub fn send(&self, packet: &[u8]) {
        let _ = self.sock.send_to(packet, self.server);
    }

    /// Waits (until `deadline`) for an answer of `kind` to `xid` for `mac`.
    pub fn wait(
        &self,
        xid: u32,
        mac: [u8; 6],
        kind: MessageType,
        deadline: Instant,
    ) -> Option<Message> {
        let mut buf = vec![0u8; 1500];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok();
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            let t = match m.opts().get(OptionCode::MessageType) {
                Some(DhcpOption::MessageType(t)) => *t,
                _ => continue,
            };
            if m.xid() == xid && m.chaddr().get(..6) == Some(&mac[..]) && t == kind {
                return Some(m);
            }
        }
    }

    /// DISCOVER (repeated every `every`) → OFFER → REQUEST → ACK for `mac`
    /// within `within`: the address and the time it took.
    pub fn lease(
        &self,
        mac: [u8; 6],
        xid: u32,
        every: Duration,
        within: Duration,
    ) -> Option<(Ipv4Addr, Duration)> {
        let started = Instant::now();
        let deadline = started + within;
        while Instant::now() < deadline {
            self.send(&dhcp_packet(mac, MessageType::Discover, xid, None));
            let Some(offer) = self.wait(
                xid,
                mac,
                MessageType::Offer,
                (Instant::now() + every).min(deadline),
            ) else {
                continue;
            };
            let ip = offer.yiaddr();
            let mut req = Message::decode(&mut Decoder::new(&dhcp_packet(
                mac,
                MessageType::Request,
                xid,
                Some(ip),
            )))
            .ok()?;
            if let Some(DhcpOption::ServerIdentifier(id)) =
                offer.opts().get(OptionCode::ServerIdentifier)
            {
                req.opts_mut().insert(DhcpOption::ServerIdentifier(*id));
            }
            let mut out = Vec::new();
            req.encode(&mut Encoder::new(&mut out)).ok()?;
            self.send(&out);
            if let Some(ack) = self.wait(
                xid,
                mac,
                MessageType::Ack,
                (Instant::now() + every).min(deadline),
            ) {
                return Some((ack.yiaddr(), started.elapsed()));
            }
        }
        None
    }
}

/// Sends `count` packets of `kind` from random MACs (numbered from
/// `first`) to `server`, DECLINEs naming addresses of `range`; returns
/// how many went out.
pub fn dhcp_flood(
    server: Ipv4Addr,
    kind: MessageType,
    first: u32,
    count: u32,
    range: (Ipv4Addr, u32),
) -> u32 {
    dhcp_flood_paced(server, kind, first, count, range, 0)
}

/// [`dhcp_flood`] at `per_second` packets a second at most (0: as fast as
/// the socket takes them).
pub fn dhcp_flood_paced(
    server: Ipv4Addr,
    kind: MessageType,
    first: u32,
    count: u32,
    range: (Ipv4Addr, u32),
    per_second: u32,
) -> u32 {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    let to = SocketAddr::from((server, 67));
    let mut sent = 0;
    let started = Instant::now();
    for i in first..first + count {
        if per_second > 0 && sent % 100 == 0 {
            let due = Duration::from_secs_f64(f64::from(sent) / f64::from(per_second));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let ip = (kind == MessageType::Decline)
            .then(|| Ipv4Addr::from(u32::from(range.0) + i % range.1.max(1)));
        let p = dhcp_packet(random_mac(i), kind, i, ip);
        // A full socket buffer: wait a little, never spin.
        let mut tries = 0;
        while sock.send_to(&p, to).is_err() && tries < 100 {
            tries += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        sent += 1;
    }
    sent
}

/// A process's resident memory in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
