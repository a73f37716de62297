//! Connection budgets of the daemon's stream listeners (the API socket and
//! the HTTP boot server): how many file descriptors each may use
//! ([`FdBudget`], from the open-file limit, so that one listener can never
//! starve another, TFTP, the BMC sessions or the store), and the
//! connections each holds ([`Budget`]): a cap in all and per client
//! address, and when full the connection idle the longest is closed for the
//! new one — never one that is serving a request. [`ConnState`] is what a
//! connection reports (busy, idle since, last byte moved) and [`watch`]
//! ends it on the head, idle and stall timeouts; [`Metered`] counts its
//! bytes.

use super::config::Config;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Descriptors kept for everything but the stream listeners: the store's
/// files, DHCP/TFTP/RA sockets, logs, a margin.
pub const BASE_RESERVE: u64 = 64;

/// How many connections the API socket and the HTTP boot server may hold
/// at once, after the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub api_connections: usize,
    pub http_connections: usize,
    /// The open-file limit these were computed from.
    pub nofile: u64,
}

impl FdBudget {
    /// Splits what `nofile` descriptors leave after the other users (BMC
    /// sessions, scans, SSH, TFTP transfers with their files, a base
    /// reserve): a third at most for the API, the rest for HTTP, each
    /// within its configured cap and never below 8.
    pub fn compute(config: &Config, nofile: u64) -> FdBudget {
        let others = BASE_RESERVE
            + config.ipmi.max_concurrent as u64
            + config.scan.concurrency as u64
            + config.ssh.max_concurrent as u64
            + 2 * config.tftp.max_transfers as u64;
        let left = nofile.saturating_sub(others) as usize;
        let api = config.api.max_connections.min(left / 3).max(8);
        let http = config
            .http
            .max_connections
            .min(left.saturating_sub(api))
            .max(8);
        FdBudget {
            api_connections: api,
            http_connections: http,
            nofile,
        }
    }
}

/// The open-file limit in force (soft), or 1024 when it cannot be read.
pub fn nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// Raises the soft open-file limit to the hard one; returns (before, after).
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard.max(soft)))
}

/// The timeouts of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept to the first request's complete head.
    pub head: Duration,
    /// Between requests of a kept-alive connection (and for a next head).
    pub idle: Duration,
    /// While a request is served: no byte read or written for this long.
    pub stall: Duration,
}

/// What a connection tells the budget and its watchdog.
#[derive(Debug)]
pub struct ConnState {
    epoch: Instant,
    /// Requests being served (a response not yet sent whole).
    busy: AtomicU32,
    /// Requests served so far.
    served: AtomicU32,
    /// Milliseconds since `epoch` when it last became idle (or opened).
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` of the last byte read or written.
    progress: AtomicU64,
    /// Cancelled when the budget closes the connection for a new one.
    pub cancel: CancellationToken,
}

impl ConnState {
    fn new(epoch: Instant) -> ConnState {
        let now = epoch.elapsed().as_millis() as u64;
        ConnState {
            epoch,
            busy: AtomicU32::new(0),
            served: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            progress: AtomicU64::new(now),
            cancel: CancellationToken::new(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A request's head has arrived: the connection is serving it.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.progress.store(self.now(), Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Bytes moved.
    pub fn moved(&self) {
        self.progress.store(self.now(), Ordering::Relaxed);
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    fn idle_ms(&self) -> u64 {
        self.now()
            .saturating_sub(self.idle_since.load(Ordering::Relaxed))
    }

    fn stalled_ms(&self) -> u64 {
        self.now()
            .saturating_sub(self.progress.load(Ordering::Relaxed))
    }
}

/// A request in progress on a connection; dropping it (the response sent
/// whole, or abandoned) makes the connection idle again.
#[derive(Debug)]
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        s.served.fetch_add(1, Ordering::Relaxed);
        s.idle_since.store(s.now(), Ordering::Relaxed);
        s.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the connection must close: cancelled by the budget, no
/// complete first head within `head`, idle past `idle`, or no byte moved
/// for `stall` while serving.
pub async fn watch(state: Arc<ConnState>, t: Timeouts) {
    let tick = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if state.is_busy() {
            if state.stalled_ms() >= t.stall.as_millis() as u64 {
                return;
            }
        } else {
            let limit = if state.served.load(Ordering::Relaxed) == 0 {
                t.head
            } else {
                t.idle
            };
            if state.idle_ms() >= limit.as_millis() as u64 {
                return;
            }
        }
    }
}

/// Who a connection comes from, for the per-client cap: its address
/// (TCP), or its uid (a Unix socket, SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    Uid(u32),
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every connection (of this client, or in all) is serving a request.
    Busy,
}

struct Entry {
    client: Option<Client>,
    state: Arc<ConnState>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_client: HashMap<Client, usize>,
}

/// The connections of one listener.
pub struct Budget {
    max: usize,
    per_client: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

/// A connection's place in its budget, given back on drop.
pub struct Ticket {
    id: u64,
    budget: Arc<Budget>,
    pub state: Arc<ConnState>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.release(self.id);
    }
}

impl Budget {
    /// At most `max` connections, `per_client` of them from one address.
    pub fn new(max: usize, per_client: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max: max.max(1),
            per_client: per_client.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Admits a connection from `client` (None: unknown), closing the
    /// longest-idle one (of that client when it is at its cap, else of all)
    /// when full.
    pub fn admit(self: &Arc<Self>, client: Option<Client>) -> Result<Ticket, Refused> {
        let mut inner = self.lock();
        if let Some(c) = client {
            if inner.per_client.get(&c).copied().unwrap_or(0) >= self.per_client {
                evict_idlest(&mut inner, Some(c)).ok_or(Refused::Busy)?;
            }
        }
        if inner.conns.len() >= self.max {
            evict_idlest(&mut inner, None).ok_or(Refused::Busy)?;
        }
        let id = inner.next;
        inner.next += 1;
        let state = Arc::new(ConnState::new(self.epoch));
        inner.conns.insert(
            id,
            Entry {
                client,
                state: state.clone(),
            },
        );
        if let Some(c) = client {
            *inner.per_client.entry(c).or_insert(0) += 1;
        }
        Ok(Ticket {
            id,
            budget: self.clone(),
            state,
        })
    }

    /// Closes the longest-idle connection (the process ran out of
    /// descriptors); whether there was one.
    pub fn shed_one(&self) -> bool {
        evict_idlest(&mut self.lock(), None).is_some()
    }

    fn release(&self, id: u64) {
        let mut inner = self.lock();
        remove(&mut inner, id);
    }
}

fn remove(inner: &mut Inner, id: u64) -> Option<Entry> {
    let e = inner.conns.remove(&id)?;
    if let Some(c) = e.client {
        if let Some(n) = inner.per_client.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                inner.per_client.remove(&c);
            }
        }
    }
    Some(e)
}

/// Cancels and forgets the idle connection (of client `only`, or any) that
/// has been idle the longest.
fn evict_idlest(inner: &mut Inner, only: Option<Client>) -> Option<()> {
    let id = inner
        .conns
        .iter()
        .filter(|(_, e)| only.is_none() || e.client == only)
        .filter(|(_, e)| !e.state.is_busy())
        // Idle the longest; of equals, the oldest connection.
        .max_by_key(|(id, e)| (e.state.idle_ms(), std::cmp::Reverse(**id)))
        .map(|(id, _)| *id)?;
    let e = remove(inner, id)?;
    e.state.cancel.cancel();
    Some(())
}

/// A response body that keeps its connection busy until it is sent whole
/// (or dropped).
pub struct BusyBody<B> {
    inner: B,
    _busy: Busy,
}

impl<B> BusyBody<B> {
    pub fn new(inner: B, busy: Busy) -> BusyBody<B> {
        BusyBody { inner, _busy: busy }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that tells its [`ConnState`] whenever bytes move.
pub struct Metered<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Metered<S> {
        Metered { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let p = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(p, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.moved();
        }
        p
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(p, Poll::Ready(Ok(n)) if n > 0) {
            self.state.moved();
        }
        p
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(p, Poll::Ready(Ok(n)) if n > 0) {
            self.state.moved();
        }
        p
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_goes_first_and_busy_ones_never() {
        let b = Budget::new(3, 2);
        let ip = |n: u8| Some(Client::Ip(IpAddr::from([10, 0, 0, n])));
        let first = b.admit(ip(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let second = b.admit(ip(2)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let third = b.admit(ip(3)).unwrap();
        // Full: the oldest idle (first) is closed for the new one.
        let fourth = b.admit(ip(4)).unwrap();
        assert!(first.state.cancel.is_cancelled());
        assert!(!second.state.cancel.is_cancelled());
        assert_eq!(b.open(), 3);
        drop(first); // its task ends: nothing more to give back
        assert_eq!(b.open(), 3);
        // Busy connections are never closed; with all busy, new ones wait.
        let _busy = [
            second.state.begin(),
            third.state.begin(),
            fourth.state.begin(),
        ];
        assert_eq!(b.admit(ip(5)).err(), Some(Refused::Busy));
        // Per client: a client at its cap loses its own idlest connection.
        let c = Budget::new(10, 2);
        let a1 = c.admit(ip(9)).unwrap();
        let a2 = c.admit(ip(9)).unwrap();
        let other = c.admit(ip(8)).unwrap();
        let _a3 = c.admit(ip(9)).unwrap();
        assert!(a1.state.cancel.is_cancelled() && !a2.state.cancel.is_cancelled());
        assert!(!other.state.cancel.is_cancelled());
    }

    #[test]
    fn descriptors_are_shared_out_within_the_limit() {
        let c = Config::default();
        let small = FdBudget::compute(&c, 1024);
        let others = BASE_RESERVE
            + (c.ipmi.max_concurrent + c.scan.concurrency + c.ssh.max_concurrent) as u64
            + 2 * c.tftp.max_transfers as u64;
        assert!(
            (small.api_connections + small.http_connections) as u64 + others <= 1024,
            "{small:?}"
        );
        assert!(
            small.api_connections >= 100 && small.http_connections >= 300,
            "{small:?}"
        );
        let big = FdBudget::compute(&c, 65536);
        assert_eq!(
            (big.api_connections, big.http_connections),
            (c.api.max_connections, c.http.max_connections)
        );
    }
}
