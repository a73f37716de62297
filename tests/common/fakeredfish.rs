//! A FAKE farm of Redfish BMCs (test equipment, not part of the daemon),
//! for what sushy-tools cannot emulate: TLS with chosen certificates (a CA
//! of its own, a wrong name, an expired or self-signed one), a
//! SessionService whose open sessions can be counted (sushy-tools has
//! none), ETags with `If-Match` required (428/412), task monitors for
//! asynchronous resets (202 + Location), refusals with a Redfish error body,
//! and a thousand BMCs in one process for the benchmark. One ComputerSystem
//! `/redfish/v1/Systems/1` per BMC, user `admin` / password `password`,
//! HTTP/1.1 keep-alive.
//!
//! Shared by the tests (`mod common`) and `benches/redfish.rs`.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "password";
const SYSTEM: &str = "/redfish/v1/Systems/1";

/// Which certificate the farm presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cert {
    /// Signed by the farm's CA, valid for 127.0.0.1 and localhost.
    Good,
    /// Signed by the CA, but for `bmc.example` only.
    WrongName,
    /// Signed by the CA, expired in 2001.
    Expired,
    /// Self-signed (no CA).
    SelfSigned,
}

/// How the fake BMCs behave.
#[derive(Debug, Clone)]
pub struct Options {
    /// HTTPS (else plain HTTP).
    pub tls: Option<Cert>,
    /// Offer a SessionService (else Basic only, like sushy-tools).
    pub sessions: bool,
    /// Most sessions open at once (a login beyond answers 503).
    pub max_sessions: usize,
    /// PATCH needs `If-Match` with the current ETag (428 without, 412 stale).
    pub require_etag: bool,
    /// Resets answer 202 with a task monitor that completes after 2 polls.
    pub async_resets: bool,
    /// Advertise `PowerCycle` among the reset types.
    pub power_cycle: bool,
    /// Virtual media only by the older PATCH of the device (no actions).
    pub media_patch: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: Some(Cert::Good),
            sessions: true,
            max_sessions: 4,
            require_etag: true,
            async_resets: true,
            power_cycle: false,
            media_patch: false,
        }
    }
}

/// One BMC's state, readable by the tests.
#[derive(Debug, Default)]
pub struct State {
    pub power_on: bool,
    pub boot_target: String,
    pub boot_enabled: String,
    pub boot_mode: String,
    pub etag: u64,
    /// Open sessions: id → token.
    pub sessions: HashMap<u64, String>,
    pub next_session: u64,
    /// Sessions created and deleted over the BMC's life.
    pub logins: usize,
    pub logouts: usize,
    /// Reset types received, in order.
    pub resets: Vec<String>,
    /// Task id → polls left before it completes.
    pub tasks: HashMap<u64, u32>,
    pub media_image: String,
    pub media_inserted: bool,
    /// Requests served.
    pub requests: usize,
    /// PATCHes refused for a missing or stale ETag.
    pub etag_refusals: usize,
    /// Refuse every boot override with this message (a Redfish error).
    pub refuse_boot: Option<String>,
}

pub struct Bmc {
    pub addr: SocketAddr,
    pub state: Mutex<State>,
    opts: Options,
}

impl Bmc {
    pub fn open_sessions(&self) -> usize {
        self.state.lock().unwrap().sessions.len()
    }
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

/// The farm: its BMCs, the CA that signed their certificate (PEM) and the
/// runtime serving them (on its own thread).
pub struct Farm {
    pub bmcs: Vec<Arc<Bmc>>,
    pub ca_pem: String,
    pub connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Farm {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The process's test CA (one for every farm, so that a farm with a wrong
/// name or an expired certificate differs from a good one in that alone).
fn test_ca() -> &'static (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    static CA: std::sync::OnceLock<(String, Issuer<'static, KeyPair>)> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rackboot test BMC CA");
        let pem = params.self_signed(&key).unwrap().pem();
        (pem, Issuer::new(params, key))
    })
}

/// The test CA and a certificate of `kind` signed by it (or self-signed),
/// valid for 127.0.0.1, 10.98.0.1–4 and localhost (`WrongName`: only
/// bmc.example): (CA PEM, certificate DER, key DER).
pub fn certificates(kind: Cert) -> (String, Vec<u8>, Vec<u8>) {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let (ca_pem, issuer) = test_ca();
    let key = KeyPair::generate().unwrap();
    let names = match kind {
        Cert::WrongName => vec!["bmc.example".to_string()],
        _ => vec!["localhost".to_string()],
    };
    let mut params = CertificateParams::new(names).unwrap();
    if kind != Cert::WrongName {
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        for i in 1..=4 {
            params
                .subject_alt_names
                .push(SanType::IpAddress(format!("10.98.0.{i}").parse().unwrap()));
        }
    }
    if kind == Cert::Expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = match kind {
        Cert::SelfSigned => params.self_signed(&key).unwrap(),
        _ => params.signed_by(&key, issuer).unwrap(),
    };
    (ca_pem.clone(), cert.der().to_vec(), key.serialize_der())
}

/// Starts `count` BMCs on 127.0.0.1 (ephemeral ports).
pub fn start(count: usize, opts: Options) -> Farm {
    start_on("127.0.0.1".parse().unwrap(), count, opts)
}

/// Starts `count` BMCs on `ip` (ephemeral ports; port 443 when `count` is
/// 1 and `ip` is not loopback, as a scan expects).
pub fn start_on(ip: std::net::IpAddr, count: usize, opts: Options) -> Farm {
    let (ca_pem, cert, key) = certificates(opts.tls.unwrap_or(Cert::Good));
    let tls = opts.tls.map(|_| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let connections = Arc::new(AtomicUsize::new(0));
    let conns = connections.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut bmcs = Vec::new();
            for _ in 0..count {
                let port = if count == 1 && !ip.is_loopback() {
                    443
                } else {
                    0
                };
                let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
                let bmc = Arc::new(Bmc {
                    addr: listener.local_addr().unwrap(),
                    state: Mutex::new(State {
                        boot_target: "None".into(),
                        boot_enabled: "Disabled".into(),
                        boot_mode: "Legacy".into(),
                        etag: 1,
                        ..Default::default()
                    }),
                    opts: opts.clone(),
                });
                bmcs.push(bmc.clone());
                let (tls, conns) = (tls.clone(), conns.clone());
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        conns.fetch_add(1, Ordering::Relaxed);
                        let (bmc, tls) = (bmc.clone(), tls.clone());
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                let bmc = bmc.clone();
                                async move { Ok::<_, hyper::Error>(handle(&bmc, req).await) }
                            });
                            let builder = hyper::server::conn::http1::Builder::new();
                            match tls {
                                Some(acceptor) => {
                                    if let Ok(s) = acceptor.accept(stream).await {
                                        let _ = builder
                                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                                            .await;
                                    }
                                }
                                None => {
                                    let _ = builder
                                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                        .await;
                                }
                            }
                        });
                    }
                });
            }
            ready_tx.send(bmcs).unwrap();
            let _ = stop_rx.await;
        });
        rt.shutdown_background();
    });
    let bmcs = ready_rx.recv().unwrap();
    Farm {
        bmcs,
        ca_pem,
        connections,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

fn reply(status: StatusCode, body: Value, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    r.body(Full::new(body)).unwrap()
}

fn error(status: StatusCode, id: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"error": {"code": "Base.1.8.GeneralError", "message": "see ExtendedInfo",
            "@Message.ExtendedInfo": [{"MessageId": id, "Message": message}]}}),
        &[],
    )
}

fn authorized(bmc: &Bmc, st: &State, req: &hyper::http::request::Parts) -> bool {
    if let Some(token) = req
        .headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
    {
        return bmc.opts.sessions && st.sessions.values().any(|t| t == token);
    }
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

fn system_json(bmc: &Bmc, st: &State) -> Value {
    let mut types = vec!["On", "ForceOff", "GracefulShutdown", "ForceRestart"];
    if bmc.opts.power_cycle {
        types.push("PowerCycle");
    }
    json!({
        "@odata.id": SYSTEM, "@odata.etag": format!("W/\"{}\"", st.etag), "Id": "1",
        "Manufacturer": "Fake Redfish", "Model": "FR-1", "SerialNumber": format!("FR{}", bmc.addr.port()),
        "BiosVersion": "1.2.3",
        "PowerState": if st.power_on { "On" } else { "Off" },
        "ProcessorSummary": {"Count": 2, "Model": "Fake CPU"},
        "MemorySummary": {"TotalSystemMemoryGiB": 8},
        "Boot": {"BootSourceOverrideTarget": st.boot_target, "BootSourceOverrideEnabled": st.boot_enabled,
                 "BootSourceOverrideMode": st.boot_mode,
                 "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "Cd", "BiosSetup"]},
        "Actions": {"#ComputerSystem.Reset": {"target": format!("{SYSTEM}/Actions/ComputerSystem.Reset"),
                     "ResetType@Redfish.AllowableValues": types}},
        "EthernetInterfaces": {"@odata.id": format!("{SYSTEM}/EthernetInterfaces")},
        "Storage": {"@odata.id": format!("{SYSTEM}/Storage")},
        "VirtualMedia": {"@odata.id": format!("{SYSTEM}/VirtualMedia")},
    })
}

async fn handle(bmc: &Bmc, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    respond(bmc, &parts, &body)
}

fn respond(bmc: &Bmc, req: &hyper::http::request::Parts, body: &[u8]) -> Response<Full<Bytes>> {
    let method = req.method.clone();
    let path = req.uri.path().trim_end_matches('/').to_string();
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let if_match = req
        .headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut st = bmc.state.lock().unwrap();
    st.requests += 1;
    if path == "/redfish/v1" && method == Method::GET {
        let mut root = json!({"@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot", "RedfishVersion": "1.6.0",
            "Systems": {"@odata.id": "/redfish/v1/Systems"}});
        if bmc.opts.sessions {
            root["Links"] =
                json!({"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}});
        }
        return reply(StatusCode::OK, root, &[]);
    }
    if bmc.opts.sessions && path == "/redfish/v1/SessionService/Sessions" && method == Method::POST
    {
        if v["UserName"] != USER || v["Password"] != PASSWORD {
            return error(
                StatusCode::UNAUTHORIZED,
                "Base.1.8.NoValidSession",
                "Invalid username or password",
            );
        }
        if st.sessions.len() >= bmc.opts.max_sessions {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Base.1.8.SessionLimitExceeded",
                "The session limit has been exceeded",
            );
        }
        st.next_session += 1;
        st.logins += 1;
        let id = st.next_session;
        let token = format!("tok-{}-{id}", bmc.addr.port());
        st.sessions.insert(id, token.clone());
        let loc = format!("/redfish/v1/SessionService/Sessions/{id}");
        return reply(
            StatusCode::CREATED,
            json!({"@odata.id": loc, "Id": id.to_string(), "UserName": USER}),
            &[("x-auth-token", token), ("location", loc)],
        );
    }
    if !authorized(bmc, &st, req) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Base.1.8.NoValidSession",
            "No valid session or credentials",
        );
    }
    if let Some(id) = path.strip_prefix("/redfish/v1/SessionService/Sessions/") {
        if method == Method::DELETE {
            let removed = id
                .parse::<u64>()
                .ok()
                .and_then(|id| st.sessions.remove(&id));
            if removed.is_some() {
                st.logouts += 1;
                return reply(StatusCode::NO_CONTENT, Value::Null, &[]);
            }
            return error(
                StatusCode::NOT_FOUND,
                "Base.1.8.ResourceMissingAtURI",
                "no such session",
            );
        }
    }
    if path == "/redfish/v1/SessionService/Sessions" && method == Method::GET {
        let members: Vec<Value> = st
            .sessions
            .keys()
            .map(|id| json!({"@odata.id": format!("/redfish/v1/SessionService/Sessions/{id}")}))
            .collect();
        return reply(
            StatusCode::OK,
            json!({"Members@odata.count": members.len(), "Members": members}),
            &[],
        );
    }
    if path == "/redfish/v1/Systems" && method == Method::GET {
        return reply(
            StatusCode::OK,
            json!({"Members": [{"@odata.id": SYSTEM}]}),
            &[],
        );
    }
    if path == SYSTEM && method == Method::GET {
        let etag = format!("W/\"{}\"", st.etag);
        return reply(StatusCode::OK, system_json(bmc, &st), &[("etag", etag)]);
    }
    if path == SYSTEM && method == Method::PATCH {
        let current = format!("W/\"{}\"", st.etag);
        if bmc.opts.require_etag {
            match &if_match {
                None => {
                    st.etag_refusals += 1;
                    return error(
                        StatusCode::PRECONDITION_REQUIRED,
                        "Base.1.8.PreconditionRequired",
                        "If-Match is required",
                    );
                }
                Some(t) if *t != current => {
                    st.etag_refusals += 1;
                    return error(
                        StatusCode::PRECONDITION_FAILED,
                        "Base.1.8.PreconditionFailed",
                        "The ETag does not match",
                    );
                }
                _ => {}
            }
        }
        if let Some(m) = st.refuse_boot.clone() {
            return error(StatusCode::BAD_REQUEST, "Base.1.8.ActionNotSupported", &m);
        }
        let boot = &v["Boot"];
        if let Some(t) = boot["BootSourceOverrideTarget"].as_str() {
            if !["None", "Pxe", "Hdd", "Cd", "BiosSetup"].contains(&t) {
                return error(StatusCode::BAD_REQUEST, "Base.1.8.PropertyValueNotInList",
                    &format!("The value {t} for the property BootSourceOverrideTarget is not in the list of acceptable values."));
            }
            st.boot_target = t.into();
        }
        if let Some(e) = boot["BootSourceOverrideEnabled"].as_str() {
            st.boot_enabled = e.into();
        }
        if let Some(m) = boot["BootSourceOverrideMode"].as_str() {
            st.boot_mode = m.into();
        }
        st.etag += 1;
        return reply(StatusCode::NO_CONTENT, Value::Null, &[]);
    }
    if path == format!("{SYSTEM}/Actions/ComputerSystem.Reset") && method == Method::POST {
        let kind = v["ResetType"].as_str().unwrap_or("").to_string();
        match kind.as_str() {
            "On" | "ForceOn" => st.power_on = true,
            "ForceOff" | "GracefulShutdown" => st.power_on = false,
            "ForceRestart" | "PowerCycle" if st.power_on => {}
            "ForceRestart" | "PowerCycle" => {
                return error(
                    StatusCode::CONFLICT,
                    "Base.1.8.ActionNotSupported",
                    "The system is off",
                )
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.ActionParameterNotSupported",
                    &format!("The value {kind} for ResetType is not supported"),
                )
            }
        }
        st.resets.push(kind);
        st.etag += 1;
        if bmc.opts.async_resets {
            let id = st.tasks.len() as u64 + 1;
            st.tasks.insert(id, 2);
            let loc = format!("/redfish/v1/TaskService/Tasks/{id}/Monitor");
            return reply(
                StatusCode::ACCEPTED,
                json!({"@odata.id": loc, "TaskState": "Running"}),
                &[("location", loc)],
            );
        }
        return reply(StatusCode::NO_CONTENT, Value::Null, &[]);
    }
    if let Some(rest) = path.strip_prefix("/redfish/v1/TaskService/Tasks/") {
        let id = rest
            .trim_end_matches("/Monitor")
            .parse::<u64>()
            .unwrap_or(0);
        let Some(left) = st.tasks.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "Base.1.8.ResourceMissingAtURI",
                "no such task",
            );
        };
        if *left > 0 {
            *left -= 1;
            return reply(
                StatusCode::ACCEPTED,
                json!({"TaskState": "Running"}),
                &[("location", path.clone())],
            );
        }
        return reply(
            StatusCode::OK,
            json!({"TaskState": "Completed", "TaskStatus": "OK"}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/EthernetInterfaces") {
        return reply(
            StatusCode::OK,
            json!({"Members": [{"@odata.id": format!("{SYSTEM}/EthernetInterfaces/nic1")}]}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/EthernetInterfaces/nic1") {
        let p = bmc.addr.port();
        return reply(
            StatusCode::OK,
            json!({"Id": "nic1", "MACAddress": format!("52:54:00:fa:{:02x}:{:02x}", p >> 8, p & 0xff), "SpeedMbps": 10000}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/Storage") {
        return reply(
            StatusCode::OK,
            json!({"Members": [{"@odata.id": format!("{SYSTEM}/Storage/1")}]}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/Storage/1") {
        return reply(
            StatusCode::OK,
            json!({"Drives": [{"@odata.id": format!("{SYSTEM}/Storage/1/Drives/d1")}]}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/Storage/1/Drives/d1") {
        return reply(
            StatusCode::OK,
            json!({"Id": "d1", "Name": "Drive 1", "Model": "FakeSSD", "SerialNumber": "D1",
            "CapacityBytes": 480_103_981_056u64, "MediaType": "SSD", "Protocol": "SATA"}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/VirtualMedia") {
        return reply(
            StatusCode::OK,
            json!({"Members": [{"@odata.id": format!("{SYSTEM}/VirtualMedia/Cd")}]}),
            &[],
        );
    }
    if path == format!("{SYSTEM}/VirtualMedia/Cd") && method == Method::GET {
        let mut v = json!({"Id": "Cd", "MediaTypes": ["CD", "DVD"], "Inserted": st.media_inserted,
            "Image": st.media_image, "@odata.etag": format!("W/\"m{}\"", st.etag)});
        if !bmc.opts.media_patch {
            v["Actions"] = json!({"#VirtualMedia.InsertMedia": {"target": format!("{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia")},
                        "#VirtualMedia.EjectMedia": {"target": format!("{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia")}});
        }
        return reply(StatusCode::OK, v, &[]);
    }
    if path == format!("{SYSTEM}/VirtualMedia/Cd")
        && method == Method::PATCH
        && bmc.opts.media_patch
    {
        if if_match.as_deref() != Some(format!("W/\"m{}\"", st.etag).as_str()) {
            st.etag_refusals += 1;
            return error(
                StatusCode::PRECONDITION_FAILED,
                "Base.1.8.PreconditionFailed",
                "The ETag does not match",
            );
        }
        st.media_image = v["Image"].as_str().unwrap_or("").into();
        st.media_inserted = v["Inserted"].as_bool().unwrap_or(false);
        st.etag += 1;
        return reply(StatusCode::NO_CONTENT, Value::Null, &[]);
    }
    if path == format!("{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia") {
        st.media_image = v["Image"].as_str().unwrap_or("").into();
        st.media_inserted = true;
        return reply(StatusCode::NO_CONTENT, Value::Null, &[]);
    }
    if path == format!("{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia") {
        st.media_image.clear();
        st.media_inserted = false;
        return reply(StatusCode::NO_CONTENT, Value::Null, &[]);
    }
    error(
        StatusCode::NOT_FOUND,
        "Base.1.8.ResourceMissingAtURI",
        &format!("{path} does not exist"),
    )
}
