//! Provisioning and introspection actions: ProvisionBMNodes (seed 002
//! §2.5), GetProvisionBMNodesStatus/Log (§2.6, §2.7), AbortProvisionBMNodes,
//! and the introspection set of seed 003 (IntrospectBMNodes,
//! AbortIntrospection, GetIntrospectionData, ReapplyIntrospection). The work
//! itself is [`crate::service::provision`]'s.

use super::bmnodes::check_node_ids;
use super::{fields, jobs, Call, Fields, HandlerFuture};
use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::states::{can_clean, can_inspect, can_provision, can_rebuild};
use crate::foundation::store::{BmNode, BmNodeFilter, BmNodeStatus};
use crate::service::app::App;
use crate::service::provision::settings::MAX_USER_DATA;
use crate::service::provision::{DeploySettings, Kind, Wipe};
use serde_json::Value;
use std::sync::Arc;

/// Loads `node_ids` (all must exist), refusing any whose state `allowed`
/// rejects, naming it and its state.
async fn load(
    app: &App,
    field: &str,
    node_ids: Vec<String>,
    allowed: fn(BmNodeStatus) -> bool,
    what: &str,
) -> Result<Vec<BmNode>, ApiError> {
    if node_ids.is_empty() {
        return Err(ApiError::missing(field, " (the nodes to work on, n-…)"));
    }
    check_node_ids(field, &node_ids)?;
    let (nodes, _) = app
        .store
        .describe_bm_nodes(BmNodeFilter {
            node_ids,
            ..Default::default()
        })
        .await?;
    for n in &nodes {
        if n.maintenance {
            let why = if n.maintenance_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", n.maintenance_reason)
            };
            return Err(ApiError::new(
                RetCode::WrongState,
                format!(
                    "node {} is in maintenance{why}: take it out first (ModifyBMNodeAttributes maintenance 0); no job was started",
                    n.node_id
                ),
            ));
        }
        if !allowed(n.status) || app.provision.is_running(&n.node_id) {
            return Err(ApiError::new(
                RetCode::WrongState,
                format!(
                    "node {} is {}: {what}; no job was started",
                    n.node_id,
                    n.status.as_str()
                ),
            ));
        }
    }
    Ok(nodes)
}

/// Checks the nodes of `call` against `allowed` and starts a `kind` job,
/// each node with the settings `settings` gives it.
fn start_job(
    app: Arc<App>,
    call: Call,
    kind: Kind,
    allowed: fn(BmNodeStatus) -> bool,
    refusal: &'static str,
    settings: fn(&Call, &[BmNode]) -> Result<Vec<DeploySettings>, ApiError>,
) -> HandlerFuture {
    Box::pin(async move {
        let nodes = load(
            &app,
            "node_ids",
            call.params.list("node_ids"),
            allowed,
            refusal,
        )
        .await?;
        let per_node = settings(&call, &nodes)?;
        let job = app
            .provision
            .start(
                kind,
                nodes.into_iter().zip(per_node).collect(),
                &call.caller.user_id,
                &call.caller.request_id,
            )
            .await?;
        Ok(Fields::new()
            .with("job_id", job.job_id)
            .with("job_action", kind.action()))
    })
}

fn no_settings(_: &Call, nodes: &[BmNode]) -> Result<Vec<DeploySettings>, ApiError> {
    Ok(vec![DeploySettings::default(); nodes.len()])
}

/// Checks OpenSSH public keys (`field` names them in errors).
fn ssh_keys(field: &str, keys: Vec<String>) -> Result<Vec<String>, ApiError> {
    keys.into_iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .enumerate()
        .map(|(i, k)| {
            russh::keys::PublicKey::from_openssh(&k)
                .map(|_| k)
                .map_err(|e| {
                    ApiError::field(
                        field,
                        format!(
                            "key {} is not an OpenSSH public key ({e}): give lines like \"ssh-ed25519 AAAA… user@host\"",
                            i + 1
                        ),
                    )
                })
        })
        .collect()
}

fn user_data(field: &str, text: &str) -> Result<String, ApiError> {
    if text.len() > MAX_USER_DATA {
        return Err(ApiError::new(
            RetCode::TooLarge,
            format!(
                "{field}: {} bytes of user data, more than the {MAX_USER_DATA} bytes cloud-init's NoCloud seed takes here: shorten it or have it #include a URL",
                text.len()
            ),
        ));
    }
    Ok(text.to_string())
}

fn hostname(field: &str, name: &str) -> Result<String, ApiError> {
    if !name.is_empty() {
        crate::foundation::validate::hostname(name).map_err(|e| ApiError::field(field, e))?;
    }
    Ok(name.to_string())
}

/// ProvisionBMNodes' cloud-init settings: `ssh_keys`, `user_data` and
/// `hostname` for every node of the call, overridden per node by
/// `node_settings` entries (`node_id` and any of the three).
fn deploy_settings(call: &Call, nodes: &[BmNode]) -> Result<Vec<DeploySettings>, ApiError> {
    let p = &call.params;
    let common = DeploySettings {
        ssh_keys: ssh_keys("ssh_keys", p.list("ssh_keys"))?,
        user_data: user_data("user_data", p.str("user_data").unwrap_or(""))?,
        hostname: hostname("hostname", p.str("hostname").unwrap_or(""))?,
        ..Default::default()
    };
    if !common.hostname.is_empty() && nodes.len() > 1 {
        return Err(ApiError::field(
            "hostname",
            "one host name for several nodes: give it per node in node_settings ([{\"node_id\": …, \"hostname\": …}])",
        ));
    }
    let mut per: std::collections::HashMap<String, DeploySettings> = Default::default();
    for (i, o) in p
        .objects("node_settings")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let field = |k: &str| format!("node_settings[{i}].{k}");
        let id = o.get("node_id").and_then(Value::as_str).ok_or_else(|| {
            ApiError::missing(&field("node_id"), " (the node these settings are for)")
        })?;
        if !nodes.iter().any(|n| n.node_id == id) {
            return Err(ApiError::field(
                &field("node_id"),
                format!("{id} is not among node_ids"),
            ));
        }
        let mut s = common.clone();
        for (k, v) in &o {
            match k.as_str() {
                "node_id" => {}
                "ssh_keys" => {
                    let keys = match v {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect(),
                        Value::String(t) => t.lines().map(String::from).collect(),
                        _ => {
                            return Err(ApiError::field(&field(k), "a list of OpenSSH public keys"))
                        }
                    };
                    s.ssh_keys = ssh_keys(&field(k), keys)?;
                }
                "user_data" => {
                    s.user_data = user_data(
                        &field(k),
                        v.as_str()
                            .ok_or_else(|| ApiError::field(&field(k), "a string"))?,
                    )?
                }
                "hostname" => {
                    s.hostname = hostname(
                        &field(k),
                        v.as_str()
                            .ok_or_else(|| ApiError::field(&field(k), "a string"))?,
                    )?
                }
                other => return Err(ApiError::field(
                    &field(other),
                    "unknown: node_settings entries take node_id, ssh_keys, user_data and hostname",
                )),
            }
        }
        per.insert(id.to_string(), s);
    }
    Ok(nodes
        .iter()
        .map(|n| per.remove(&n.node_id).unwrap_or_else(|| common.clone()))
        .collect())
}

pub fn provision(app: Arc<App>, call: Call) -> HandlerFuture {
    if call.params.int("rebuild") == Some(1) {
        return start_job(
            app,
            call,
            Kind::Provision,
            can_rebuild,
            "only new, ready, active (rebuild), provision_failed, inspect_failed and clean_failed nodes can be provisioned",
            deploy_settings,
        );
    }
    start_job(
        app,
        call,
        Kind::Provision,
        can_provision,
        "only new, ready, provision_failed, inspect_failed and clean_failed nodes can be provisioned (an active node only with rebuild: 1, which reinstalls it)",
        deploy_settings,
    )
}

/// UnprovisionBMNodes' `wipe`.
fn wipe_settings(call: &Call, nodes: &[BmNode]) -> Result<Vec<DeploySettings>, ApiError> {
    let wipe = match call.params.str("wipe") {
        None | Some("") => Wipe::Metadata,
        Some(w) => Wipe::parse(w).ok_or_else(|| {
            ApiError::field(
                "wipe",
                format!("`{w}`: give metadata (default), zero or none"),
            )
        })?,
    };
    Ok(vec![
        DeploySettings {
            wipe,
            ..Default::default()
        };
        nodes.len()
    ])
}

pub fn unprovision(app: Arc<App>, call: Call) -> HandlerFuture {
    start_job(
        app,
        call,
        Kind::Clean,
        can_clean,
        "only active, ready, provision_failed, inspect_failed and clean_failed nodes can be unprovisioned",
        wipe_settings,
    )
}

pub fn unprovision_status(app: Arc<App>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("UnprovisionBMNodes");
    jobs::get_status(app, call)
}

pub fn unprovision_log(app: Arc<App>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("UnprovisionBMNodes");
    jobs::get_log(app, call)
}

pub fn introspect(app: Arc<App>, call: Call) -> HandlerFuture {
    start_job(
        app,
        call,
        Kind::Inspect,
        can_inspect,
        "only new, ready, provision_failed, inspect_failed and clean_failed nodes can be inspected",
        no_settings,
    )
}

pub fn status(app: Arc<App>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ProvisionBMNodes");
    jobs::get_status(app, call)
}

pub fn log(app: Arc<App>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ProvisionBMNodes");
    jobs::get_log(app, call)
}

/// Stops the work on `node_ids`, which must all be in one of `working`:
/// through their task, or (no task: the daemon restarted meanwhile) by
/// moving them straight to the failed state.
async fn abort(
    app: &App,
    node_ids: Vec<String>,
    working: &[BmNodeStatus],
    what: &str,
) -> Result<Fields, ApiError> {
    if node_ids.is_empty() {
        return Err(ApiError::missing("node_ids", " (the nodes to stop, n-…)"));
    }
    check_node_ids("node_ids", &node_ids)?;
    let (nodes, _) = app
        .store
        .describe_bm_nodes(BmNodeFilter {
            node_ids,
            ..Default::default()
        })
        .await?;
    if let Some(n) = nodes.iter().find(|n| !working.contains(&n.status)) {
        return Err(ApiError::new(
            RetCode::WrongState,
            format!(
                "node {} is {}: {what}; nothing was aborted",
                n.node_id,
                n.status.as_str()
            ),
        ));
    }
    for n in &nodes {
        app.provision.abort(&n.node_id).await?;
    }
    let ids: Vec<Value> = nodes
        .iter()
        .map(|n| Value::String(n.node_id.clone()))
        .collect();
    Ok(fields([("node_ids", Value::Array(ids))]))
}

pub fn abort_provision(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        abort(
            &app,
            call.params.list("node_ids"),
            &[BmNodeStatus::Provisioning, BmNodeStatus::Verifying],
            "only a provisioning node can be aborted",
        )
        .await
    })
}

pub fn abort_introspection(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let id = call.params.str("node_id").unwrap_or_default().to_string();
        abort(
            &app,
            vec![id],
            &[BmNodeStatus::Inspecting, BmNodeStatus::Verifying],
            "only an inspecting node can be aborted",
        )
        .await
    })
}

async fn one_node(app: &App, call: &Call) -> Result<BmNode, ApiError> {
    let id = call
        .params
        .str("node_id")
        .ok_or_else(|| ApiError::missing("node_id", " (the node, n-…)"))?
        .to_string();
    check_node_ids("node_id", std::slice::from_ref(&id))?;
    let (nodes, _) = app
        .store
        .describe_bm_nodes(BmNodeFilter {
            node_ids: vec![id],
            ..Default::default()
        })
        .await?;
    nodes
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("no such node"))
}

async fn stored_inventory(app: &App, node: &BmNode) -> Result<(Value, Option<i64>), ApiError> {
    let (raw, when) = app
        .store
        .inventory(&node.node_id)
        .await?
        .unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::not_found(format!(
            "node {} has no introspection data: run IntrospectBMNodes (or provision it) first",
            node.node_id
        )));
    }
    let value = serde_json::from_str(&raw).map_err(|_| ApiError::internal())?;
    Ok((value, when))
}

pub fn introspection_data(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let node = one_node(&app, &call).await?;
        let (raw, when) = stored_inventory(&app, &node).await?;
        let processed = crate::service::provision::inventory::process(&raw);
        Ok(fields([
            ("node_id", Value::String(node.node_id)),
            (
                "collected_at",
                when.map(crate::foundation::ids::format_time)
                    .unwrap_or_default()
                    .into(),
            ),
            ("data", raw),
            (
                "processed",
                serde_json::to_value(processed).unwrap_or(Value::Null),
            ),
        ]))
    })
}

pub fn reapply_introspection(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let node = one_node(&app, &call).await?;
        if node.status.is_busy() || app.provision.is_running(&node.node_id) {
            return Err(ApiError::new(
                RetCode::WrongState,
                format!(
                    "node {} is {}: wait until its work ends, then reapply",
                    node.node_id,
                    node.status.as_str()
                ),
            ));
        }
        let (raw, _) = stored_inventory(&app, &node).await?;
        let applied =
            crate::service::provision::inventory::apply(&app.store, &node.node_id, &raw).await?;
        Ok(fields([
            ("node_id", Value::String(node.node_id)),
            (
                "applied",
                Value::Array(applied.into_iter().map(Value::String).collect()),
            ),
        ]))
    })
}
