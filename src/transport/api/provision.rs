//! Provisioning and introspection actions: ProvisionBMNodes (seed 002
//! §2.5), GetProvisionBMNodesStatus/Log (§2.6, §2.7), AbortProvisionBMNodes,
//! and the introspection set of seed 003 (IntrospectBMNodes,
//! AbortIntrospection, GetIntrospectionData, ReapplyIntrospection). The work
//! itself is [`crate::service::provision`]'s.

use super::bmnodes::check_node_ids;
use super::{fields, jobs, Call, Fields, HandlerFuture};
use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::states::{can_inspect, can_provision};
use crate::foundation::store::{BmNode, BmNodeFilter, BmNodeStatus};
use crate::service::app::App;
use crate::service::provision::Kind;
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

/// Checks the nodes of `call` against `allowed` and starts a `kind` job.
fn start_job(
    app: Arc<App>,
    call: Call,
    kind: Kind,
    allowed: fn(BmNodeStatus) -> bool,
    refusal: &'static str,
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
        let job = app
            .provision
            .start(kind, nodes, &call.caller.user_id, &call.caller.request_id)
            .await?;
        Ok(Fields::new()
            .with("job_id", job.job_id)
            .with("job_action", kind.action()))
    })
}

pub fn provision(app: Arc<App>, call: Call) -> HandlerFuture {
    start_job(
        app,
        call,
        Kind::Provision,
        can_provision,
        "only new, ready, provision_failed and inspect_failed nodes can be provisioned (an active node is never redeployed)",
    )
}

pub fn introspect(app: Arc<App>, call: Call) -> HandlerFuture {
    start_job(
        app,
        call,
        Kind::Inspect,
        can_inspect,
        "only new, ready, provision_failed and inspect_failed nodes can be inspected",
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
