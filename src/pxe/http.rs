//! The HTTP boot server (TCP, on the provisioning address): per-node iPXE
//! scripts. Unknown node or template: a plain 404 with the reason in the
//! log.

use super::templates::{NodeVars, Templates};
use crate::api::Ctx;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Http {
    ctx: Arc<Ctx>,
    templates: Arc<Templates>,
}

/// Serves on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    templates: Arc<Templates>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/boot/{file}", get(boot_script))
        .with_state(Http { ctx, templates });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!("HTTP boot server stopped: {e}");
    }
}

fn script(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn not_found(file: &str, why: &str) -> Response {
    tracing::info!(file, "http: 404: {why}");
    (StatusCode::NOT_FOUND, format!("{why}\n")).into_response()
}

async fn boot_script(State(h): State<Http>, Path(file): Path<String>) -> Response {
    if file == "discovery.ipxe" {
        if !h.ctx.config().dhcp.discovery {
            return not_found(&file, "discovery is off (dhcp.discovery)");
        }
        return match h.templates.render("ipxe/discovery.ipxe", &()) {
            Ok(s) => script(s),
            Err(e) => not_found(&file, &e),
        };
    }
    let Some(node_id) = file
        .strip_suffix(".ipxe")
        .filter(|id| crate::ids::is_id(id, crate::ids::NODE_PREFIX))
    else {
        return not_found(&file, "not a boot script name");
    };
    let filter = crate::store::BmNodeFilter {
        node_ids: vec![node_id.to_string()],
        ..Default::default()
    };
    let node = match h.ctx.store.describe_bm_nodes(filter).await {
        Ok((nodes, _)) => nodes.into_iter().next(),
        Err(_) => None,
    };
    let Some(node) = node else {
        return not_found(&file, "no such node");
    };
    let vars = NodeVars {
        node_id: node.node_id.clone(),
        hostname: node.hostname.clone(),
    };
    match h.templates.render("ipxe/local.ipxe", &vars) {
        Ok(s) => {
            tracing::info!(node_id = %node.node_id, "http: served the local-disk boot script");
            if !node.pxe_mac.is_empty() {
                let (store, mac) = (h.ctx.store.clone(), node.pxe_mac.clone());
                let detail = format!("GET /boot/{file}: local-disk boot script");
                tokio::spawn(async move {
                    let _ = store.record_boot_event(mac, "http", detail).await;
                });
            }
            script(s)
        }
        Err(e) => not_found(&file, &e),
    }
}
