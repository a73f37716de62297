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

/// Sends `request` as one `POST /` (asking to upgrade the connection to
/// `upgrade` when given); returns the response and the task driving the
/// connection.
async fn post(
    socket: &Path,
    request: &Value,
    upgrade: Option<&str>,
) -> Result<
    (
        hyper::Response<hyper::body::Incoming>,
        tokio::task::JoinHandle<()>,
    ),
    ClientError,
> {
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
        let _ = conn.with_upgrades().await;
    });
    let body = serde_json::to_vec(request).map_err(|e| ClientError::Http(e.to_string()))?;
    let mut req = hyper::Request::post("/")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(protocol) = upgrade {
        req = req
            .header(hyper::header::CONNECTION, "upgrade")
            .header(hyper::header::UPGRADE, protocol);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    Ok((resp, driver))
}

/// The whole body of `resp`.
async fn body_of(resp: hyper::Response<hyper::body::Incoming>) -> Result<Bytes, ClientError> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes())
}

/// Sends `request` and returns the answer's bytes, unparsed.
pub async fn call_raw(socket: &Path, request: &Value) -> Result<Bytes, ClientError> {
    let (resp, driver) = post(socket, request, None).await?;
    let bytes = body_of(resp).await;
    driver.abort();
    bytes
}

/// Sends `request` asking to upgrade the connection to `protocol`: `Ok(Ok)`
/// is the upgraded byte stream, `Ok(Err)` the daemon's JSON answer (an
/// error, or a daemon that streams nothing).
pub async fn call_upgrade(
    socket: &Path,
    request: &Value,
    protocol: &str,
) -> Result<Result<TokioIo<hyper::upgrade::Upgraded>, Value>, ClientError> {
    let (resp, _driver) = post(socket, request, Some(protocol)).await?;
    if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        return Ok(Ok(TokioIo::new(upgraded)));
    }
    let bytes = body_of(resp).await?;
    serde_json::from_slice(&bytes)
        .map(Err)
        .map_err(|e| ClientError::BadResponse(e.to_string()))
}
