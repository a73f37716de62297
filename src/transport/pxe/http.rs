//! The HTTP boot server (TCP, on the provisioning address):
//!
//! | path | what |
//! |---|---|
//! | `GET /boot/<node_id>.ipxe` | the node's iPXE script, by what it boots now ([`crate::service::provision::Provisioner::boot_mode`]) |
//! | `GET /boot/discovery.ipxe` | unknown machines, with `dhcp.discovery` |
//! | `GET /boot/grub/grub.cfg-01-<mac>`, `/boot/pxelinux.cfg/01-<mac>` | per-node GRUB and pxelinux configs (also over TFTP) |
//! | `GET /files/<path>` | `boot.files_dir` (ipxe.efi for UEFI HTTP boot…) |
//! | `GET /deploy/kernel`, `/deploy/initrd` | the deploy ramdisk (`[deploy]`) |
//! | `GET /images/<os_version>/{image,kernel,initrd}` | `[[images]]` files |
//! | `GET /config/<node_id>/<token>/<file>` | the node's install config (user-data, meta-data, preseed.cfg, ks.cfg) |
//! | `POST /callback/<node_id>/<token>/<event>` | progress, done, failed, inventory, booted |
//! | `GET /vmedia/<node_id>/<token>/deploy.iso` | the node's virtual-media ISO (fetched by its BMC) |
//! | `POST /discover/<mac>/inventory` | with `dhcp.discovery`: an unknown machine that network-booted here enlists itself |
//!
//! Connections have a budget (`http.max_connections`, lowered to the
//! descriptors the open-file limit leaves, and
//! `http.max_connections_per_client`): when full, the connection idle the
//! longest (of that client, when it is at its cap) is closed for the new
//! one, never one that is serving a request. A connection must send its
//! first request head within [`TIMEOUTS`]`.head`, the next within `.idle`; a
//! request that moves no byte for `.stall` is dropped. Callback bodies are
//! read only once the token is checked, within a per-route cap and
//! [`BODY_TIMEOUT`].
//!
//! Files are streamed with Range and Content-Length (tower-http's
//! `ServeFile`), never read whole. Node-specific configs and callbacks need
//! the node's current deploy token (rotated per provision). Unknown node,
//! wrong token, missing file: a plain 4xx with the reason in the log. Every
//! file served goes to the boot timeline with its size and duration.

use crate::foundation::budget::{self, Budget, Metered, Timeouts};
use crate::foundation::callbacks::{parse_callback, Callback};
use crate::foundation::config::Config;
use crate::foundation::store::BmNode;
use crate::foundation::templates::{self, BootVars, Mode, NodeVars, Templates, Urls};
use crate::service::app::App;
use crate::service::provision::Reply;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The HTTP boot server's connection timeouts (see the module doc).
pub const TIMEOUTS: Timeouts = Timeouts {
    head: std::time::Duration::from_secs(10),
    idle: std::time::Duration::from_secs(15),
    stall: std::time::Duration::from_secs(30),
};

/// How long a callback body may take to arrive whole.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The largest callback body (an inventory).
const MAX_CALLBACK_BYTES: usize = 1024 * 1024;
/// The largest body of the other callbacks (progress, done, failed, booted).
const MAX_SMALL_CALLBACK_BYTES: usize = 16 * 1024;

/// The body cap of callback `event`.
fn callback_cap(event: &str) -> usize {
    if event == "inventory" {
        MAX_CALLBACK_BYTES
    } else {
        MAX_SMALL_CALLBACK_BYTES
    }
}

/// Reads a request body of at most `cap` bytes within [`BODY_TIMEOUT`];
/// the refusal to answer otherwise.
async fn read_body(body: Body, cap: usize, label: &str) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, cap)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            label,
            &format!("the body is over {cap} bytes (or broke off)"),
        )),
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            label,
            &format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

#[derive(Clone)]
struct Http {
    app: Arc<App>,
    address: String,
    port: u16,
}

/// Serves on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let (address, port) = match listener.local_addr() {
        Ok(a) => (a.ip().to_string(), a.port()),
        Err(_) => return,
    };
    app.shared.set_http_address(address.clone(), port);
    app.shared
        .set_listening("http", format!("{address}:{port}"));
    let budget = Budget::new(
        app.shared.fds.http_connections,
        app.config().http.max_connections_per_client,
    );
    let h = Http { app, address, port };
    let app = router(h.clone());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors: make room, never spin.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        budget.shed_one();
                    }
                    tracing::debug!("http: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(ticket) = budget.admit(Some(budget::Client::Ip(peer.ip()))) else {
            tracing::debug!(%peer, "http: refused a connection: every connection is serving a request");
            continue;
        };
        let (h, app, shutdown) = (h.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let state = ticket.state.clone();
            tokio::select! {
                _ = connection(h, app, stream, peer, state.clone()) => {}
                _ = budget::watch(state, TIMEOUTS) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(ticket);
        });
    }
}

/// One client connection: whole static files by sendfile while the client
/// asks for them, then (for anything else) the router, for the rest of the
/// connection.
async fn connection(
    h: Http,
    app: Router,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<budget::ConnState>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 4096];
    loop {
        // The next request's head (it normally arrives in one segment).
        let mut tries = 0;
        let get = loop {
            // An idle connection is closed by its watchdog.
            let peeked = tokio::time::timeout(TIMEOUTS.idle, stream.peek(&mut buf)).await;
            let n = match peeked {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
            let complete = buf[..n].windows(4).any(|w| w == b"\r\n\r\n");
            if complete || n == buf.len() || tries > 50 {
                break super::sendfile::parse_head(&buf[..n]);
            }
            tries += 1;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        };
        let target = match &get {
            Some(g) => static_file(&h, &g.path),
            None => None,
        };
        let (Some(g), Some((path, kind))) = (get, target) else {
            break;
        };
        let _busy = state.begin();
        let mut head = vec![0u8; g.head_len];
        if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head)
            .await
            .is_err()
        {
            return;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            return;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mac = mac_of_peer(&h.app, peer.ip()).await;
        if let Some(kind) = kind {
            notify_fetch(&h.app, mac.as_deref(), kind).await;
            // The deploy kernel and initrd are large: a transfer that stalls
            // (a link or firewall dropping it mid-way) shows as started.
            if let Some(mac) = &mac {
                let line = format!("GET {}: started ({len} bytes)", g.path);
                record(&h.app, mac.clone(), line).await;
            }
        }
        let started = Instant::now();
        let sent = super::sendfile::send(&stream, &file, len, g.keep_alive, || state.moved()).await;
        match &sent {
            Ok(n) => counted(if *n == len { "ok" } else { "incomplete" }, *n),
            Err(_) => counted("failed", 0),
        }
        if let Some(mac) = mac {
            let ms = started.elapsed().as_millis();
            let detail = match &sent {
                Ok(n) if *n < len => {
                    format!("GET {}: {n} of {len} bytes in {ms} ms (incomplete)", g.path)
                }
                Ok(n) => format!("GET {}: {n} bytes in {ms} ms", g.path),
                Err(e) => format!("GET {}: stopped after {ms} ms ({e})", g.path),
            };
            record(&h.app, mac, detail).await;
        }
        if sent.is_err() || !g.keep_alive {
            return;
        }
    }
    let conn_state = state.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = conn_state.begin();
            let mut app = app.clone();
            async move {
                let res = tower::Service::call(&mut app, req).await;
                res.map(|r| r.map(|b| Body::new(budget::BusyBody::new(b, busy))))
            }
        });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(TIMEOUTS.head)
        .serve_connection(
            hyper_util::rt::TokioIo::new(Metered::new(stream, state)),
            service,
        )
        .await;
}

/// The local file a whole-file GET of `path` names, with what a provision
/// hears about (`Fetched`), when the fast path serves it.
fn static_file(h: &Http, path: &str) -> Option<(std::path::PathBuf, Option<&'static str>)> {
    let cfg = h.app.config();
    if let Some(rest) = path.strip_prefix("/files/") {
        if let Some(p) = cfg.secure_boot_file(rest) {
            return Some((p, None));
        }
        let root = std::path::Path::new(&cfg.boot.files_dir)
            .canonicalize()
            .ok()?;
        return crate::foundation::tftp::resolve(&root, rest)
            .ok()
            .map(|p| (p, None));
    }
    let local = |p: &str| {
        let ok = !p.is_empty() && !p.starts_with("http://") && !p.starts_with("https://");
        (ok && std::path::Path::new(p).is_file()).then(|| std::path::PathBuf::from(p))
    };
    match path.strip_prefix("/deploy/") {
        Some("kernel") => return local(&cfg.deploy.kernel).map(|p| (p, Some("kernel"))),
        Some("initrd") => return local(&cfg.deploy.initrd).map(|p| (p, Some("initrd"))),
        Some(_) => return None,
        None => {}
    }
    let rest = path.strip_prefix("/images/")?;
    let (version, file) = rest.split_once('/')?;
    let image = cfg.images.iter().find(|i| i.os_version == version)?;
    match file {
        "image" => h
            .app
            .provision
            .images
            .ready(image)
            .map(|p| (p.raw, Some("image"))),
        "kernel" => local(&image.kernel).map(|p| (p, Some("kernel"))),
        "initrd" => local(&image.initrd).map(|p| (p, Some("initrd"))),
        _ => None,
    }
}

fn router(h: Http) -> Router {
    Router::new()
        .route("/boot/{file}", get(boot_script))
        .route("/boot/grub/{file}", get(grub_config))
        .route("/boot/pxelinux.cfg/{file}", get(pxelinux_config))
        .route("/files/{*path}", get(boot_file))
        .route("/deploy/{file}", get(deploy_file))
        .route("/images/{os_version}/{file}", get(image_file))
        .route("/config/{node_id}/{token}/{file}", get(install_config))
        .route("/callback/{node_id}/{token}/{event}", post(callback))
        .route("/vmedia/{node_id}/{token}/{file}", get(vmedia_iso))
        .route("/discover/{mac}/{event}", post(discover))
        .with_state(h)
}

fn text(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn refuse(status: StatusCode, what: &str, why: &str) -> Response {
    tracing::info!(what, "http: {}: {why}", status.as_u16());
    (status, format!("{why}\n")).into_response()
}

/// The registered node `node_id`.
async fn node(app: &App, node_id: &str) -> Option<BmNode> {
    if !crate::foundation::ids::is_id(node_id, crate::foundation::ids::NODE_PREFIX) {
        return None;
    }
    let filter = crate::foundation::store::BmNodeFilter {
        node_ids: vec![node_id.to_string()],
        ..Default::default()
    };
    app.store
        .describe_bm_nodes(filter)
        .await
        .ok()
        .and_then(|(nodes, _)| nodes.into_iter().next())
}

/// The node of PXE MAC `mac` (`aa-bb-…` or `aa:bb:…`).
async fn node_by_mac(app: &App, mac: &str) -> Option<BmNode> {
    let mac = crate::foundation::validate::mac(mac).ok()?;
    let found = app.store.nodes_by_pxe_macs(vec![mac.clone()]).await.ok()?;
    let found = found.get(&mac)?;
    node(app, &found.node_id).await
}

/// Adds `detail` to the boot timeline of `mac` before the handler answers,
/// so the timeline's order is the order the node saw.
async fn record(app: &App, mac: String, detail: String) {
    if mac.is_empty() {
        return;
    }
    let _ = app.store.record_boot_event(mac, "http", detail).await;
}

/// Like [`record`], from a body that has just finished streaming (a
/// synchronous context): the write is queued, not awaited.
fn record_later(app: &Arc<App>, mac: String, detail: String) {
    if mac.is_empty() {
        return;
    }
    let store = app.store.clone();
    tokio::spawn(async move {
        let _ = store.record_boot_event(mac, "http", detail).await;
    });
}

/// The MAC behind a client address: our DHCP lease, else the kernel's
/// neighbour table (proxy mode: the leases are another server's).
pub async fn mac_of_peer(app: &App, ip: std::net::IpAddr) -> Option<String> {
    if let Ok(Some(mac)) = app.store.mac_of_lease(ip.to_string()).await {
        return Some(mac);
    }
    let arp = tokio::fs::read_to_string("/proc/net/arp").await.ok()?;
    let ip = ip.to_string();
    arp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&ip.as_str()) && f.get(3).is_some_and(|m| *m != "00:00:00:00:00:00"))
            .then(|| f[3].to_string())
    })
}

/// A node's boot variables in `mode` (rotating a missing deploy token).
async fn vars_for(h: &Http, node: &BmNode, mode: Mode, cfg: &Config) -> Result<BootVars, String> {
    let image = cfg.images.iter().find(|i| i.os_version == node.os_version);
    let token = if mode == Mode::Local {
        String::new()
    } else {
        match h.app.store.deploy_token(&node.node_id).await {
            Ok(Some(t)) if !t.is_empty() => t,
            _ => h
                .app
                .store
                .rotate_deploy_token(&node.node_id)
                .await
                .ok()
                .flatten()
                .ok_or("cannot give the node a deploy token")?,
        }
    };
    let urls = Urls {
        address: &h.address,
        http_port: h.port,
    };
    Ok(BootVars::new(
        mode,
        &NodeVars::from(node),
        image,
        cfg,
        &urls,
        &token,
    ))
}

async fn render_for(h: &Http, node: &BmNode, template: &str, mode: Mode) -> Result<String, String> {
    let cfg = h.app.config();
    let vars = vars_for(h, node, mode, &cfg).await?;
    let templates: Arc<Templates> = h.app.shared.templates();
    templates.render(template, &vars)
}

async fn boot_script(State(h): State<Http>, Path(file): Path<String>) -> Response {
    if file == "discovery.ipxe" {
        if !h.app.config().dhcp.discovery && !h.app.shared.intake.active() {
            return refuse(
                StatusCode::NOT_FOUND,
                &file,
                "discovery is off (dhcp.discovery)",
            );
        }
        let urls = Urls {
            address: &h.address,
            http_port: h.port,
        };
        let vars = BootVars::new(
            Mode::Local,
            &NodeVars::default(),
            None,
            &h.app.config(),
            &urls,
            "",
        );
        return match h
            .app
            .shared
            .templates()
            .render("ipxe/discovery.ipxe", &vars)
        {
            Ok(s) => text(s),
            Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &file, &e),
        };
    }
    let Some(node_id) = file.strip_suffix(".ipxe") else {
        return refuse(StatusCode::NOT_FOUND, &file, "not a boot script name");
    };
    let Some(node) = node(&h.app, node_id).await else {
        return refuse(StatusCode::NOT_FOUND, &file, "no such node");
    };
    let mode = h.app.provision.boot_mode(&node, &h.app.config());
    match render_for(&h, &node, mode.ipxe_template(), mode).await {
        Ok(s) => {
            if mode != Mode::Local {
                h.app.provision.served(&node.node_id);
            }
            tracing::info!(node_id = %node.node_id, ?mode, "http: served the boot script");
            let what = match mode {
                Mode::Local => "local-disk boot script",
                Mode::Deploy => "deploy boot script",
                Mode::Install => "installer boot script",
                Mode::Inspect => "inspection boot script",
                Mode::Clean => "cleaning boot script",
            };
            record(
                &h.app,
                node.pxe_mac.clone(),
                format!("GET /boot/{file}: {what}"),
            )
            .await;
            text(s)
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &file, &e),
    }
}

/// A per-MAC boot loader config: `grub.cfg-01-<mac>` or `01-<mac>`.
pub async fn generated_config(
    app: &Arc<App>,
    address: &str,
    port: u16,
    name: &str,
) -> Option<(String, String)> {
    if name == "grub/grub.cfg" {
        // GRUB's first config (signed netboot image): any machine gets it,
        // and it hands over to its MAC's config.
        let urls = Urls {
            address,
            http_port: port,
        };
        let vars = BootVars::new(
            Mode::Local,
            &NodeVars::default(),
            None,
            &app.config(),
            &urls,
            "",
        );
        return match app.shared.templates().render("grub/netboot.cfg", &vars) {
            Ok(s) => Some((String::new(), s)),
            Err(e) => {
                tracing::warn!(name, "boot config: {e}");
                None
            }
        };
    }
    let (template, mac) = if let Some(m) = name.strip_prefix("grub/grub.cfg-01-") {
        ("grub/grub.cfg", m)
    } else if let Some(m) = name.strip_prefix("pxelinux.cfg/01-") {
        ("pxelinux/pxelinux.cfg", m)
    } else {
        return None;
    };
    let node = node_by_mac(app, mac).await?;
    let h = Http {
        app: app.clone(),
        address: address.to_string(),
        port,
    };
    let mode = app.provision.boot_mode(&node, &app.config());
    match render_for(&h, &node, template, mode).await {
        Ok(s) => {
            if mode != Mode::Local {
                // The boot loader asked for what the node boots now: the
                // node network-booted (as for an iPXE script).
                app.provision.served(&node.node_id);
            }
            Some((node.pxe_mac.clone(), s))
        }
        Err(e) => {
            tracing::warn!(name, "boot config: {e}");
            None
        }
    }
}

async fn grub_config(State(h): State<Http>, Path(file): Path<String>) -> Response {
    loader_config(h, format!("grub/{file}")).await
}

async fn pxelinux_config(State(h): State<Http>, Path(file): Path<String>) -> Response {
    loader_config(h, format!("pxelinux.cfg/{file}")).await
}

async fn loader_config(h: Http, name: String) -> Response {
    match generated_config(&h.app, &h.address, h.port, &name).await {
        Some((mac, body)) => {
            record(&h.app, mac, format!("GET /boot/{name}")).await;
            text(body)
        }
        None => refuse(StatusCode::NOT_FOUND, &name, "no node with that MAC"),
    }
}

/// Streams `path` (Range, Content-Length), recording it in the timeline
/// under `mac` when the body has been sent.
async fn stream(
    h: &Http,
    path: std::path::PathBuf,
    label: String,
    mac: Option<String>,
    req: Request,
) -> Response {
    let range = req.headers().contains_key(header::RANGE);
    let res = match tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
    {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = res.status();
    if status == StatusCode::NOT_FOUND {
        return refuse(StatusCode::NOT_FOUND, &label, "file not found");
    }
    tracing::debug!(file = %label, status = status.as_u16(), "http: file");
    let Some(mac) = mac else {
        return res.map(Body::new);
    };
    let (parts, body) = res.into_parts();
    let app = h.app.clone();
    let inner = Body::new(body);
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let counted = Counted {
        expected: http_body::Body::size_hint(&inner).exact().or(length),
        inner,
        bytes: 0,
        started: Instant::now(),
        done: Some(Box::new(move |bytes, ms, complete| {
            counted(if complete { "ok" } else { "incomplete" }, bytes);
            let how = if complete { "" } else { " (client went away)" };
            let part = if range { " (range)" } else { "" };
            record_later(
                &app,
                mac,
                format!("GET {label}{part}: {bytes} bytes in {ms} ms{how}"),
            );
        })),
    };
    Response::from_parts(parts, Body::new(counted))
}

type Done = Box<dyn FnOnce(u64, u64, bool) + Send>;

/// Counts a boot file transfer for the metrics.
fn counted(result: &str, bytes: u64) {
    let m = crate::foundation::metrics::metrics();
    m.http_transfers.with_label_values(&[result]).inc();
    m.http_bytes.with_label_values(&[result]).inc_by(bytes);
}

/// A body that counts what it sent and reports once, at its end or drop.
struct Counted {
    inner: Body,
    /// Content-Length, when known: hyper stops polling once it is sent.
    expected: Option<u64>,
    bytes: u64,
    started: Instant,
    done: Option<Done>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let p = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &p {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            std::task::Poll::Ready(None) => self.finish(true),
            _ => {}
        }
        p
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Counted {
    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.done.take() {
            done(
                self.bytes,
                self.started.elapsed().as_millis() as u64,
                complete,
            );
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let complete = self.expected.is_some_and(|n| n == self.bytes);
        self.finish(complete);
    }
}

async fn boot_file(
    State(h): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    if let Some(file) = h.app.config().secure_boot_file(&path) {
        let mac = mac_of_peer(&h.app, peer.ip()).await;
        return stream(&h, file, format!("/files/{path}"), mac, req).await;
    }
    let root = match std::path::Path::new(&h.app.config().boot.files_dir).canonicalize() {
        Ok(r) => r,
        Err(_) => return refuse(StatusCode::NOT_FOUND, &path, "boot.files_dir is missing"),
    };
    let file = match crate::foundation::tftp::resolve(&root, &path) {
        Ok(f) => f,
        Err(crate::foundation::tftp::PathError::NotFound) => {
            return refuse(StatusCode::NOT_FOUND, &path, "file not found")
        }
        Err(crate::foundation::tftp::PathError::Forbidden) => {
            return refuse(
                StatusCode::FORBIDDEN,
                &path,
                "outside the boot files folder",
            )
        }
    };
    let mac = mac_of_peer(&h.app, peer.ip()).await;
    stream(&h, file, format!("/files/{path}"), mac, req).await
}

async fn deploy_file(
    State(h): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(file): Path<String>,
    req: Request,
) -> Response {
    let cfg = h.app.config();
    let path = match file.as_str() {
        "kernel" => &cfg.deploy.kernel,
        "initrd" => &cfg.deploy.initrd,
        _ => {
            return refuse(
                StatusCode::NOT_FOUND,
                &file,
                "the deploy ramdisk has a kernel and an initrd only",
            )
        }
    };
    if path.is_empty() || !std::path::Path::new(path).is_file() {
        return refuse(
            StatusCode::NOT_FOUND,
            &file,
            "the deploy ramdisk is not built: run `rackboot ramdisk build` or set [deploy] kernel/initrd",
        );
    }
    let mac = mac_of_peer(&h.app, peer.ip()).await;
    notify_fetch(
        &h.app,
        mac.as_deref(),
        if file == "kernel" { "kernel" } else { "initrd" },
    )
    .await;
    stream(&h, path.into(), format!("/deploy/{file}"), mac, req).await
}

async fn image_file(
    State(h): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((os_version, file)): Path<(String, String)>,
    req: Request,
) -> Response {
    let cfg = h.app.config();
    let label = format!(
        "{}/{file}",
        crate::foundation::config::image_path(&os_version)
    );
    let Some(image) = cfg.images.iter().find(|i| i.os_version == os_version) else {
        return refuse(
            StatusCode::NOT_FOUND,
            &label,
            "no such os_version in [[images]]",
        );
    };
    let path = match file.as_str() {
        // Prepared on first use when no provision has done it yet (a
        // local file: checked and made sparse raw; a URL: downloaded).
        "image" if image.method != crate::foundation::config::ImageMethod::Image => {
            return refuse(
                StatusCode::NOT_FOUND,
                &label,
                "an installer has no image file (its kernel and initrd are served)",
            )
        }
        "image" => {
            let log_label = label.clone();
            match h
                .app
                .provision
                .images
                .prepare(
                    image,
                    move |line| tracing::info!(image = %log_label, "{line}"),
                )
                .await
            {
                Ok(p) => p.raw,
                Err(e) => {
                    return refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &label,
                        &format!("the image could not be prepared: {e}"),
                    )
                }
            }
        }
        "kernel" | "initrd" => {
            let p = if file == "kernel" {
                &image.kernel
            } else {
                &image.initrd
            };
            if p.is_empty() || p.starts_with("http://") || p.starts_with("https://") {
                return refuse(
                    StatusCode::NOT_FOUND,
                    &label,
                    "not served by rackboot (no local file)",
                );
            }
            std::path::PathBuf::from(p)
        }
        _ => {
            return refuse(
                StatusCode::NOT_FOUND,
                &label,
                "an image has image, kernel and initrd files",
            )
        }
    };
    let mac = mac_of_peer(&h.app, peer.ip()).await;
    let what = match file.as_str() {
        "kernel" => "kernel",
        "initrd" => "initrd",
        _ => "image",
    };
    notify_fetch(&h.app, mac.as_deref(), what).await;
    // The deploy ramdisk fetches an image extent by extent: the timeline
    // shows its progress callbacks, not every range.
    let ranged_image = what == "image" && req.headers().contains_key(header::RANGE);
    stream(&h, path, label, if ranged_image { None } else { mac }, req).await
}

/// Tells the provision of the node behind `mac` (if any) that it fetched
/// `what`.
async fn notify_fetch(app: &App, mac: Option<&str>, what: &'static str) {
    if let Some(mac) = mac {
        app.provision.fetched(mac, what).await;
    }
}

/// The node `node_id` when `token` is its current deploy token; else the
/// 404 or 403 to answer (the reason in the log).
async fn token_holder(
    app: &App,
    node_id: &str,
    token: &str,
    label: &str,
) -> Result<BmNode, Response> {
    let Some(node) = node(app, node_id).await else {
        return Err(refuse(StatusCode::NOT_FOUND, label, "no such node"));
    };
    if !token_ok(app, node_id, token).await {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            label,
            "wrong or expired deploy token",
        ));
    }
    Ok(node)
}

/// Whether `token` is `node`'s current deploy token (constant time).
async fn token_ok(app: &App, node_id: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    match app.store.deploy_token(node_id).await {
        Ok(Some(t)) if !t.is_empty() && t.len() == token.len() => {
            t.as_bytes().ct_eq(token.as_bytes()).into()
        }
        _ => false,
    }
}

async fn install_config(
    State(h): State<Http>,
    Path((node_id, token, file)): Path<(String, String, String)>,
) -> Response {
    let label = format!("/config/{node_id}/…/{file}");
    let node = match token_holder(&h.app, &node_id, &token, &label).await {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    let cfg = h.app.config();
    let Some(image) = cfg.images.iter().find(|i| i.os_version == node.os_version) else {
        return refuse(
            StatusCode::NOT_FOUND,
            &label,
            "the node's os_version is not in [[images]]",
        );
    };
    let Some(template) = templates::config_file_template(&image.template, &file) else {
        return refuse(
            StatusCode::NOT_FOUND,
            &label,
            "not an install config of this image",
        );
    };
    match render_for(&h, &node, template, Mode::Install).await {
        Ok(s) => {
            record(
                &h.app,
                node.pxe_mac.clone(),
                format!("GET {label}: install config"),
            )
            .await;
            text(s)
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &label, &e),
    }
}

/// A node's virtual-media ISO, behind its deploy token; its BMC fetches
/// it (Range allowed), and the node's timeline says so.
async fn vmedia_iso(
    State(h): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((node_id, token, file)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let label = format!("/vmedia/{node_id}/…/{file}");
    let node = match token_holder(&h.app, &node_id, &token, &label).await {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    if file != "deploy.iso" {
        return refuse(
            StatusCode::NOT_FOUND,
            &label,
            "the virtual media is deploy.iso",
        );
    }
    let path = h.app.provision.vmedia_iso(&node.node_id);
    if !path.is_file() {
        return refuse(
            StatusCode::NOT_FOUND,
            &label,
            "no virtual-media ISO for this node now",
        );
    }
    let mac = (!node.pxe_mac.is_empty()).then(|| node.pxe_mac.clone());
    let who = format!(
        "{label} (virtual media, fetched by the BMC at {})",
        peer.ip()
    );
    stream(&h, path, who, mac, req).await
}

/// Discovery's callbacks: the ramdisk booted by `discovery.ipxe` posts its
/// inventory here, and the machine becomes a `new` BMNode. Only with
/// `dhcp.discovery`, and only for a MAC that network-booted here within the
/// hour (its DHCP exchange is in the timeline): no HTTP client elsewhere can
/// create nodes.
async fn discover(
    State(h): State<Http>,
    Path((mac, event)): Path<(String, String)>,
    body: Body,
) -> Response {
    let label = format!("/discover/{mac}/{event}");
    if !h.app.config().dhcp.discovery && !h.app.shared.intake.active() {
        return refuse(
            StatusCode::NOT_FOUND,
            &label,
            "discovery is off (dhcp.discovery)",
        );
    }
    let Ok(mac) = crate::foundation::validate::mac(&mac) else {
        return refuse(StatusCode::BAD_REQUEST, &label, "not a MAC address");
    };
    let since = (crate::foundation::ids::now_secs() - 3600) * 1000;
    let booted = h
        .app
        .store
        .boot_events(mac.clone(), since, 1)
        .await
        .map(|e| !e.is_empty())
        .unwrap_or(false);
    if !booted {
        return refuse(
            StatusCode::FORBIDDEN,
            &label,
            "this MAC has not network-booted here within the hour",
        );
    }
    let body = match read_body(body, callback_cap(&event), &label).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    match parse_callback(&event, &body) {
        Ok(Callback::Inventory(json)) => {
            let raw: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            match h.app.provision.enlist(&mac, &raw).await {
                Ok((id, what)) => {
                    tracing::info!(%mac, node_id = %id, "discovery: {what} {id}");
                    let _ = h
                        .app
                        .store
                        .record_boot_event(mac, "callback", format!("discovery: {what} {id}"))
                        .await;
                    text(format!("{id}\n"))
                }
                Err(e) => refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &label,
                    &format!("cannot enlist: {e}"),
                ),
            }
        }
        Ok(_) => text("ok\n".into()),
        Err(why) => refuse(StatusCode::BAD_REQUEST, &label, &why),
    }
}

async fn callback(
    State(h): State<Http>,
    Path((node_id, token, event)): Path<(String, String, String)>,
    body: Body,
) -> Response {
    let label = format!("/callback/{node_id}/…/{event}");
    // The token first: a stranger's body is never read.
    let node = match token_holder(&h.app, &node_id, &token, &label).await {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    let body = match read_body(body, callback_cap(&event), &label).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let cb = match parse_callback(&event, &body) {
        Ok(c) => c,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &label, &why),
    };
    let detail = match &cb {
        Callback::Progress { percent, message } if message.is_empty() => {
            format!("progress {percent}%")
        }
        Callback::Progress { percent, message } => format!("progress {percent}%: {message}"),
        Callback::Done => "done".to_string(),
        Callback::Booted => "booted (first boot of the installed OS)".to_string(),
        Callback::Failed { message } => format!("failed: {message}"),
        Callback::Log { message } => format!("log: {message}"),
        Callback::Inventory(json) => format!("inventory ({} bytes)", json.len()),
    };
    tracing::info!(%node_id, "callback: {detail}");
    if !node.pxe_mac.is_empty() {
        let _ = h
            .app
            .store
            .record_boot_event(node.pxe_mac.clone(), "callback", detail)
            .await;
    }
    // Kept (an inventory), and heard by the node's provision or inspection
    // (if one runs); a deploy ramdisk's inventory is answered with its plan.
    match h.app.provision.callback(&node_id, cb).await {
        Ok(Reply::Ok) => text("ok\n".into()),
        Ok(Reply::Plan(json)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Ok(Reply::Refused(why)) => refuse(StatusCode::CONFLICT, &label, &why),
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &label,
            &format!("cannot store the callback: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::store::BmNodeStatus;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_provisioning_node_gets_its_installer_config_and_calls_back_with_its_token() {
        let (app, router, _dir) = setup().await;
        let id = "n-Jr8KE6cf";
        // Registered, not provisioning: the local disk, never a deploy.
        let (status, script) = call(&router, "GET", &format!("/boot/{id}.ipxe"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(script.contains("booting from the local disk"), "{script}");

        app.store
            .modify_bm_node(id, |n| {
                n.status = BmNodeStatus::Provisioning;
                Ok(())
            })
            .await
            .unwrap();
        let first = app.store.rotate_deploy_token(id).await.unwrap().unwrap();
        // A provision task listens for the node (it would have set all this).
        let mut watch = app.provision.watch(id);
        let (_, script) = call(&router, "GET", &format!("/boot/{id}.ipxe"), "").await;
        assert!(
            script.contains("kernel http://10.99.0.1:8080/images/ubuntu-24.04/kernel"),
            "{script}"
        );
        assert!(
            script.contains(&format!("s=http://10.99.0.1:8080/config/{id}/{first}/")),
            "{script}"
        );

        let (status, ud) = call(
            &router,
            "GET",
            &format!("/config/{id}/{first}/user-data"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ud}");
        assert!(
            ud.contains("hostname: web01") && ud.contains("path: /dev/vda"),
            "{ud}"
        );
        let (status, _) = call(
            &router,
            "GET",
            &format!("/config/{id}/{first}/meta-data"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, why) = call(&router, "GET", &format!("/config/{id}/{first}/ks.cfg"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{why}");
        let (status, why) =
            call(&router, "GET", &format!("/config/{id}/wrong/user-data"), "").await;
        assert_eq!(
            (status, why.as_str()),
            (StatusCode::FORBIDDEN, "wrong or expired deploy token\n")
        );

        let cb = format!("/callback/{id}/{first}");
        let (status, _) = call(
            &router,
            "POST",
            &format!("{cb}/progress"),
            "percent=42&message=copying",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            watch.events.recv().await.unwrap(),
            crate::service::provision::DeployEvent::BootScript
        );
        assert_eq!(
            watch.events.recv().await.unwrap(),
            crate::service::provision::DeployEvent::Callback(Callback::Progress {
                percent: 42,
                message: "copying".into()
            })
        );
        let (status, _) = call(
            &router,
            "POST",
            &format!("{cb}/inventory"),
            r#"{"cpu":{"count":2}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (inventory, when) = app.store.inventory(id).await.unwrap().unwrap();
        assert_eq!(inventory, r#"{"cpu":{"count":2}}"#);
        assert!(when.is_some());
        let (status, why) = call(&router, "POST", &format!("{cb}/progress"), "percent=420").await;
        assert_eq!(
            (status, why.as_str()),
            (StatusCode::BAD_REQUEST, "percent must be 0 to 100\n")
        );
        let (status, _) = call(&router, "POST", "/callback/n-NOPE0000/x/done", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The timeline holds the callbacks.
        let timeline = app
            .store
            .boot_events("52:54:00:99:00:10".into(), 0, 100)
            .await
            .unwrap();
        let text: Vec<String> = timeline
            .iter()
            .map(|e| format!("{} {}", e.kind, e.detail))
            .collect();
        assert!(
            text.contains(&"callback progress 42%: copying".to_string()),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("http GET /config/")),
            "{text:?}"
        );

        // A new provision rotates the token: the old one stops working.
        let second = app.store.rotate_deploy_token(id).await.unwrap().unwrap();
        assert_ne!(first, second);
        let (status, _) = call(&router, "POST", &format!("{cb}/done"), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(
            &router,
            "POST",
            &format!("/callback/{id}/{second}/done"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // Unknown scripts and files: 404 with a reason.
        let (status, why) = call(&router, "GET", "/boot/n-NOPE0000.ipxe", "").await;
        assert_eq!(
            (status, why.as_str()),
            (StatusCode::NOT_FOUND, "no such node\n")
        );
        let (status, why) = call(&router, "GET", "/deploy/kernel", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(why.contains("rackboot ramdisk build"), "{why}");
        let (status, _) = call(&router, "GET", "/images/ubuntu-24.04/image", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn callback_bodies_are_read_only_behind_the_token_and_capped_per_route() {
        let (app, router, _dir) = setup().await;
        let id = "n-Jr8KE6cf";
        let token = app.store.rotate_deploy_token(id).await.unwrap().unwrap();
        let big = "x".repeat(3 * 1024 * 1024);
        // A stranger's 3 MiB body: refused for its token, not its size (the
        // body is never read).
        let (status, why) = call(
            &router,
            "POST",
            &format!("/callback/{id}/wrong/inventory"),
            &big,
        )
        .await;
        assert_eq!(
            (status, why.as_str()),
            (StatusCode::FORBIDDEN, "wrong or expired deploy token\n")
        );
        // With the token: an inventory may be 1 MiB, a progress report 16 KiB.
        let cb = format!("/callback/{id}/{token}");
        let (status, _) = call(&router, "POST", &format!("{cb}/inventory"), &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let long = format!("percent=5&message={}", "y".repeat(20 * 1024));
        let (status, _) = call(&router, "POST", &format!("{cb}/progress"), &long).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _) = call(&router, "POST", &format!("{cb}/progress"), "percent=5").await;
        assert_eq!(status, StatusCode::OK);
        let inventory = format!(
            r#"{{"cpu":{{"count":2}},"pad":"{}"}}"#,
            "z".repeat(500 * 1024)
        );
        let (status, _) = call(&router, "POST", &format!("{cb}/inventory"), &inventory).await;
        assert_eq!(status, StatusCode::OK);
    }

    async fn setup() -> (Arc<App>, Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::foundation::store::Store::open(&dir.path().join("db.sqlite")).unwrap();
        let cfg = Config::parse(
            "[[images]]\nos_version = \"ubuntu-24.04\"\nmethod = \"installer\"\nurl = \"http://m/\"\nkernel = \"/k\"\ninitrd = \"/i\"\ntemplate = \"autoinstall\"\n",
        )
        .unwrap();
        let mut node = BmNode::blank();
        node.node_id = "n-Jr8KE6cf".into();
        node.hostname = "web01".into();
        node.os_version = "ubuntu-24.04".into();
        node.pxe_mac = "52:54:00:99:00:10".into();
        node.os_disk_name = "vda".into();
        node.ipmi_address = "127.0.0.1".into();
        node.cpu_arch = "x86_64".into();
        store.insert_bm_nodes(vec![node]).await.unwrap();
        let app = Arc::new(App::new(store, cfg, dir.path().to_path_buf()));
        let router = router(Http {
            app: app.clone(),
            address: "10.99.0.1".into(),
            port: 8080,
        });
        (app, router, dir)
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 99, 0, 100], 40000))));
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}
