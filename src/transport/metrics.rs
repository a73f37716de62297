//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen` (loopback
//! by default) answers the text exposition of
//! [`crate::foundation::metrics`], its gauges refreshed from the store
//! first ([`crate::service::health::refresh_gauges`]). Anything else is a
//! 404. At most [`MAX_CONNECTIONS`] connections at once (more are closed at
//! once), each closed after [`CONNECTION_TIMEOUT`]: a scraper holds one.

use crate::foundation::metrics;
use crate::service::app::App;
use axum::body::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const MAX_CONNECTIONS: usize = 16;
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&app, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(slot);
        });
    }
}

async fn answer<B>(app: &App, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &'static str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "rackboot serves its metrics at /metrics\n".into(),
        );
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET /metrics\n".into(),
        );
    }
    if let Err(e) = crate::service::health::refresh_gauges(&app.shared).await {
        tracing::warn!("metrics: cannot count the store's nodes and jobs: {e}");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("the store cannot be read: {e}\n"),
        );
    }
    reply(StatusCode::OK, metrics::CONTENT_TYPE, metrics::encode())
}
