//! Provisioning and introspection actions: ProvisionBMNodes (seed 002
//! §2.5), GetProvisionBMNodesStatus/Log (§2.6, §2.7), AbortProvisionBMNodes,
//! and the introspection set of seed 003 (IntrospectBMNodes,
//! AbortIntrospection, GetIntrospectionData, ReapplyIntrospection). The work
//! itself is [`crate::provision`]'s.

use super::bmnodes::check_node_ids;
use super::error::{ApiError, RetCode};
use super::{fields, jobs, Call, Ctx, Fields, HandlerFuture};
use crate::provision::states::{can_inspect, can_provision, Trigger};
use crate::provision::Kind;
use crate::store::{BmNode, BmNodeFilter, BmNodeStatus};
use serde_json::Value;
use std::sync::Arc;

/// Loads `node_ids` (all must exist), refusing any whose state `allowed`
/// rejects, naming it and its state.
async fn load(
    ctx: &Ctx,
    field: &str,
    node_ids: Vec<String>,
    allowed: fn(BmNodeStatus) -> bool,
    what: &str,
) -> Result<Vec<BmNode>, ApiError> {
    if node_ids.is_empty() {
        return Err(ApiError::missing(field, " (the nodes to work on, n-…)"));
    }
    check_node_ids(field, &node_ids)?;
    let (nodes, _) = ctx
        .store
        .describe_bm_nodes(BmNodeFilter {
            node_ids,
            ..Default::default()
        })
        .await?;
    for n in &nodes {
        if !allowed(n.status) || ctx.deploys.is_running(&n.node_id) {
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
    ctx: Arc<Ctx>,
    call: Call,
    kind: Kind,
    allowed: fn(BmNodeStatus) -> bool,
    refusal: &'static str,
) -> HandlerFuture {
    Box::pin(async move {
        let nodes = load(
            &ctx,
            "node_ids",
            call.params.list("node_ids"),
            allowed,
            refusal,
        )
        .await?;
        let job = crate::provision::start(
            ctx.clone(),
            kind,
            nodes,
            &call.caller.user_id,
            &call.caller.request_id,
        )
        .await?;
        Ok(Fields::new()
            .with("job_id", job.job_id)
            .with("job_action", kind.action()))
    })
}

pub fn provision(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    start_job(
        ctx,
        call,
        Kind::Provision,
        can_provision,
        "only new, ready, provision_failed and inspect_failed nodes can be provisioned (an active node is never redeployed)",
    )
}

pub fn introspect(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    start_job(
        ctx,
        call,
        Kind::Inspect,
        can_inspect,
        "only new, ready, provision_failed and inspect_failed nodes can be inspected",
    )
}

pub fn status(ctx: Arc<Ctx>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ProvisionBMNodes");
    jobs::get_status(ctx, call)
}

pub fn log(ctx: Arc<Ctx>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ProvisionBMNodes");
    jobs::get_log(ctx, call)
}

/// Stops the work on `node_ids`, which must all be in one of `working`:
/// through their task, or (no task: the daemon restarted meanwhile) by
/// moving them straight to the failed state.
async fn abort(
    ctx: &Ctx,
    node_ids: Vec<String>,
    working: &[BmNodeStatus],
    what: &str,
) -> Result<Fields, ApiError> {
    if node_ids.is_empty() {
        return Err(ApiError::missing("node_ids", " (the nodes to stop, n-…)"));
    }
    check_node_ids("node_ids", &node_ids)?;
    let (nodes, _) = ctx
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
        if !ctx.deploys.abort(&n.node_id) {
            ctx.store
                .transition_bm_node(&n.node_id, Trigger::Abort)
                .await?;
        }
    }
    let ids: Vec<Value> = nodes
        .iter()
        .map(|n| Value::String(n.node_id.clone()))
        .collect();
    Ok(fields([("node_ids", Value::Array(ids))]))
}

pub fn abort_provision(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        abort(
            &ctx,
            call.params.list("node_ids"),
            &[BmNodeStatus::Provisioning, BmNodeStatus::Verifying],
            "only a provisioning node can be aborted",
        )
        .await
    })
}

pub fn abort_introspection(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let id = call.params.str("node_id").unwrap_or_default().to_string();
        abort(
            &ctx,
            vec![id],
            &[BmNodeStatus::Inspecting, BmNodeStatus::Verifying],
            "only an inspecting node can be aborted",
        )
        .await
    })
}

async fn one_node(ctx: &Ctx, call: &Call) -> Result<BmNode, ApiError> {
    let id = call
        .params
        .str("node_id")
        .ok_or_else(|| ApiError::missing("node_id", " (the node, n-…)"))?
        .to_string();
    check_node_ids("node_id", std::slice::from_ref(&id))?;
    let (nodes, _) = ctx
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

async fn stored_inventory(ctx: &Ctx, node: &BmNode) -> Result<(Value, Option<i64>), ApiError> {
    let (raw, when) = ctx
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

pub fn introspection_data(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let node = one_node(&ctx, &call).await?;
        let (raw, when) = stored_inventory(&ctx, &node).await?;
        let processed = crate::provision::inventory::process(&raw);
        Ok(fields([
            ("node_id", Value::String(node.node_id)),
            (
                "collected_at",
                when.map(crate::ids::format_time).unwrap_or_default().into(),
            ),
            ("data", raw),
            (
                "processed",
                serde_json::to_value(processed).unwrap_or(Value::Null),
            ),
        ]))
    })
}

pub fn reapply_introspection(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let node = one_node(&ctx, &call).await?;
        if node.status.is_busy() || ctx.deploys.is_running(&node.node_id) {
            return Err(ApiError::new(
                RetCode::WrongState,
                format!(
                    "node {} is {}: wait until its work ends, then reapply",
                    node.node_id,
                    node.status.as_str()
                ),
            ));
        }
        let (raw, _) = stored_inventory(&ctx, &node).await?;
        let applied = crate::provision::inventory::apply(&ctx, &node.node_id, &raw).await?;
        Ok(fields([
            ("node_id", Value::String(node.node_id)),
            (
                "applied",
                Value::Array(applied.into_iter().map(Value::String).collect()),
            ),
        ]))
    })
}
