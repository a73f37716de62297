//! The API transport: HTTP/1.1 on a Unix socket (an axum router served
//! by hyper over a tokio `UnixListener`, with our own accept loop),
//! `POST /` with one JSON object, JSON back with HTTP 200 whatever the
//! `ret_code`. Reads the peer's uid/pid (SO_PEERCRED) for the request log
//! and the login backoff, caps body size and requests in flight, and stops
//! accepting on cancellation while in-flight requests finish.
//!
//! Connections have a budget (`api.max_connections`, lowered to the
//! descriptors the open-file limit leaves; one uid may hold a quarter of
//! it): when full, the connection idle the longest (of that uid, when it is
//! at its share) is closed for the new one; a connection must send its first
//! request head within [`TIMEOUTS`]`.head`, the next within `.idle`, and a
//! body within [`BODY_TIMEOUT`]; a request that moves no byte for `.stall`
//! is dropped. Idle or dribbling connections cannot lock the API out.

use super::{error_response, handle};
use crate::foundation::budget::{self, Budget, Metered, Timeouts};
use crate::foundation::errors::{ApiError, RetCode};
use crate::service::app::App;
pub use crate::service::logins::Peer;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The API's connection timeouts (see the module doc).
pub const TIMEOUTS: Timeouts = Timeouts {
    head: Duration::from_secs(10),
    idle: Duration::from_secs(30),
    stall: Duration::from_secs(30),
};
/// How long a request body may take to arrive whole.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct AppState {
    app: Arc<App>,
    in_flight: Arc<Semaphore>,
}

/// Binds the API socket at `path` with permission bits `mode`. A stale socket
/// file (nobody answering) is replaced; a live one means another daemon owns
/// it, which is an error.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: remove it or set api.socket elsewhere",
                    path.display()
                ),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another rackboot daemon is already serving {}: stop it first",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: UnixListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = app.config().api.max_concurrent_requests;
    let max = app.shared.fds.api_connections;
    let state = AppState {
        app,
        in_flight: Arc::new(Semaphore::new(permits)),
    };
    let router = Router::new().fallback(api).with_state(state);
    // One uid (one local user) may hold a quarter of the budget: a flood
    // from one user evicts that user's own idle connections, not others'.
    let budget = Budget::new(max, (max / 4).max(8));
    let connections = TaskTracker::new();
    let mut refused = Refusals::default();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors: make room, never spin.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        budget.shed_one();
                    }
                    refused.note(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let cred = stream.peer_cred().ok();
        let peer = Peer {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
        };
        let Ok(ticket) = budget.admit(peer.uid.map(budget::Client::Uid)) else {
            refused.note("every connection is serving a request (api.max_connections)");
            continue;
        };
        connections.spawn(connection(
            stream,
            peer,
            ticket,
            router.clone(),
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Logs refused connections at most once every 10 s, with a count.
#[derive(Default)]
struct Refusals {
    count: u64,
    last: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, why: &str) {
        self.count += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(refused = self.count, "API connection refused: {why}");
            self.last = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// One client connection: hyper's HTTP/1.1 over the metered stream, with
/// the connection's watchdog; on shutdown, the request in flight finishes.
async fn connection(
    stream: UnixStream,
    peer: Peer,
    ticket: budget::Ticket,
    router: Router,
    shutdown: CancellationToken,
) {
    let state = ticket.state.clone();
    let io = hyper_util::rt::TokioIo::new(Metered::new(stream, state.clone()));
    let conn_state = state.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = conn_state.begin();
            let mut router = router.clone();
            async move {
                let res = tower::Service::call(&mut router, req).await;
                res.map(|r| r.map(|b| Body::new(budget::BusyBody::new(b, busy))))
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(TIMEOUTS.head)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = budget::watch(state, TIMEOUTS) => return,
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
    drop(ticket);
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn api(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    method: Method,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let started = Instant::now();
    let limit = state.app.config().api.max_request_bytes;
    if method != Method::POST {
        let e = ApiError::bad(format!(
            "use POST with one JSON object as the body (got {method}); e.g. curl --unix-socket <state-dir>/api.sock -d '{{\"action\":\"DescribeBMNodes\",…}}' http://localhost/"
        ));
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &error_response("Error", &e));
    }
    let too_large = || {
        let e = ApiError::new(
            RetCode::TooLarge,
            format!("the request body is larger than {limit} bytes (api.max_request_bytes): split the request, e.g. register nodes in smaller batches"),
        );
        tracing::warn!(peer_uid = ?peer.uid, peer_pid = ?peer.pid, limit, "request body too large");
        json_response(StatusCode::PAYLOAD_TOO_LARGE, &error_response("Error", &e))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large();
    }
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            let e = ApiError::bad(format!(
                "the request body did not arrive within {} s: send it whole at once",
                BODY_TIMEOUT.as_secs()
            ));
            tracing::warn!(peer_uid = ?peer.uid, peer_pid = ?peer.pid, "request body timed out");
            return json_response(StatusCode::REQUEST_TIMEOUT, &error_response("Error", &e));
        }
    };
    tracing::debug!(
        bytes = bytes.len(),
        peer_pid = peer.pid.unwrap_or(-1),
        "request received"
    );
    let (response, outcome) = handle(state.app.clone(), &bytes, peer, &state.in_flight).await;
    tracing::info!(
        request_id = %outcome.request_id,
        action = %outcome.action,
        user = %outcome.user_id,
        peer_uid = peer.uid.map(i64::from).unwrap_or(-1),
        peer_pid = peer.pid.unwrap_or(-1),
        ret_code = outcome.ret_code,
        ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    // Names outside the catalogue are one label: a client cannot grow the
    // metrics without end.
    let action = super::catalogue::find_action(&outcome.action).map_or("unknown", |a| a.name);
    crate::foundation::metrics::metrics()
        .api_requests
        .with_label_values(&[action, &outcome.ret_code.to_string()])
        .observe(started.elapsed().as_secs_f64());
    if outcome.ret_code == 0 {
        if let Some(viewer) = super::console::take_viewer(&outcome.request_id) {
            return console_upgrade(&headers, on_upgrade, viewer);
        }
    }
    let size: usize = response.iter().map(Vec::len).sum();
    let large = size >= RELEASE_AFTER_BYTES || bytes.len() >= RELEASE_AFTER_BYTES;
    let reply = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(Pieces::new(response)),
    )
        .into_response();
    if large {
        // Off the request path: the reply goes out while the heap is trimmed.
        tokio::task::spawn_blocking(release_free_memory);
    }
    reply
}

/// ConnectBMNodeConsole's answer: `101 Switching Protocols`, then the
/// connection carries the console's bytes both ways; without an
/// `Upgrade: rackboot-console` request there is no stream to give, and the
/// console is let go.
fn console_upgrade(
    headers: &HeaderMap,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    viewer: crate::service::console::Viewer,
) -> Response {
    let asked = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(super::console::UPGRADE_PROTOCOL));
    let Some(on_upgrade) = on_upgrade.filter(|_| asked) else {
        let e = ApiError::bad(format!(
            "ConnectBMNodeConsole streams the console over this connection: use `rackboot console <node_id>`, or send the headers `Connection: Upgrade` and `Upgrade: {}`",
            super::console::UPGRADE_PROTOCOL
        ));
        return json_response(
            StatusCode::OK,
            &error_response("ConnectBMNodeConsoleResponse", &e),
        );
    };
    tokio::spawn(splice_console(on_upgrade, viewer));
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade"),
            (header::UPGRADE, super::console::UPGRADE_PROTOCOL),
        ],
    )
        .into_response()
}

/// Relays an upgraded connection to a console until either side ends; the
/// viewer (and with the last one, the SOL session) is let go at the end.
async fn splice_console(
    on_upgrade: hyper::upgrade::OnUpgrade,
    mut viewer: crate::service::console::Viewer,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
    let input = viewer.input.clone();
    let reader = async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if input.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async {
        loop {
            tokio::select! {
                r = viewer.output.recv() => match r {
                    Ok(bytes) => {
                        if wr.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let note = format!("\r\n[rackboot] {n} chunks of console output were dropped (this terminal reads too slowly)\r\n");
                        if wr.write_all(note.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                changed = viewer.ended.changed() => {
                    if changed.is_err() || viewer.ended.borrow().is_some() {
                        break;
                    }
                }
            }
        }
        let why = viewer
            .ended
            .borrow()
            .clone()
            .unwrap_or_else(|| "console closed".to_string());
        let _ = wr
            .write_all(format!("\r\n[rackboot] {why}\r\n").as_bytes())
            .await;
        let _ = wr.shutdown().await;
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

/// A response body sent as the pieces the handler produced, with its exact
/// length known (Content-Length), without joining them into one buffer.
struct Pieces {
    pieces: std::collections::VecDeque<Vec<u8>>,
    remaining: u64,
}

impl Pieces {
    fn new(pieces: Vec<Vec<u8>>) -> Pieces {
        let remaining = pieces.iter().map(|p| p.len() as u64).sum();
        Pieces {
            pieces: pieces.into(),
            remaining,
        }
    }
}

impl http_body::Body for Pieces {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.pieces.pop_front() {
            Some(piece) => {
                self.remaining -= piece.len() as u64;
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(piece.into()))))
            }
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Requests or responses at least this large are followed by handing freed
/// heap back to the kernel.
const RELEASE_AFTER_BYTES: usize = 1024 * 1024;

/// Returns free heap pages to the kernel (glibc keeps them otherwise, and the
/// daemon's RSS would stay at its largest response's high-water mark).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases unused memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
