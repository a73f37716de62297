//! TFTP transfers over UDP (see [`super`]).

use crate::foundation::tftp::{self as proto, code, Limits, PathError, Request};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What a finished (or abandoned) transfer reports: peer, file name, bytes
/// of the file, milliseconds, and `Err(reason)` when it did not complete.
pub type TransferHook = Arc<dyn Fn(SocketAddr, String, u64, u64, Result<(), String>) + Send + Sync>;

/// Content generated per request (a file name → its bytes), asked before
/// the folder; `None` falls through to the folder.
pub type Generator = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>
        + Send
        + Sync,
>;

/// What the server serves and how much it allows.
#[derive(Clone)]
pub struct TftpSettings {
    /// Files are served from here only.
    pub root: PathBuf,
    pub limits: Limits,
    /// Transfers in flight; more are refused with "server busy".
    pub max_transfers: usize,
    /// Retransmissions of one window before a transfer is abandoned.
    pub retries: u32,
    /// Called when a transfer ends (the boot timeline).
    pub report: Option<TransferHook>,
    /// Files rendered per request (per-node boot loader configs).
    pub generate: Option<Generator>,
    /// Files served by name from outside `root` (the deploy ramdisk for
    /// GRUB, the Secure Boot chain), asked after `generate`.
    pub named: Option<Named>,
}

/// A file name → the local file that answers it, if any.
pub type Named = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// Serves read requests arriving on `socket` until `shutdown`.
pub async fn serve(
    socket: UdpSocket,
    settings: TftpSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let root = settings.root.canonicalize()?;
    let settings = Arc::new(TftpSettings { root, ..settings });
    let local_ip = socket.local_addr()?.ip();
    let slots = Arc::new(Semaphore::new(settings.max_transfers));
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("tftp: receive failed: {e}");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        match proto::parse_request(&buf[..n]) {
            None => tracing::debug!(%peer, "tftp: dropped a malformed request"),
            Some(Request::Write) => {
                let _ = socket
                    .send_to(
                        &proto::error(code::ACCESS_VIOLATION, "read-only server"),
                        peer,
                    )
                    .await;
            }
            Some(Request::Read(req)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    let _ = socket
                        .send_to(
                            &proto::error(code::NOT_DEFINED, "server busy, try again later"),
                            peer,
                        )
                        .await;
                    continue;
                };
                let settings = settings.clone();
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let result = transfer(local_ip, peer, req.clone(), &settings).await;
                    if let Err(e) = &result {
                        tracing::debug!(%peer, file = %req.filename, "tftp: transfer ended: {e}");
                    }
                    if let Some(report) = &settings.report {
                        let (bytes, outcome) = match result {
                            Ok(size) => (size, Ok(())),
                            Err(e) => (0, Err(e.to_string())),
                        };
                        report(
                            peer,
                            req.filename.clone(),
                            bytes,
                            started.elapsed().as_millis() as u64,
                            outcome,
                        );
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// Why a transfer ended early.
#[derive(Debug, thiserror::Error)]
enum TransferError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client stopped answering")]
    Timeout,
    #[error("the client sent an error")]
    ClientError,
    #[error("refused: {0}")]
    Refused(&'static str),
}

async fn transfer(
    local_ip: std::net::IpAddr,
    peer: SocketAddr,
    req: proto::ReadRequest,
    s: &TftpSettings,
) -> Result<u64, TransferError> {
    let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    sock.connect(peer).await?;
    if req.mode != "octet" && req.mode != "netascii" {
        return refuse(
            &sock,
            code::ILLEGAL_OPERATION,
            "only octet mode is supported",
        )
        .await;
    }
    let generated = match &s.generate {
        Some(g) => g(req.filename.trim_start_matches('/').to_string()).await,
        None => None,
    };
    let named = match (&generated, &s.named) {
        (None, Some(n)) => n(req.filename.trim_start_matches('/')),
        _ => None,
    };
    let (size, mut file): (u64, Box<dyn tokio::io::AsyncRead + Unpin + Send>) = match generated {
        Some(bytes) => (bytes.len() as u64, Box::new(std::io::Cursor::new(bytes))),
        None => {
            let resolved = match named {
                Some(p) => Ok(p),
                None => proto::resolve(&s.root, &req.filename),
            };
            let path = match resolved {
                Ok(p) => p,
                Err(PathError::NotFound) => {
                    return refuse(&sock, code::FILE_NOT_FOUND, "file not found").await
                }
                Err(PathError::Forbidden) => {
                    return refuse(&sock, code::ACCESS_VIOLATION, "access violation").await
                }
            };
            let file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(_) => return refuse(&sock, code::FILE_NOT_FOUND, "file not found").await,
            };
            let size = file.metadata().await?.len();
            // Large reads: each read of a tokio file is a trip to the
            // blocking pool.
            (
                size,
                Box::new(tokio::io::BufReader::with_capacity(256 * 1024, file)),
            )
        }
    };
    let n = proto::negotiate(&req, size, s.limits);
    let wait = Duration::from_secs(u64::from(n.timeout));
    let mut buf = vec![0u8; 1024];

    if !n.oack.is_empty() {
        let oack = proto::oack(&n.oack);
        let mut tries = 0;
        loop {
            sock.send(&oack).await?;
            match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
                Ok(Ok(len)) if proto::parse_ack(&buf[..len]) == Some(0) => break,
                Ok(Ok(len)) if proto::is_error(&buf[..len]) => {
                    return Err(TransferError::ClientError)
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    tries += 1;
                    if tries > s.retries {
                        return Err(TransferError::Timeout);
                    }
                }
            }
        }
    }

    let blksize = usize::from(n.blksize);
    let window = u64::from(n.windowsize);
    // Blocks 1..=total; the last is shorter than blksize (maybe empty).
    let total = size / blksize as u64 + 1;
    let mut acked: u64 = 0;
    // Blocks read but not yet acknowledged, oldest first (at most `window`).
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut next_read: u64 = 1;
    let mut tries = 0;
    while acked < total {
        while next_read <= total && next_read <= acked + window {
            let mut block = vec![0u8; blksize];
            let mut filled = 0;
            while filled < blksize {
                let r = file.read(&mut block[filled..]).await?;
                if r == 0 {
                    break;
                }
                filled += r;
            }
            block.truncate(filled);
            pending.push_back(block);
            next_read += 1;
        }
        for (i, block) in pending.iter().enumerate() {
            let number = (acked + 1 + i as u64) as u16; // block numbers wrap at 65535
            sock.send(&proto::data(number, block)).await?;
        }
        // Wait for the ACK that moves the window; stale ones are ignored.
        let deadline = tokio::time::Instant::now() + wait;
        let mut moved = false;
        while !moved {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(len)) => {
                    if proto::is_error(&buf[..len]) {
                        return Err(TransferError::ClientError);
                    }
                    let Some(k) = proto::parse_ack(&buf[..len]) else {
                        continue;
                    };
                    if let Some(i) = (1..=pending.len() as u64).find(|i| (acked + i) as u16 == k) {
                        acked += i;
                        pending.drain(..i as usize);
                        moved = true;
                    }
                }
            }
        }
        if moved {
            tries = 0;
        } else {
            tries += 1;
            if tries > s.retries {
                return Err(TransferError::Timeout);
            }
        }
    }
    Ok(size)
}

/// Sends an ERROR (texts never name server paths) and ends the transfer.
async fn refuse(sock: &UdpSocket, code: u16, msg: &'static str) -> Result<u64, TransferError> {
    let _ = sock.send(&proto::error(code, msg)).await;
    Err(TransferError::Refused(msg))
}
