//! The generic job actions of seed 002 §1.5/§1.6: GetStatus and GetLog, for
//! every kind of job.

use super::error::ApiError;
use super::{fields, Call, Ctx, HandlerFuture};
use crate::ids::{is_id, JOB_PREFIX};
use crate::store::{Job, JobStatus};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Actions that run as jobs (what `job_action` may name): those of the
/// catalogue marked `job`.
fn is_job_action(name: &str) -> bool {
    super::catalogue::ACTIONS
        .iter()
        .any(|a| a.job && a.name == name)
}

fn job_action_names() -> String {
    let mut names: Vec<&str> = Vec::new();
    names.extend(
        super::catalogue::ACTIONS
            .iter()
            .filter(|a| a.job)
            .map(|a| a.name),
    );
    names.sort();
    names.dedup();
    names.join(", ")
}

/// Finds the job a GetStatus/GetLog call means: `job_id` if given (and of
/// `job_action`), else the newest job of `job_action`.
async fn find_job(ctx: &Ctx, call: &Call) -> Result<Job, ApiError> {
    let p = &call.params;
    let action = p
        .str("job_action")
        .or(call.fixed_job_action)
        .unwrap_or_default();
    if !is_job_action(action) {
        return Err(ApiError::field(
            "job_action",
            format!(
                "`{action}` is not an action that runs as a job (allowed: {})",
                job_action_names()
            ),
        ));
    }
    match p.str("job_id") {
        Some(id) => {
            if !is_id(id, JOB_PREFIX) {
                return Err(ApiError::field(
                    "job_id",
                    format!("`{id}` is not a job id (j- followed by 8 letters or digits)"),
                ));
            }
            let job = ctx.store.get_job(id).await?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "job {id} does not exist: check the job_id the action returned"
                ))
            })?;
            if job.job_action != action {
                return Err(ApiError::field(
                    "job_action",
                    format!(
                        "job {id} is a {} job, not {action}: send job_action {}",
                        job.job_action, job.job_action
                    ),
                ));
            }
            Ok(job)
        }
        None => ctx.store.latest_job(action).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no {action} job has run yet: start one first, or pass its job_id"
            ))
        }),
    }
}

/// GetScanBMNodesStatus (seed 002 §2.6 of the scan): GetStatus of ScanBMNodes jobs.
pub fn scan_status(ctx: Arc<Ctx>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ScanBMNodes");
    get_status(ctx, call)
}

/// GetScanBMNodesLog (seed 002 §2.7 of the scan): GetLog of ScanBMNodes jobs.
pub fn scan_log(ctx: Arc<Ctx>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ScanBMNodes");
    get_log(ctx, call)
}

pub fn get_status(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let job = find_job(&ctx, &call).await?;
        let node_progress: Map<String, Value> = job
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node_id.clone(),
                    json!({
                        "status": n.status,
                        "progress": format!("{}%", n.progress),
                        "ret_code": n.ret_code,
                        "message": n.message,
                    }),
                )
            })
            .collect();
        Ok(fields([
            ("job_action", job.job_action.into()),
            ("job_id", job.job_id.into()),
            ("status", job.status.to_string().into()),
            (
                "pre_status",
                job.pre_status
                    .map(|s| s.to_string())
                    .unwrap_or_default()
                    .into(),
            ),
            ("progress", format!("{}%", job.progress).into()),
            ("node_progress", Value::Object(node_progress)),
        ]))
    })
}

pub fn get_log(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let status = call.params.str("job_status").map(str::to_string);
        if let Some(s) = &status {
            if JobStatus::parse(s).is_none() {
                return Err(ApiError::field(
                    "job_status",
                    format!("`{s}` is not a job status (step<N>, successful or failed)"),
                ));
            }
        }
        let job = find_job(&ctx, &call).await?;
        let lines = ctx.store.job_log(&job.job_id, status).await?;
        let log: Map<String, Value> = lines
            .into_iter()
            .map(|l| (format!("{:03}", l.seq), Value::String(l.line)))
            .collect();
        Ok(fields([
            ("log", Value::Object(log)),
            ("job_action", job.job_action.into()),
            ("job_id", job.job_id.into()),
        ]))
    })
}
