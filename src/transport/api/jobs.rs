//! The generic job actions of seed 002 §1.5/§1.6: GetStatus and GetLog, for
//! every kind of job (the job id alone says which job, its action is then
//! optional), and DescribeJobs, the list of jobs.

use super::{fields, Call, Fields, HandlerFuture};
use crate::foundation::errors::ApiError;
use crate::foundation::ids::format_time;
use crate::foundation::ids::{is_id, JOB_PREFIX};
use crate::foundation::store::{Job, JobFilter, JobNode, JobStatus, StepTime};
use crate::service::app::App;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::sync::Arc;

/// `job_action` must name an action that runs as a job.
fn check_job_action(action: &str) -> Result<(), ApiError> {
    if super::is_job_action(action) {
        return Ok(());
    }
    Err(ApiError::field(
        "job_action",
        format!(
            "`{action}` is not an action that runs as a job (allowed: {})",
            super::job_action_names()
        ),
    ))
}

/// Finds the job a GetStatus/GetLog call means: `job_id` if given (its
/// action, when also given, must match), else the newest job of
/// `job_action`.
async fn find_job(app: &App, call: &Call) -> Result<Job, ApiError> {
    let p = &call.params;
    let action = p.str("job_action").or(call.fixed_job_action);
    if let Some(action) = action {
        check_job_action(action)?;
    }
    match (p.str("job_id"), action) {
        (Some(id), _) => {
            if !is_id(id, JOB_PREFIX) {
                return Err(ApiError::field(
                    "job_id",
                    format!("`{id}` is not a job id (j- followed by 8 letters or digits)"),
                ));
            }
            let job = app.store.get_job(id).await?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "job {id} does not exist: check the job_id the action returned (DescribeJobs lists the jobs kept)"
                ))
            })?;
            if let Some(action) = action.filter(|a| *a != job.job_action) {
                return Err(ApiError::field(
                    "job_action",
                    format!(
                        "job {id} is a {} job, not {action}: send job_action {} or leave it out",
                        job.job_action, job.job_action
                    ),
                ));
            }
            Ok(job)
        }
        (None, Some(action)) => app.store.latest_job(action).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no {action} job has run yet: start one first, or pass its job_id"
            ))
        }),
        (None, None) => Err(ApiError::field(
            "job_id",
            "send job_id (the job an action returned), or job_action for the newest job of that action"
                .to_string(),
        )),
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
            .with("node_progress", NodeProgress(&job.nodes, &job.steps)))
    })
}

/// `node_progress`: node_id → status, progress, ret_code, message and the
/// steps it went through (`steps`: step → started_at, seconds, running),
/// written straight from the job's rows (a 1,000-node job is polled often
/// while it runs; a `Value` tree per call cost more than the query).
struct NodeProgress<'a>(&'a [JobNode], &'a [StepTime]);

impl Serialize for NodeProgress<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Share<'a> {
            status: &'a str,
            progress: Percent,
            ret_code: i64,
            message: &'a str,
            steps: Steps<'a>,
        }
        let mut by_node: std::collections::HashMap<&str, Vec<&StepTime>> =
            std::collections::HashMap::new();
        for t in self.1 {
            by_node.entry(t.node_id.as_str()).or_default().push(t);
        }
        let now = crate::foundation::ids::now_secs() * 1000;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for n in self.0 {
            map.serialize_entry(
                &n.node_id,
                &Share {
                    status: &n.status,
                    progress: Percent(n.progress),
                    ret_code: n.ret_code,
                    message: &n.message,
                    steps: Steps(by_node.get(n.node_id.as_str()).map_or(&[], |v| v), now),
                },
            )?;
        }
        map.end()
    }
}

/// A node's steps: `stepN` → {started_at, seconds (so far while running),
/// running}.
struct Steps<'a>(&'a [&'a StepTime], i64);

impl Serialize for Steps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Step {
            started_at: String,
            seconds: f64,
            running: bool,
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for t in self.0 {
            let end = t.ended_ms.unwrap_or(self.1.max(t.started_ms));
            map.serialize_entry(
                &t.step,
                &Step {
                    started_at: format_time(t.started_ms / 1000),
                    seconds: ((end - t.started_ms) as f64 / 100.0).round() / 10.0,
                    running: t.ended_ms.is_none(),
                },
            )?;
        }
        map.end()
    }
}

/// `since` of DescribeJobs: Unix seconds, or an age (`30m`, `2h`, `7d`).
fn parse_since(v: &str, now: i64) -> Option<i64> {
    if let Ok(secs) = v.parse::<i64>() {
        return (secs >= 0).then_some(secs);
    }
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n >= 0)?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(now - n.checked_mul(scale)?)
}

/// DescribeJobs: the jobs kept (see `jobs.retention_days`), newest first.
pub fn describe_jobs(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let job_action = p.str("job_action").map(str::to_string);
        if let Some(a) = &job_action {
            check_job_action(a)?;
        }
        let status = p.str("status").map(str::to_string);
        if let Some(st) = &status {
            if st != "running" && JobStatus::parse(st).is_none() {
                return Err(ApiError::field(
                    "status",
                    format!("`{st}` is not a job status (running, step<N>, successful or failed)"),
                ));
            }
        }
        let since = match p.str("since") {
            None => None,
            Some(v) => Some(parse_since(v, crate::foundation::ids::now_secs()).ok_or_else(|| {
                ApiError::field(
                    "since",
                    format!("`{v}` is not a time: send Unix seconds (1767225600) or an age such as 30m, 2h or 7d"),
                )
            })?),
        };
        let limit = match p.int("limit") {
            None => 100,
            Some(l) if (1..=100_000).contains(&l) => l as u64,
            Some(l) => {
                return Err(ApiError::field(
                    "limit",
                    format!("{l} is out of range: send 1 to 100000 (default 100)"),
                ))
            }
        };
        let jobs = app
            .store
            .list_jobs(JobFilter {
                job_action,
                status,
                since,
                limit: Some(limit),
            })
            .await?;
        let set: Vec<Value> = jobs
            .into_iter()
            .map(|(j, nodes, failed)| {
                serde_json::json!({
                    "job_id": j.job_id,
                    "job_action": j.job_action,
                    "status": j.status.to_string(),
                    "progress": format!("{}%", j.progress),
                    "nodes": nodes,
                    "failed_nodes": failed,
                    "user_id": j.user_id,
                    "created_at": format_time(j.created_at),
                    "ended_at": j.ended_at.map(format_time).unwrap_or_default(),
                    "seconds": j.ended_at.unwrap_or_else(crate::foundation::ids::now_secs) - j.created_at,
                })
            })
            .collect();
        Ok(Fields::new()
            .with("total_count", set.len())
            .with("job_set", set))
    })
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

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_unix_seconds_or_an_age() {
        assert_eq!(parse_since("1767225600", 0), Some(1_767_225_600));
        assert_eq!(parse_since("30m", 10_000), Some(10_000 - 1800));
        assert_eq!(parse_since("2h", 10_000), Some(10_000 - 7200));
        assert_eq!(parse_since("7d", 1_000_000), Some(1_000_000 - 604_800));
        for bad in [
            "",
            "m",
            "-5",
            "3w",
            "1.5h",
            "yesterday",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_since(bad, 10_000), None, "{bad}");
        }
    }
}
