//! The serial console actions: GetBMNodeConsoleLog (what a node's console
//! printed while rackboot watched it) and ConnectBMNodeConsole (an
//! interactive session: the answer upgrades the API connection to a raw
//! byte stream, which `server` splices to the console; `rackboot console`
//! is its client).

use super::{Call, Fields, HandlerFuture};
use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::ids::{format_time, is_id, NODE_PREFIX};
use crate::service::app::App;
use crate::service::console::{OpenError, Viewer};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The `Upgrade` protocol name of a console stream.
pub const UPGRADE_PROTOCOL: &str = "rackboot-console";

fn node_id(call: &Call) -> Result<String, ApiError> {
    let id = call
        .params
        .str("node_id")
        .ok_or_else(|| ApiError::missing("node_id", " (the node whose console to use)"))?;
    if !is_id(id, NODE_PREFIX) {
        return Err(ApiError::field(
            "node_id",
            format!("`{id}` is not a node id (n- followed by 8 letters or digits)"),
        ));
    }
    Ok(id.to_string())
}

pub fn log(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let id = node_id(&call)?;
        let p = &call.params;
        let since_ms = p.since_ms("since")?;
        let limit = p.limit("limit", 200, 20_000)?;
        if !app.store.bm_node_exists(id.clone()).await? {
            return Err(ApiError::not_found(format!(
                "node {id} is not registered: check it with DescribeBMNodes"
            )));
        }
        app.consoles.flush(&id).await;
        let lines = app.store.console_log(id, since_ms, limit).await?;
        let set: Vec<_> = lines
            .iter()
            .map(|l| {
                json!({
                    "time": format!("{}.{:03}", format_time(l.created_ms / 1000), l.created_ms % 1000),
                    "line": l.line,
                })
            })
            .collect();
        Ok(Fields::new()
            .with("total_count", set.len())
            .with("console_log", set))
    })
}

/// Viewers opened by ConnectBMNodeConsole, waiting for the server to
/// splice them to the upgraded connection (by request id).
fn parked() -> &'static Mutex<HashMap<String, Viewer>> {
    static PARKED: OnceLock<Mutex<HashMap<String, Viewer>>> = OnceLock::new();
    PARKED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The viewer ConnectBMNodeConsole opened for `request_id`, if any.
pub fn take_viewer(request_id: &str) -> Option<Viewer> {
    parked()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(request_id)
}

pub fn connect(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let id = node_id(&call)?;
        let force = call.params.int("force") == Some(1);
        let viewer = app.consoles.attach(&id, force).await.map_err(|e| match e {
            OpenError::NotFound(m) => {
                ApiError::not_found(format!("{m}: check the node id with DescribeBMNodes"))
            }
            e @ OpenError::Taken { .. } => ApiError::new(RetCode::BmcNoSession, e.to_string()),
            OpenError::Unsupported(m) => ApiError::new(RetCode::WrongState, m),
            OpenError::Bmc(m) if m.starts_with("cannot reach") => {
                ApiError::new(RetCode::BmcUnreachable, m)
            }
            OpenError::Bmc(m) => ApiError::new(RetCode::BmcCommandFailed, m),
        })?;
        let bmc = viewer.bmc.clone();
        parked()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call.caller.request_id.clone(), viewer);
        Ok(Fields::new()
            .with("node_id", &id)
            .with("bmc", bmc)
            .with("escape", "~."))
    })
}
