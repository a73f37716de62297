//! DescribeBootEvents: a machine's boot timeline (DHCP exchanges, TFTP and
//! HTTP files served), the answer to "where did this boot stall?".

use super::{Call, Fields, HandlerFuture};
use crate::foundation::errors::ApiError;
use crate::foundation::ids::{format_time, is_id, NODE_PREFIX};
use crate::service::app::App;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn describe(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let mac = match (p.str("node_id"), p.str("mac")) {
            (Some(id), None) => {
                if !is_id(id, NODE_PREFIX) {
                    return Err(ApiError::field(
                        "node_id",
                        format!("`{id}` is not a node id (n- followed by 8 letters or digits)"),
                    ));
                }
                app.store.pxe_mac_of(id.to_string()).await?.ok_or_else(|| {
                    ApiError::not_found(format!("node {id} is not registered, or has no PXE MAC yet: check it with DescribeBMNodes"))
                })?
            }
            (None, Some(mac)) => {
                crate::foundation::validate::mac(mac).map_err(|why| ApiError::field("mac", why))?
            }
            (None, None) => {
                return Err(ApiError::missing(
                    "node_id",
                    " (or `mac`: whose boot timeline to show)",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "mac",
                    "send either node_id or mac, not both",
                ))
            }
        };
        let since_ms = p.since_ms("since")?;
        let limit = p.limit("limit", 200, 10_000)?;
        let events = app.store.boot_events(mac.clone(), since_ms, limit).await?;
        let set: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "time": format!("{}.{:03}", format_time(e.created_ms / 1000), e.created_ms % 1000),
                    "kind": e.kind,
                    "mac": e.mac,
                    "node_id": e.node_id,
                    "detail": e.detail,
                })
            })
            .collect();
        let n = set.len();
        // The latest attempt's likely trouble; none while a job works on
        // the node (it is still booting).
        let node_id = match p.str("node_id") {
            Some(id) => id.to_string(),
            None => events.last().map(|e| e.node_id.clone()).unwrap_or_default(),
        };
        let diagnosis = if !node_id.is_empty() && app.provision.is_running(&node_id) {
            None
        } else {
            app.provision.diagnose_boot(&mac, None).await
        };
        let (cause, text) = diagnosis.map(|d| (d.cause, d.text)).unwrap_or_default();
        Ok(Fields::new()
            .with("event_set", set)
            .with("total_count", n)
            .with("mac", mac)
            .with("diagnosis", text)
            .with("diagnosis_cause", cause))
    })
}
