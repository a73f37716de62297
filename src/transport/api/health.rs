//! GetHealth: is the daemon well, and what does it serve — version, schema
//! version, whether the store answers and passes its quick check, which
//! network services listen where, the last power-sync round, nodes and
//! jobs (the report is [`crate::service::health`]'s). A failing store is
//! still answered (ret_code 0, `healthy: false`, `store` saying why): the
//! answer is the diagnosis.

use super::{Call, Fields, HandlerFuture};
use crate::foundation::ids::format_time;
use crate::service::app::App;
use serde_json::{Map, Value};
use std::sync::Arc;

pub fn get_health(app: Arc<App>, _call: Call) -> HandlerFuture {
    Box::pin(async move {
        let h = crate::service::health::health(&app.shared, true).await;
        let listening: Map<String, Value> = h
            .listening
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        let count = |pairs: &[(String, i64)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, n)| (k.clone(), Value::from(*n)))
                .collect()
        };
        Ok(Fields::new()
            .with("healthy", u8::from(h.ok()))
            .with("version", h.version)
            .with("schema_version", h.schema_version)
            .with(
                "store",
                h.store_error.clone().unwrap_or_else(|| "ok".to_string()),
            )
            .with("listening", listening)
            .with("started_at", format_time(h.started_at))
            .with(
                "last_power_sync",
                h.last_power_sync.map(format_time).unwrap_or_default(),
            )
            .with("nodes", h.nodes())
            .with("nodes_by_status", count(&h.counts.nodes_by_status))
            .with("bmcs_unreachable", h.counts.bmcs_unreachable)
            .with("jobs_running", h.running_jobs())
            .with("dhcp_leases", h.counts.leases)
            .with("status", h.status_line(&app.config().dhcp.interface)))
    })
}
