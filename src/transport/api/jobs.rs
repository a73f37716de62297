//! The generic job actions of seed 002 §1.5/§1.6: GetStatus and GetLog, for
//! every kind of job.

use super::{fields, Call, Fields, HandlerFuture};
use crate::foundation::errors::ApiError;
use crate::foundation::ids::{is_id, JOB_PREFIX};
use crate::foundation::store::{Job, JobNode, JobStatus};
use crate::service::app::App;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Finds the job a GetStatus/GetLog call means: `job_id` if given (and of
/// `job_action`), else the newest job of `job_action`.
async fn find_job(app: &App, call: &Call) -> Result<Job, ApiError> {
    let p = &call.params;
    let action = p
        .str("job_action")
        .or(call.fixed_job_action)
        .unwrap_or_default();
    if !super::is_job_action(action) {
        return Err(ApiError::field(
            "job_action",
            format!(
                "`{action}` is not an action that runs as a job (allowed: {})",
                super::job_action_names()
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
            let job = app.store.get_job(id).await?.ok_or_else(|| {
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
        None => app.store.latest_job(action).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no {action} job has run yet: start one first, or pass its job_id"
            ))
        }),
    }
}

/// GetScanBMNodesStatus (seed 002 §2.6 of the scan): GetStatus of ScanBMNodes jobs.
pub fn scan_status(app: Arc<App>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ScanBMNodes");
    get_status(app, call)
}

/// GetScanBMNodesLog (seed 002 §2.7 of the scan): GetLog of ScanBMNodes jobs.
pub fn scan_log(app: Arc<App>, mut call: Call) -> HandlerFuture {
    call.fixed_job_action = Some("ScanBMNodes");
    get_log(app, call)
}

pub fn get_status(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let job = find_job(&app, &call).await?;
        let pre_status = job.pre_status.map(|s| s.to_string()).unwrap_or_default();
        Ok(Fields::new()
            .with("job_action", &job.job_action)
            .with("job_id", &job.job_id)
            .with("status", job.status.to_string())
            .with("pre_status", pre_status)
            .with("progress", Percent(job.progress))
            .with("node_progress", NodeProgress(&job.nodes)))
    })
}

/// `node_progress`: node_id → status, progress, ret_code, message, written
/// straight from the job's rows (a 1,000-node job is polled often while it
/// runs; a `Value` tree per call cost more than the query).
struct NodeProgress<'a>(&'a [JobNode]);

impl Serialize for NodeProgress<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Share<'a> {
            status: &'a str,
            progress: Percent,
            ret_code: i64,
            message: &'a str,
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for n in self.0 {
            map.serialize_entry(
                &n.node_id,
                &Share {
                    status: &n.status,
                    progress: Percent(n.progress),
                    ret_code: n.ret_code,
                    message: &n.message,
                },
            )?;
        }
        map.end()
    }
}

/// A percentage as the API writes it: `"42%"`.
struct Percent(u8);

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}%", self.0))
    }
}

pub fn get_log(app: Arc<App>, call: Call) -> HandlerFuture {
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
        let job = find_job(&app, &call).await?;
        let lines = app.store.job_log(&job.job_id, status).await?;
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
