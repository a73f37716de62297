//! The Redfish client's I/O: one HTTP/1.1 connection (TLS by rustls, or
//! plain HTTP for `+http` addresses) per session, reopened when the BMC
//! closes it; a Redfish session (`X-Auth-Token`) opened at the start and
//! deleted at the end on every path — explicitly, or from a background task
//! when a [`Session`] is dropped open (a cancelled future) — and HTTP Basic
//! where the service offers no sessions; `If-Match` with the ETag the
//! caller read; task monitors (202 + `Location`) followed to their end.
//! Failures are classified ([`RedfishError`]): unreachable, TLS (naming the
//! certificate problem), login refused, refused with the BMC's own message.

use super::address::BmcUrl;
use super::wire;
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// The largest response body read (a BMC's JSON).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A BMC to talk to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: BmcUrl,
    pub user: String,
    pub password: String,
    /// False: accept any certificate (self-signed BMCs; `bmc_verify_tls 0`).
    pub verify_tls: bool,
}

/// Per-request timeout and how long a task monitor is followed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    pub task_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: Duration::from_secs(10),
            task_timeout: Duration::from_secs(300),
        }
    }
}

/// Why a Redfish operation failed, in terms an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedfishError {
    #[error("no answer from the BMC at {0}")]
    Unreachable(String),
    /// The TLS handshake failed; the text names the certificate problem.
    #[error("TLS failure with {host}: {problem}")]
    Tls { host: String, problem: String },
    #[error("login refused: {0}")]
    Auth(String),
    /// The BMC answered an error status; `message` is its own text.
    #[error("the BMC refused {what} (HTTP {status}): {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    /// The BMC cannot do it (no such resource, action or device).
    #[error("{0}")]
    NotSupported(String),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// The TLS client settings: verifying (system roots + `redfish.ca_file`)
/// and, for `bmc_verify_tls 0`, accepting any certificate (signatures on
/// the handshake are still checked).
#[derive(Clone)]
pub struct Tls {
    verified: Arc<rustls::ClientConfig>,
    insecure: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Loads the system's roots and `ca_file` (PEM, "" = none).
    pub fn new(ca_file: &str) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if !ca_file.is_empty() {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
                .map_err(|e| format!("redfish.ca_file {ca_file}: {e}"))?;
            let mut n = 0;
            for cert in certs {
                let cert = cert.map_err(|e| format!("redfish.ca_file {ca_file}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("redfish.ca_file {ca_file}: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "redfish.ca_file {ca_file} holds no PEM certificate"
                ));
            }
        }
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
        };
        let verified = builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let insecure = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
            .with_no_client_auth();
        Ok(Tls {
            verified: Arc::new(verified),
            insecure: Arc::new(insecure),
        })
    }

    fn config(&self, verify: bool) -> Arc<rustls::ClientConfig> {
        if verify {
            self.verified.clone()
        } else {
            self.insecure.clone()
        }
    }
}

/// Accepts any server certificate (self-signed BMCs), still checking the
/// handshake's signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a certificate problem means, in words.
fn tls_problem(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match r {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the certificate is not signed by a trusted CA (self-signed?): add its CA to redfish.ca_file, or set bmc_verify_tls 0 for this node".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "the certificate is not valid for this host name or address (its names differ): use the name it was issued for, or set bmc_verify_tls 0".into(),
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired: renew it on the BMC, or set bmc_verify_tls 0".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the certificate is not valid yet (check the BMC's and this host's clocks)".into(),
            C::Revoked => "the certificate has been revoked".into(),
            C::BadSignature => "the certificate's signature is wrong".into(),
            C::BadEncoding => "the certificate cannot be decoded".into(),
            other => format!("the certificate was refused ({other:?})"),
        },
        rustls::Error::PeerIncompatible(p) => {
            format!("no TLS version or cipher in common (the BMC may speak only TLS 1.0/1.1): {p:?}")
        }
        rustls::Error::AlertReceived(a) => format!("the BMC ended the handshake ({a:?})"),
        other => other.to_string(),
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub token: Option<String>,
    pub body: Value,
}

enum Auth {
    None,
    Basic(String),
    Token { token: String, session: String },
}

/// An open Redfish session (or Basic credentials) on one connection.
pub struct Session {
    target: Target,
    tls: Tls,
    timing: Timing,
    conn: Option<SendRequest<Full<Bytes>>>,
    auth: Auth,
    /// The service root, as read at login.
    pub root: Value,
}

impl Session {
    /// Connects, reads the service root and logs in: a session when the
    /// service offers them, else HTTP Basic (checked with a GET).
    pub async fn open(target: &Target, tls: &Tls, timing: Timing) -> Result<Session, RedfishError> {
        let mut s = Session {
            target: target.clone(),
            tls: tls.clone(),
            timing,
            conn: None,
            auth: Auth::None,
            root: Value::Null,
        };
        let root = s.get("/redfish/v1").await?;
        if !wire::is_service_root(&root.body) {
            return Err(RedfishError::Malformed(
                "/redfish/v1 is not a Redfish service root".into(),
            ));
        }
        s.root = root.body;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", target.user, target.password))
        );
        if let Some(sessions) = wire::sessions_link(&s.root) {
            let body = serde_json::json!({"UserName": target.user, "Password": target.password});
            let r = s
                .send(Method::POST, &sessions, Some(&body), None, "login")
                .await?;
            match r.status {
                200..=299 => {
                    let token = r.token.ok_or_else(|| {
                        RedfishError::Malformed("the session has no X-Auth-Token".into())
                    })?;
                    let session = r
                        .location
                        .as_deref()
                        .map(path_of)
                        .or_else(|| {
                            r.body
                                .get("@odata.id")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                    s.auth = Auth::Token { token, session };
                    return Ok(s);
                }
                401 | 403 => return Err(auth_error(&r)),
                // The service does not create sessions after all: Basic, below.
                404 | 405 | 501 => {}
                // Out of sessions (503) and the like: the BMC's answer.
                _ => return Err(refused("login", &r)),
            }
        }
        s.auth = Auth::Basic(basic);
        let systems =
            wire::link(&s.root, "Systems").unwrap_or_else(|| "/redfish/v1/Systems".into());
        let r = s.send(Method::GET, &systems, None, None, "login").await?;
        match r.status {
            200..=299 => Ok(s),
            401 | 403 => Err(auth_error(&r)),
            _ => Err(refused("login", &r)),
        }
    }

    /// Whether the session authenticates with a Redfish session token.
    pub fn uses_session(&self) -> bool {
        matches!(self.auth, Auth::Token { .. })
    }

    /// The BMC address the session talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Deletes the Redfish session (best effort) and closes the connection.
    pub async fn close(mut self) {
        self.logout().await;
    }

    async fn logout(&mut self) {
        if let Auth::Token { session, .. } = &self.auth {
            if !session.is_empty() {
                let session = session.clone();
                if let Err(e) = self
                    .send(Method::DELETE, &session, None, None, "logout")
                    .await
                {
                    tracing::debug!(bmc = %self.target.url, "deleting the Redfish session failed: {e}");
                }
            }
        }
        self.auth = Auth::None;
        self.conn = None;
    }

    /// GET `path`, which must answer 2xx.
    pub async fn get(&mut self, path: &str) -> Result<Response, RedfishError> {
        let r = self.send(Method::GET, path, None, None, path).await?;
        check(path, r)
    }

    /// PATCH `path` with `body` (and If-Match `etag`), following a task.
    pub async fn patch(
        &mut self,
        path: &str,
        body: &Value,
        etag: Option<&str>,
        what: &str,
    ) -> Result<Response, RedfishError> {
        let r = self
            .send(Method::PATCH, path, Some(body), etag, what)
            .await?;
        self.finish(what, r).await
    }

    /// POST an action to `path`, following a task.
    pub async fn post(
        &mut self,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<Response, RedfishError> {
        let r = self
            .send(Method::POST, path, Some(body), None, what)
            .await?;
        self.finish(what, r).await
    }

    /// A 2xx, or a 202 whose task monitor is followed to its end.
    async fn finish(&mut self, what: &str, r: Response) -> Result<Response, RedfishError> {
        if r.status == 202 {
            if let Some(monitor) = r.location.as_deref().map(path_of) {
                return self.follow_task(what, &monitor).await;
            }
        }
        check(what, r)
    }

    /// Polls a task monitor until the task ends or `task_timeout` passes.
    async fn follow_task(&mut self, what: &str, monitor: &str) -> Result<Response, RedfishError> {
        let deadline = tokio::time::Instant::now() + self.timing.task_timeout;
        let mut wait = Duration::from_millis(200);
        loop {
            let r = self.send(Method::GET, monitor, None, None, what).await?;
            match r.status {
                // Still running (a task monitor answers 202 meanwhile).
                202 => {}
                200..=299 => match wire::task_state(&r.body) {
                    Some(Ok(())) => return Ok(r),
                    Some(Err(message)) => {
                        return Err(RedfishError::Refused {
                            what: what.to_string(),
                            status: r.status,
                            message,
                        })
                    }
                    None => {}
                },
                // The monitor is gone: the task ended and was cleaned up.
                404 | 410 => return Ok(r),
                _ => return Err(refused(what, &r)),
            }
            if tokio::time::Instant::now() + wait > deadline {
                return Err(RedfishError::Refused {
                    what: what.to_string(),
                    status: 202,
                    message: format!(
                        "its task did not end within {} s",
                        self.timing.task_timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// Sends one request (reconnecting when the BMC closed the
    /// connection), with the session's credentials.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        what: &str,
    ) -> Result<Response, RedfishError> {
        let bytes = body.map(|b| Bytes::from(b.to_string()));
        for attempt in 0..2 {
            self.connect_if_needed().await?;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(hyper::header::HOST, self.target.url.authority())
                .header(hyper::header::ACCEPT, "application/json")
                .header("OData-Version", "4.0");
            match &self.auth {
                Auth::None => {}
                Auth::Basic(b) => req = req.header(hyper::header::AUTHORIZATION, b),
                Auth::Token { token, .. } => req = req.header("X-Auth-Token", token),
            }
            if let Some(tag) = if_match {
                req = req.header(hyper::header::IF_MATCH, tag);
            }
            if bytes.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(bytes.clone().unwrap_or_default()))
                .map_err(|e| RedfishError::Malformed(format!("bad request path {path}: {e}")))?;
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let sent = tokio::time::timeout(self.timing.timeout, async {
                let res = conn.send_request(req).await?;
                let (parts, body) = res.into_parts();
                let body = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map(|c| c.to_bytes());
                Ok::<_, hyper::Error>((parts, body))
            })
            .await;
            let (parts, body) = match sent {
                Err(_) => {
                    self.conn = None;
                    return Err(RedfishError::Unreachable(format!(
                        "{} ({what}: no answer within {} s)",
                        self.target.url.authority(),
                        self.timing.timeout.as_secs()
                    )));
                }
                // The BMC closed a kept-alive connection: reconnect once — an
                // action (POST) only when it was never sent, so it never
                // runs twice.
                Ok(Err(e))
                    if attempt == 0
                        && (e.is_canceled()
                            || (method != Method::POST
                                && (e.is_closed() || e.is_incomplete_message()))) =>
                {
                    self.conn = None;
                    continue;
                }
                Ok(Err(e)) => {
                    self.conn = None;
                    return Err(RedfishError::Unreachable(format!(
                        "{} ({what}: {e})",
                        self.target.url.authority()
                    )));
                }
                Ok(Ok(x)) => x,
            };
            let body = body.map_err(|e| {
                RedfishError::Malformed(format!("{what}: the body could not be read ({e})"))
            })?;
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
                self.conn = None;
            }
            let json: Value = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body).unwrap_or(Value::Null)
            };
            let etag = header("etag").or_else(|| {
                json.get("@odata.etag")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            return Ok(Response {
                status: parts.status.as_u16(),
                etag,
                location: header("location"),
                token: header("x-auth-token"),
                body: json,
            });
        }
        Err(RedfishError::Unreachable(format!(
            "{} ({what}: the connection closed twice)",
            self.target.url.authority()
        )))
    }

    async fn connect_if_needed(&mut self) -> Result<(), RedfishError> {
        if let Some(c) = &mut self.conn {
            if c.ready().await.is_ok() {
                return Ok(());
            }
            self.conn = None;
        }
        self.conn = Some(connect(&self.target, &self.tls, self.timing.timeout).await?);
        Ok(())
    }
}

impl Drop for Session {
    /// A session dropped open (a cancelled operation) is deleted from a
    /// background task, so it never lingers on the BMC.
    fn drop(&mut self) {
        let Auth::Token { token, session } = std::mem::replace(&mut self.auth, Auth::None) else {
            return;
        };
        if session.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut orphan = Session {
            target: self.target.clone(),
            tls: self.tls.clone(),
            timing: self.timing,
            conn: None,
            auth: Auth::Token { token, session },
            root: Value::Null,
        };
        handle.spawn(async move { orphan.logout().await });
    }
}

async fn connect(
    target: &Target,
    tls: &Tls,
    timeout: Duration,
) -> Result<SendRequest<Full<Bytes>>, RedfishError> {
    let url = &target.url;
    let authority = url.authority();
    let unreachable = |why: String| RedfishError::Unreachable(format!("{authority} ({why})"));
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect((url.host.as_str(), url.port)))
        .await
    {
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {} s",
                timeout.as_secs()
            )))
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    if !url.tls {
        return handshake(tcp, &authority).await;
    }
    let name = match url.host.parse::<std::net::IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| RedfishError::Malformed(format!("{}: {e}", url.host)))?,
    };
    let connector = tokio_rustls::TlsConnector::from(tls.config(target.verify_tls));
    let stream = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => return Err(unreachable("the TLS handshake got no answer".into())),
        Ok(Err(e)) => {
            return Err(RedfishError::Tls {
                host: url.authority(),
                problem: tls_problem(&e),
            })
        }
        Ok(Ok(s)) => s,
    };
    handshake(stream, &authority).await
}

/// HTTP/1.1 over `io`; the connection is driven by its own task.
async fn handshake<T>(io: T, authority: &str) -> Result<SendRequest<Full<Bytes>>, RedfishError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| RedfishError::Unreachable(format!("{authority}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// The path of a `Location` (absolute URL or path).
fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into()),
        None => location.to_string(),
    }
}

fn auth_error(r: &Response) -> RedfishError {
    RedfishError::Auth(wire::message_of(&r.body).unwrap_or_else(|| format!("HTTP {}", r.status)))
}

fn refused(what: &str, r: &Response) -> RedfishError {
    let message = wire::message_of(&r.body).unwrap_or_else(|| {
        StatusCode::from_u16(r.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error")
            .to_string()
    });
    if r.status == 401 {
        return RedfishError::Auth(message);
    }
    RedfishError::Refused {
        what: what.to_string(),
        status: r.status,
        message,
    }
}

fn check(what: &str, r: Response) -> Result<Response, RedfishError> {
    if (200..300).contains(&r.status) {
        Ok(r)
    } else {
        Err(refused(what, &r))
    }
}

/// The unauthenticated probe of a scan: whether `url` serves a Redfish
/// service root.
pub async fn probe(
    url: &BmcUrl,
    tls: &Tls,
    verify: bool,
    timeout: Duration,
) -> Result<Value, RedfishError> {
    let target = Target {
        url: url.clone(),
        user: String::new(),
        password: String::new(),
        verify_tls: verify,
    };
    let mut s = Session {
        target,
        tls: tls.clone(),
        timing: Timing {
            timeout,
            task_timeout: timeout,
        },
        conn: None,
        auth: Auth::None,
        root: Value::Null,
    };
    let r = s.get("/redfish/v1").await?;
    if wire::is_service_root(&r.body) {
        Ok(r.body)
    } else {
        Err(RedfishError::Malformed("not a Redfish service root".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_paths() {
        assert_eq!(
            path_of("https://10.0.0.5/redfish/v1/SessionService/Sessions/7"),
            "/redfish/v1/SessionService/Sessions/7"
        );
        assert_eq!(
            path_of("/redfish/v1/TaskService/Tasks/1"),
            "/redfish/v1/TaskService/Tasks/1"
        );
        assert_eq!(path_of("http://h:80"), "/");
    }

    #[test]
    fn tls_settings_load_the_system_roots_and_refuse_a_bad_ca_file() {
        assert!(Tls::new("").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = Tls::new(f.to_str().unwrap()).err().unwrap();
        assert!(e.contains("redfish.ca_file"), "{e}");
        assert!(Tls::new("/nonexistent/ca.pem").is_err());
    }
}
