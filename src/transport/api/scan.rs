//! ScanBMNodes (seed 002 §2.8): checks the request (an address range with
//! credentials, or registered nodes to re-scan) into a
//! [`crate::service::scan::Plan`] and starts the scan service's job.

use super::bmnodes::check_node_ids;
use super::{Call, Fields, HandlerFuture};
use crate::foundation::config::ScanCredentials;
use crate::foundation::errors::ApiError;
use crate::foundation::store::BmNodeFilter;
use crate::service::app::App;
use crate::service::scan::{Plan, MAX_ADDRESSES};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn scan(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let node_ids = p.list("node_ids");
        let has_range = p.str("ip_start").is_some() || p.str("ip_end").is_some();
        let given = match (p.str("ipmi_username"), p.str("ipmi_password")) {
            (Some(u), Some(pw)) => Some(ScanCredentials {
                username: u.into(),
                password: pw.into(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ApiError::missing(
                    "ipmi_password",
                    " (given with ipmi_username)",
                ))
            }
            (None, Some(_)) => {
                return Err(ApiError::missing(
                    "ipmi_username",
                    " (given with ipmi_password)",
                ))
            }
        };
        let plan = if !node_ids.is_empty() {
            if has_range {
                return Err(ApiError::field(
                    "node_ids",
                    "send either node_ids or ip_start/ip_end, not both",
                ));
            }
            check_node_ids("node_ids", &node_ids)?;
            let (nodes, _) = app
                .store
                .describe_bm_nodes(BmNodeFilter {
                    node_ids: node_ids.clone(),
                    ..Default::default()
                })
                .await?;
            let mut per_node = HashMap::new();
            let mut addresses = Vec::new();
            for n in &nodes {
                let target = app
                    .power
                    .controller
                    .target(n)
                    .map_err(|e| ApiError::field("node_ids", e.to_string()))?;
                addresses.push(target.addr);
                per_node.insert(
                    target.addr,
                    given.clone().unwrap_or(ScanCredentials {
                        username: n.ipmi_username.clone(),
                        password: n.ipmi_password.clone(),
                    }),
                );
            }
            Plan {
                addresses,
                credentials: Vec::new(),
                per_node,
                known: node_ids,
            }
        } else {
            if p.str("ip_start").is_none() {
                return Err(ApiError::missing(
                    "ip_start",
                    " (first BMC address of the range, or send node_ids)",
                ));
            }
            let port = p.int("ipmi_port").unwrap_or(623);
            if !(1..=65535).contains(&port) {
                return Err(ApiError::field(
                    "ipmi_port",
                    format!("{port} is not a UDP port (1 to 65535)"),
                ));
            }
            let addresses = p
                .ipv4_range(MAX_ADDRESSES, "a scan")?
                .into_iter()
                .map(|ip| SocketAddr::from((ip, port as u16)))
                .collect();
            let credentials = match given {
                Some(c) => vec![c],
                None => app.config().scan.default_credentials.clone(),
            };
            if credentials.is_empty() {
                return Err(ApiError::missing(
                    "ipmi_username",
                    " and ipmi_password (or configure scan.default_credentials): a scan needs credentials to log in to the BMCs it finds",
                ));
            }
            Plan {
                addresses,
                credentials,
                per_node: HashMap::new(),
                known: Vec::new(),
            }
        };
        let job = app
            .scan
            .start(plan, &call.caller.user_id, &call.caller.request_id)
            .await?;
        Ok(Fields::new()
            .with("job_id", job.job_id)
            .with("job_action", "ScanBMNodes"))
    })
}
