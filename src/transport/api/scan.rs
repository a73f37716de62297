//! ScanBMNodes (seed 002 §2.8): checks the request (an address range with
//! credentials and the protocols to probe, or registered nodes to re-scan,
//! each with its own driver) into a
//! [`crate::service::scan::Plan`] and starts the scan service's job.

use super::bmnodes::check_node_ids;
use super::{Call, Fields, HandlerFuture};
use crate::foundation::config::ScanCredentials;
use crate::foundation::errors::ApiError;
use crate::foundation::redfish::{BmcUrl, Driver};
use crate::foundation::store::BmNodeFilter;
use crate::service::app::App;
use crate::service::scan::{Plan, MAX_ADDRESSES};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which protocols a scan probes (`protocols`: ipmi, redfish; default both).
fn protocols(p: &super::params::Params) -> Result<(bool, bool), ApiError> {
    let list = p.list("protocols");
    if list.is_empty() {
        return Ok((true, true));
    }
    let (mut ipmi, mut redfish) = (false, false);
    for x in &list {
        match x.to_ascii_lowercase().as_str() {
            "ipmi" => ipmi = true,
            "redfish" => redfish = true,
            other => {
                return Err(ApiError::field(
                    "protocols",
                    format!("`{other}` is not a protocol (allowed: ipmi, redfish)"),
                ))
            }
        }
    }
    Ok((ipmi, redfish))
}

fn port_param(
    p: &super::params::Params,
    name: &str,
    default: i64,
    what: &str,
) -> Result<u16, ApiError> {
    let port = p.int(name).unwrap_or(default);
    if !(1..=65535).contains(&port) {
        return Err(ApiError::field(
            name,
            format!("{port} is not a {what} port (1 to 65535)"),
        ));
    }
    Ok(port as u16)
}

pub fn scan(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let (use_ipmi, use_redfish) = protocols(p)?;
        let verify_tls = p.int("bmc_verify_tls").unwrap_or(1) == 1;
        let intake = p.int("intake") == Some(1);
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
            let mut redfish = Vec::new();
            let mut verify = true;
            for n in &nodes {
                let bad =
                    |why: String| ApiError::field("node_ids", format!("node {}: {why}", n.node_id));
                let url = n
                    .bmc_url()
                    .ok_or_else(|| bad("has no BMC address".into()))?;
                let host = match url.driver {
                    Driver::Ipmi => {
                        let t = app
                            .power
                            .controller
                            .ipmi_target(n)
                            .map_err(|e| bad(e.to_string()))?;
                        addresses.push(t.addr);
                        t.addr.ip()
                    }
                    _ => {
                        let host = url.host.parse().map_err(|_| {
                            bad(format!(
                                "{} is not an IP address: a re-scan probes addresses",
                                url.host
                            ))
                        })?;
                        verify &= n.bmc_verify_tls;
                        redfish.push(url);
                        host
                    }
                };
                per_node.insert(
                    host,
                    given.clone().unwrap_or(ScanCredentials {
                        username: n.ipmi_username.clone(),
                        password: n.ipmi_password.clone(),
                    }),
                );
            }
            Plan {
                addresses,
                redfish,
                verify_tls: verify,
                credentials: Vec::new(),
                per_node,
                known: node_ids,
                intake,
            }
        } else {
            if p.str("ip_start").is_none() {
                return Err(ApiError::missing(
                    "ip_start",
                    " (first BMC address of the range, or send node_ids)",
                ));
            }
            let port = port_param(p, "ipmi_port", 623, "UDP")?;
            let rf_port = port_param(p, "redfish_port", 443, "TCP")?;
            let range = p.ipv4_range(MAX_ADDRESSES, "a scan")?;
            let addresses = if use_ipmi {
                range
                    .iter()
                    .map(|ip| SocketAddr::from((*ip, port)))
                    .collect()
            } else {
                Vec::new()
            };
            let redfish = if use_redfish {
                range
                    .iter()
                    .map(|ip| BmcUrl {
                        driver: Driver::Redfish,
                        tls: true,
                        host: ip.to_string(),
                        port: rf_port,
                        system: None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
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
                redfish,
                verify_tls,
                credentials,
                per_node: HashMap::new(),
                known: Vec::new(),
                intake,
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
