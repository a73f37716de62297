//! The IPMI LAN client: drives [`super::session`] over a UDP socket with a
//! per-request timeout and retransmission, and guarantees a Close Session
//! on every exit path (success, error, timeout, cancellation: dropping an
//! open [`Session`] sends Close Session from a background task).

use super::crypto::CipherSuite;
use super::packet::{self, IpmiResponse};
use super::session::{ActiveSession, Credentials, Handshake, HandshakeError, ReplyError};
use super::sol::{self, ActivateError, SolLink, SolPacket};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A BMC to talk to.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub creds: Credentials,
    /// `None`: try 17, then 3.
    pub suite: Option<CipherSuite>,
}

/// Timeout per attempt and number of attempts.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: Duration::from_secs(1),
            attempts: 3,
        }
    }
}

/// Why a BMC operation failed, in terms an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BmcError {
    #[error("no answer from the BMC at {0}")]
    Unreachable(SocketAddr),
    #[error("login refused: {0}")]
    Auth(HandshakeError),
    #[error("the BMC refused the requested privilege level")]
    Privilege,
    #[error("the BMC has no free session")]
    NoSession,
    #[error("the BMC supports neither cipher suite 17 nor 3")]
    NoCipherSuite,
    #[error("{command} failed with completion code {code:#04x}")]
    Completion { command: &'static str, code: u8 },
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("network error: {0}")]
    Io(String),
}

impl From<HandshakeError> for BmcError {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::NoResources => BmcError::NoSession,
            HandshakeError::Privilege => BmcError::Privilege,
            HandshakeError::CipherSuite(_) => BmcError::NoCipherSuite,
            HandshakeError::Malformed(m) => BmcError::Malformed(m),
            other => BmcError::Auth(other),
        }
    }
}

fn io(e: std::io::Error) -> BmcError {
    BmcError::Io(e.to_string())
}

async fn socket_for(addr: SocketAddr) -> Result<UdpSocket, BmcError> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(addr).await.map_err(io)?;
    Ok(sock)
}

/// Sends `datagram` and waits for a reply `accept` takes, retransmitting
/// on timeout with a growing wait (×1.5 per attempt). Replies `accept`
/// refuses (`None`) are ignored; an ICMP port-unreachable ends the attempt
/// early.
async fn exchange<T>(
    sock: &UdpSocket,
    addr: SocketAddr,
    timing: Timing,
    datagram: &[u8],
    mut accept: impl FnMut(&[u8]) -> Option<Result<T, BmcError>>,
) -> Result<T, BmcError> {
    let mut buf = vec![0u8; 2048];
    let mut wait = timing.timeout;
    for _ in 0..timing.attempts.max(1) {
        sock.send(datagram).await.map_err(io)?;
        let deadline = Instant::now() + wait;
        // Back off: each retransmission waits half as long again.
        wait += wait / 2;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break, // attempt timed out
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Ok(Err(e)) => return Err(io(e)),
                Ok(Ok(n)) => {
                    if let Some(result) = accept(&buf[..n]) {
                        return result;
                    }
                }
            }
        }
    }
    Err(BmcError::Unreachable(addr))
}

/// An open RMCP+ session with one BMC.
pub struct Session {
    sock: Option<UdpSocket>,
    active: Option<ActiveSession>,
    addr: SocketAddr,
    timing: Timing,
    suite: CipherSuite,
    /// Set on the copy that closes in the background: if even that task is
    /// dropped (runtime shutdown), it must not spawn another.
    background: bool,
}

impl Session {
    /// Logs in (trying 17 then 3 unless the target names a suite) and raises
    /// the session to the credentials' privilege level.
    pub async fn open(target: &Target, timing: Timing) -> Result<Session, BmcError> {
        let suites: Vec<CipherSuite> = match target.suite {
            Some(s) => vec![s],
            None => vec![CipherSuite::Seventeen, CipherSuite::Three],
        };
        let mut last = BmcError::NoCipherSuite;
        for suite in suites {
            match Self::open_with(target, timing, suite).await {
                Ok(s) => return Ok(s),
                Err(BmcError::NoCipherSuite) => last = BmcError::NoCipherSuite,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn open_with(
        target: &Target,
        timing: Timing,
        suite: CipherSuite,
    ) -> Result<Session, BmcError> {
        let sock = socket_for(target.addr).await?;
        let console_id: u32 = rand::random::<u32>().max(1);
        let mut hs = Handshake::new(suite, target.creds.clone(), console_id, rand::random());
        let open = hs.open_session_request();
        let rakp1 = exchange(&sock, target.addr, timing, &open, |d| {
            match hs.on_open_session_response(d) {
                Err(HandshakeError::Malformed(_)) => None,
                other => Some(other.map_err(BmcError::from)),
            }
        })
        .await?;
        let rakp3 = exchange(&sock, target.addr, timing, &rakp1, |d| {
            match hs.on_rakp2(d) {
                Err(HandshakeError::Malformed(_)) => None,
                other => Some(other.map_err(BmcError::from)),
            }
        })
        .await?;
        let mut hs = Some(hs);
        let active = exchange(&sock, target.addr, timing, &rakp3, |d| {
            // RAKP4 consumes the handshake; a malformed datagram must not.
            let v = packet::parse_v20(d, None).ok()?;
            if v.payload_type != packet::payload::RAKP4 {
                return None;
            }
            Some(hs.take()?.on_rakp4(d).map_err(BmcError::from))
        })
        .await?;
        let mut session = Session {
            sock: Some(sock),
            active: Some(active),
            addr: target.addr,
            timing,
            suite,
            background: false,
        };
        // Without this, chassis control answers 0xD4 (insufficient privilege).
        let level = target.creds.privilege as u8;
        match session
            .command("Set Session Privilege Level", 0x06, 0x3B, &[level])
            .await
        {
            Ok(_) => Ok(session),
            Err(BmcError::Completion { .. }) => {
                session.close().await;
                Err(BmcError::Privilege)
            }
            Err(e) => {
                session.close().await;
                Err(e)
            }
        }
    }

    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// Sends a command and returns its response data; a non-zero completion
    /// code is an error naming `name`.
    pub async fn command(
        &mut self,
        name: &'static str,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<Vec<u8>, BmcError> {
        let r = self.raw(netfn, cmd, data).await?;
        if r.completion_code != 0 {
            return Err(BmcError::Completion {
                command: name,
                code: r.completion_code,
            });
        }
        Ok(r.data)
    }

    /// Sends a command and returns the whole response (any completion code).
    pub async fn raw(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<IpmiResponse, BmcError> {
        let (Some(sock), Some(active)) = (self.sock.as_ref(), self.active.as_mut()) else {
            return Err(BmcError::Io("session already closed".into()));
        };
        let (datagram, pending) = active.request(netfn, cmd, data, rand::random());
        exchange(sock, self.addr, self.timing, &datagram, |d| {
            match active.reply(d, pending) {
                Ok(r) => Some(Ok(r)),
                Err(ReplyError::Stale) | Err(ReplyError::Packet(_)) => None,
            }
        })
        .await
    }

    /// Closes the session on the BMC (one short attempt; the BMC reclaims it
    /// on its own timeout if even that is lost).
    pub async fn close(&mut self) {
        let id = match self.active.as_ref() {
            Some(a) => a.bmc_session_id(),
            None => return,
        };
        let timing = Timing {
            timeout: self.timing.timeout.min(Duration::from_millis(500)),
            attempts: 2,
        };
        let saved = std::mem::replace(&mut self.timing, timing);
        let _ = self.raw(0x06, 0x3C, &id.to_le_bytes()).await;
        self.timing = saved;
        self.active = None;
        self.sock = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropped while open (an error path or a cancelled future): close in
        // the background so the BMC's session slot is not leaked.
        if self.background {
            return;
        }
        if let (Some(sock), Some(active)) = (self.sock.take(), self.active.take()) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let mut s = Session {
                    sock: Some(sock),
                    active: Some(active),
                    addr: self.addr,
                    timing: self.timing,
                    suite: self.suite,
                    background: true,
                };
                handle.spawn(async move { s.close().await });
            }
        }
    }
}

/// Why a console could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Bmc(#[from] BmcError),
    #[error(transparent)]
    Activate(#[from] ActivateError),
}

/// How a console ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEnd {
    /// The caller stopped it (SOL was deactivated and the session closed).
    Stopped,
    /// The BMC ended SOL: another session took the console, or someone
    /// deactivated it.
    Deactivated,
    /// The BMC stopped answering or acknowledging.
    Lost(String),
}

/// How long an unacknowledged SOL packet waits before it is sent again.
const SOL_RETRY: Duration = Duration::from_millis(800);
/// How often an idle console shows the BMC it is alive (BMCs end sessions
/// idle for 60 s or so).
const SOL_KEEPALIVE: Duration = Duration::from_secs(15);

/// An active Serial-over-LAN console on an open session.
pub struct Console<'s> {
    session: &'s mut Session,
    link: SolLink,
}

impl Session {
    /// Activates SOL on this session. With `force`, another session's SOL
    /// is deactivated first (what `ipmitool sol deactivate` does).
    pub async fn activate_sol(&mut self, force: bool) -> Result<Console<'_>, ConsoleError> {
        if force {
            let r = self.raw(0x06, 0x49, &sol::deactivate_request()).await?;
            // 0x80: nothing was active.
            if r.completion_code != 0 && r.completion_code != 0x80 {
                return Err(BmcError::Completion {
                    command: "Deactivate Payload",
                    code: r.completion_code,
                }
                .into());
            }
        }
        let r = self.raw(0x06, 0x48, &sol::activate_request()).await?;
        let activation = sol::parse_activation(r.completion_code, &r.data)?;
        if activation.port != 0 && activation.port != self.addr.port() {
            let addr = SocketAddr::new(self.addr.ip(), activation.port);
            if let Some(sock) = self.sock.as_ref() {
                sock.connect(addr).await.map_err(io)?;
            }
            self.addr = addr;
        }
        Ok(Console {
            link: SolLink::new(&activation),
            session: self,
        })
    }
}

impl Console<'_> {
    /// Relays the console until `stop` fires or the BMC ends it: what the
    /// serial port prints goes to `output`, what arrives on `input` is
    /// typed. Deactivates SOL on every end but the BMC's own; the session
    /// stays open (its owner closes it).
    pub async fn run(
        mut self,
        input: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
        mut output: impl FnMut(&[u8]),
        stop: tokio_util::sync::CancellationToken,
    ) -> ConsoleEnd {
        let end = self.relay(input, &mut output, &stop).await;
        if end != ConsoleEnd::Deactivated {
            let _ = self
                .session
                .raw(0x06, 0x49, &sol::deactivate_request())
                .await;
        }
        end
    }

    async fn relay(
        &mut self,
        input: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
        output: &mut impl FnMut(&[u8]),
        stop: &tokio_util::sync::CancellationToken,
    ) -> ConsoleEnd {
        let Console { session, link } = self;
        let (Some(sock), Some(active)) = (session.sock.as_ref(), session.active.as_mut()) else {
            return ConsoleEnd::Lost("session already closed".into());
        };
        let mut buf = vec![0u8; 2048];
        let mut retry_at: Option<Instant> = None;
        let mut input_open = true;
        let mut last_heard = Instant::now();
        let mut keepalive = tokio::time::interval(SOL_KEEPALIVE);
        keepalive.tick().await;
        loop {
            if let Some(p) = link.next_to_send() {
                let d = active.payload_packet(sol::PAYLOAD_SOL, &p, rand::random());
                if let Err(e) = sock.send(&d).await {
                    return ConsoleEnd::Lost(e.to_string());
                }
                retry_at = Some(Instant::now() + SOL_RETRY);
            }
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return ConsoleEnd::Stopped,
                r = sock.recv(&mut buf) => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            return ConsoleEnd::Lost(format!("the BMC at {} refused the connection", session.addr));
                        }
                        Err(e) => return ConsoleEnd::Lost(e.to_string()),
                    };
                    let Ok((kind, payload)) = active.open_packet(&buf[..n]) else { continue };
                    last_heard = Instant::now();
                    if kind != sol::PAYLOAD_SOL {
                        continue; // a keepalive's answer
                    }
                    let Ok(p) = SolPacket::parse(&payload) else { continue };
                    let incoming = link.on_packet(&p);
                    if let Some(ack) = incoming.ack {
                        let d = active.payload_packet(sol::PAYLOAD_SOL, &ack, rand::random());
                        let _ = sock.send(&d).await;
                    }
                    if !incoming.data.is_empty() {
                        output(&incoming.data);
                    }
                    if incoming.deactivating {
                        return ConsoleEnd::Deactivated;
                    }
                    if !link.waiting() {
                        retry_at = None;
                    }
                }
                bytes = input.recv(), if input_open => match bytes {
                    Some(b) => link.push_input(&b),
                    None => input_open = false,
                },
                _ = retry => match link.on_timeout() {
                    Ok(Some(p)) => {
                        let d = active.payload_packet(sol::PAYLOAD_SOL, &p, rand::random());
                        let _ = sock.send(&d).await;
                        retry_at = Some(Instant::now() + SOL_RETRY);
                    }
                    Ok(None) => retry_at = None,
                    Err(e) => return ConsoleEnd::Lost(e.to_string()),
                },
                _ = keepalive.tick() => {
                    if last_heard.elapsed() > SOL_KEEPALIVE * 3 {
                        return ConsoleEnd::Lost(format!("the BMC at {} stopped answering", session.addr));
                    }
                    // Get Device ID; its answer only proves the session alive.
                    let (d, _) = active.request(0x06, 0x01, &[], rand::random());
                    let _ = sock.send(&d).await;
                }
            }
        }
    }
}

/// Get Channel Authentication Capabilities without a session: tells whether
/// an IPMI 2.0 BMC answers at `addr` (used by scans; needs no credentials).
pub async fn probe(addr: SocketAddr, timing: Timing) -> Result<Vec<u8>, BmcError> {
    let sock = socket_for(addr).await?;
    let msg = packet::ipmi_request(0x06, 0x38, 0, &[0x8E, 0x04]);
    let datagram = packet::v15_packet(&msg);
    exchange(&sock, addr, timing, &datagram, |d| {
        let m = packet::parse_v15(d).ok()?;
        let r = packet::parse_ipmi_response(m).ok()?;
        if r.cmd != 0x38 {
            return None;
        }
        Some(if r.completion_code == 0 {
            Ok(r.data)
        } else {
            Err(BmcError::Completion {
                command: "Get Channel Authentication Capabilities",
                code: r.completion_code,
            })
        })
    })
    .await
}
