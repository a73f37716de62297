//! The API client: one HTTP/1.1 `POST /` over the daemon's Unix socket
//! (hyper), JSON in and out.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

/// Why a call did not produce an API response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the rackboot daemon at {path}: {source}. Is `rackboot serve` running? (pass --socket or --state-dir if it uses another state directory)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP exchange with the daemon failed: {0}")]
    Http(String),
    #[error("the daemon's answer is not JSON: {0}")]
    BadResponse(String),
}

/// Sends `request` to the daemon listening on `socket` and returns its JSON answer.
pub async fn call(socket: &Path, request: &Value) -> Result<Value, ClientError> {
    let bytes = call_raw(socket, request).await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
}

/// Sends `request` and returns the answer's bytes, unparsed.
pub async fn call_raw(socket: &Path, request: &Value) -> Result<Bytes, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = serde_json::to_vec(request).map_err(|e| ClientError::Http(e.to_string()))?;
    let req = hyper::Request::post("/")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    driver.abort();
    Ok(bytes)
}

/// Sends `request` asking to upgrade the connection to `protocol`: `Ok(Ok)`
/// is the upgraded byte stream, `Ok(Err)` the daemon's JSON answer (an
/// error, or a daemon that streams nothing).
pub async fn call_upgrade(
    socket: &Path,
    request: &Value,
    protocol: &str,
) -> Result<Result<TokioIo<hyper::upgrade::Upgraded>, Value>, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let body = serde_json::to_vec(request).map_err(|e| ClientError::Http(e.to_string()))?;
    let req = hyper::Request::post("/")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, protocol)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        return Ok(Ok(TokioIo::new(upgraded)));
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map(Err)
        .map_err(|e| ClientError::BadResponse(e.to_string()))
}
