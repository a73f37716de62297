//! The job tables: one row per asynchronous action run (`jobs`), the nodes it
//! covers with their own status and progress (`job_nodes`), and its numbered
//! log lines, each stamped with the job status it was written under
//! (`job_log`).

use super::messages::insert_message;
use super::{Store, StoreError, StoredMessage};
use crate::foundation::ids::now_secs;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// A job's status: `step<N>` while running, then `successful` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Step(u32),
    Successful,
    Failed,
}

impl JobStatus {
    pub fn parse(s: &str) -> Option<JobStatus> {
        match s {
            "successful" => Some(JobStatus::Successful),
            "failed" => Some(JobStatus::Failed),
            _ => s
                .strip_prefix("step")
                .filter(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(JobStatus::Step),
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Step(_))
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobStatus::Step(n) => write!(f, "step{n}"),
            JobStatus::Successful => f.write_str("successful"),
            JobStatus::Failed => f.write_str("failed"),
        }
    }
}

/// One asynchronous action run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: String,
    /// The action that started it (`ProvisionBMNodes`, `ScanBMNodes`, …).
    pub job_action: String,
    pub status: JobStatus,
    /// The status before the current one (`None` right after creation).
    pub pre_status: Option<JobStatus>,
    /// 0–100 over the whole job.
    pub progress: u8,
    /// The nodes it covers, with their own status and progress.
    pub nodes: Vec<JobNode>,
    /// When each node entered and left each step.
    pub steps: Vec<StepTime>,
    pub user_id: String,
    pub request_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub ended_at: Option<i64>,
}

/// A node's share of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNode {
    pub node_id: String,
    pub status: String,
    pub progress: u8,
    /// 0, or the ret_code of the node's failure.
    pub ret_code: i64,
    /// The catalogue text explaining a failure.
    pub message: String,
}

/// When a node of a job entered a step (`stepN`) and left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTime {
    pub node_id: String,
    pub step: String,
    /// Unix milliseconds.
    pub started_ms: i64,
    /// `None` while the node is in this step.
    pub ended_ms: Option<i64>,
}

/// Which jobs DescribeJobs lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub job_action: Option<String>,
    /// `running` (any step), `successful`, `failed`, or one `stepN`.
    pub status: Option<String>,
    /// Created at or after (Unix seconds).
    pub since: Option<i64>,
    pub limit: Option<u64>,
}

/// One numbered line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: u32,
    /// The job's status when the line was written (what `job_status` filters).
    pub job_status: String,
    pub line: String,
    pub created_at: i64,
}

const JOB_COLUMNS: &str =
    "job_id, job_action, status, pre_status, progress, user_id, request_id, created_at, updated_at, ended_at";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = r.get(2)?;
    let pre: String = r.get(3)?;
    Ok(Job {
        job_id: r.get(0)?,
        job_action: r.get(1)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        pre_status: JobStatus::parse(&pre),
        progress: r.get(4)?,
        nodes: Vec::new(),
        steps: Vec::new(),
        user_id: r.get(5)?,
        request_id: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        ended_at: r.get(9)?,
    })
}

fn load_nodes(conn: &Connection, job: &mut Job) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT node_id, status, progress, ret_code, message FROM job_nodes WHERE job_id = ?1 ORDER BY rowid",
    )?;
    job.nodes = stmt
        .query_map([&job.job_id], |r| {
            Ok(JobNode {
                node_id: r.get(0)?,
                status: r.get(1)?,
                progress: r.get(2)?,
                ret_code: r.get(3)?,
                message: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT node_id, step, started_ms, ended_ms FROM job_node_steps WHERE job_id = ?1 ORDER BY started_ms, rowid",
    )?;
    job.steps = stmt
        .query_map([&job.job_id], |r| {
            Ok(StepTime {
                node_id: r.get(0)?,
                step: r.get(1)?,
                started_ms: r.get(2)?,
                ended_ms: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A node's share moved to `status`: a step (`stepN`) it was not in starts
/// now, and the step it leaves ends now.
fn record_step(
    conn: &Connection,
    job_id: &str,
    node_id: &str,
    status: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    conn.prepare_cached(
        "UPDATE job_node_steps SET ended_ms = ?4
         WHERE job_id = ?1 AND node_id = ?2 AND step != ?3 AND ended_ms IS NULL",
    )?
    .execute(params![job_id, node_id, status, now])?;
    if status.starts_with("step") {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO job_node_steps (job_id, node_id, step, started_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![job_id, node_id, status, now])?;
    }
    Ok(())
}

fn append_log(conn: &Connection, job_id: &str, line: &str) -> Result<u32, StoreError> {
    let status: Option<String> = conn
        .query_row("SELECT status FROM jobs WHERE job_id = ?1", [job_id], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(status) = status else {
        return Err(StoreError::NotFound(format!("job {job_id} does not exist")));
    };
    let seq: u32 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM job_log WHERE job_id = ?1",
        [job_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO job_log (job_id, seq, job_status, line, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![job_id, seq, status, line, now_secs()],
    )?;
    Ok(seq)
}

fn set_status(conn: &Connection, job_id: &str, status: JobStatus) -> Result<(), StoreError> {
    let now = now_secs();
    let ended = status.is_final().then_some(now);
    let changed = conn.execute(
        "UPDATE jobs SET pre_status = status, status = ?2, updated_at = ?3, ended_at = ?4,
             progress = CASE WHEN ?2 = 'successful' THEN 100 ELSE progress END
         WHERE job_id = ?1 AND ended_at IS NULL",
        params![job_id, status.to_string(), now, ended],
    )?;
    if changed == 0 {
        return Err(StoreError::WrongState(format!(
            "job {job_id} does not exist or has already ended"
        )));
    }
    Ok(())
}

impl Store {
    /// Creates a job at `step0` covering `node_ids`.
    pub async fn create_job(
        &self,
        job_id: String,
        job_action: &str,
        node_ids: Vec<String>,
        user_id: &str,
        request_id: &str,
    ) -> Result<Job, StoreError> {
        let (job_action, user_id, request_id) = (
            job_action.to_string(),
            user_id.to_string(),
            request_id.to_string(),
        );
        self.call(move |conn| {
            let now = now_secs();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO jobs (job_id, job_action, status, user_id, request_id, created_at, updated_at)
                 VALUES (?1, ?2, 'step0', ?3, ?4, ?5, ?5)",
                params![job_id, job_action, user_id, request_id, now],
            )?;
            for node_id in &node_ids {
                tx.execute(
                    "INSERT OR IGNORE INTO job_nodes (job_id, node_id) VALUES (?1, ?2)",
                    params![job_id, node_id],
                )?;
            }
            let mut job = tx
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"))?
                .query_row([&job_id], job_from_row)?;
            load_nodes(&tx, &mut job)?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    /// Moves a running job to `status` (the old one becomes `pre_status`) and
    /// optionally writes a log line under the new status, in one transaction.
    pub async fn set_job_status(
        &self,
        job_id: &str,
        status: JobStatus,
        line: Option<String>,
    ) -> Result<(), StoreError> {
        let job_id = job_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            set_status(&tx, &job_id, status)?;
            if let Some(line) = line {
                append_log(&tx, &job_id, &line)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Appends a numbered line to a job's log; returns its number.
    pub async fn append_job_log(&self, job_id: &str, line: String) -> Result<u32, StoreError> {
        let job_id = job_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let seq = append_log(&tx, &job_id, &line)?;
            tx.commit()?;
            Ok(seq)
        })
        .await
    }

    /// Records one node's share of a job (status, progress, outcome) and,
    /// when given, a log line, and sets the job's overall progress to the
    /// mean of its nodes', in one transaction.
    pub async fn set_job_node(
        &self,
        job_id: &str,
        node: JobNode,
        line: Option<String>,
    ) -> Result<(), StoreError> {
        let job_id = job_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO job_nodes (job_id, node_id, status, progress, ret_code, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (job_id, node_id) DO UPDATE SET status = ?3, progress = ?4, ret_code = ?5, message = ?6",
                params![job_id, node.node_id, node.status, node.progress.min(100), node.ret_code, node.message],
            )?;
            record_step(&tx, &job_id, &node.node_id, &node.status)?;
            if let Some(line) = line {
                append_log(&tx, &job_id, &line)?;
            }
            tx.execute(
                "UPDATE jobs SET progress = (SELECT CAST(AVG(progress) AS INTEGER) FROM job_nodes WHERE job_id = ?1),
                     updated_at = ?2 WHERE job_id = ?1",
                params![job_id, now_secs()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A job with its nodes.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let job_id = job_id.to_string();
        self.call_read(move |conn| {
            let job = conn
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"))?
                .query_row([&job_id], job_from_row)
                .optional()?;
            match job {
                Some(mut job) => {
                    load_nodes(conn, &mut job)?;
                    Ok(Some(job))
                }
                None => Ok(None),
            }
        })
        .await
    }

    /// The newest job of `job_action`.
    pub async fn latest_job(&self, job_action: &str) -> Result<Option<Job>, StoreError> {
        let job_action = job_action.to_string();
        self.call_read(move |conn| {
            let job = conn
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE job_action = ?1 ORDER BY created_at DESC, rowid DESC LIMIT 1"
                ))?
                .query_row([&job_action], job_from_row)
                .optional()?;
            match job {
                Some(mut job) => {
                    load_nodes(conn, &mut job)?;
                    Ok(Some(job))
                }
                None => Ok(None),
            }
        })
        .await
    }

    /// Jobs matching `filter`, newest first, without their nodes; with the
    /// count of their nodes and of their failed nodes.
    pub async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<(Job, u64, u64)>, StoreError> {
        self.call_read(move |conn| {
            let status_sql = match filter.status.as_deref() {
                None => "1",
                Some("running") => "ended_at IS NULL",
                Some(_) => "status = ?2",
            };
            let sql = format!(
                "SELECT {JOB_COLUMNS},
                        (SELECT count(*) FROM job_nodes n WHERE n.job_id = jobs.job_id),
                        (SELECT count(*) FROM job_nodes n WHERE n.job_id = jobs.job_id AND n.status = 'failed')
                 FROM jobs
                 WHERE (?1 IS NULL OR job_action = ?1) AND {status_sql} AND created_at >= ?3
                 ORDER BY created_at DESC, rowid DESC LIMIT ?4"
            );
            let mut stmt = conn.prepare(&sql)?;
            let limit = filter.limit.map_or(-1, |l| l as i64);
            let rows = stmt
                .query_map(
                    params![filter.job_action, filter.status, filter.since.unwrap_or(0), limit],
                    |r| Ok((job_from_row(r)?, r.get::<_, i64>(10)? as u64, r.get::<_, i64>(11)? as u64)),
                )?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Deletes jobs that ended before `before` (Unix seconds), with their
    /// nodes, steps and log lines; returns how many.
    pub async fn purge_jobs(&self, before: i64) -> Result<usize, StoreError> {
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM jobs WHERE ended_at IS NOT NULL AND ended_at < ?1",
                [before],
            )?)
        })
        .await
    }

    /// A job's log lines in order, only those written under `job_status` when given.
    pub async fn job_log(
        &self,
        job_id: &str,
        job_status: Option<String>,
    ) -> Result<Vec<LogLine>, StoreError> {
        let job_id = job_id.to_string();
        self.call_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, job_status, line, created_at FROM job_log
                 WHERE job_id = ?1 AND (?2 IS NULL OR job_status = ?2) ORDER BY seq",
            )?;
            let lines = stmt
                .query_map(params![job_id, job_status], |r| {
                    Ok(LogLine {
                        seq: r.get(0)?,
                        job_status: r.get(1)?,
                        line: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(lines)
        })
        .await
    }

    /// Marks every job that has not ended as `failed`, with `line` in its log
    /// and the user message `message(job)` recorded, all in one transaction.
    /// Returns the jobs it failed.
    pub async fn fail_unfinished_jobs<F>(
        &self,
        line: String,
        message: F,
    ) -> Result<Vec<Job>, StoreError>
    where
        F: Fn(&Job) -> StoredMessage + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let jobs: Vec<Job> = tx
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ended_at IS NULL ORDER BY created_at"
                ))?
                .query_map([], job_from_row)?
                .collect::<Result<_, _>>()?;
            for job in &jobs {
                set_status(&tx, &job.job_id, JobStatus::Failed)?;
                append_log(&tx, &job.job_id, &line)?;
                insert_message(&tx, &message(job))?;
            }
            tx.commit()?;
            Ok(jobs)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus;
    use crate::foundation::store::{JobFilter, JobNode, Store};

    #[tokio::test]
    async fn finished_jobs_past_their_retention_are_purged_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        for id in ["j-Old00001", "j-New00001", "j-Run00001"] {
            store
                .create_job(
                    id.into(),
                    "StartBMNodes",
                    vec!["n-Aa000001".into()],
                    "admin",
                    "req-1",
                )
                .await
                .unwrap();
            let node = JobNode {
                node_id: "n-Aa000001".into(),
                status: "step1".into(),
                progress: 10,
                ret_code: 0,
                message: String::new(),
            };
            store
                .set_job_node(id, node, Some("a line".into()))
                .await
                .unwrap();
        }
        for id in ["j-Old00001", "j-New00001"] {
            store
                .set_job_status(id, JobStatus::Failed, None)
                .await
                .unwrap();
        }
        let now = crate::foundation::ids::now_secs();
        // Nothing ended before an hour ago: nothing goes.
        assert_eq!(store.purge_jobs(now - 3600).await.unwrap(), 0);
        // Everything that ended before now + 1 s: the two finished jobs, never the running one.
        assert_eq!(store.purge_jobs(now + 1).await.unwrap(), 2);
        let left = store.list_jobs(JobFilter::default()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0.job_id, "j-Run00001");
        assert!(store.get_job("j-Old00001").await.unwrap().is_none());
        assert!(store.job_log("j-Old00001", None).await.unwrap().is_empty());
        // Its nodes and step times went with it (ON DELETE CASCADE).
        let run = store.get_job("j-Run00001").await.unwrap().unwrap();
        assert_eq!(run.steps.len(), 1, "{:?}", run.steps);
        assert_eq!(run.steps[0].step, "step1");
    }

    #[test]
    fn job_status_round_trips() {
        for s in ["step0", "step12", "successful", "failed"] {
            assert_eq!(JobStatus::parse(s).unwrap().to_string(), s);
        }
        for bad in ["step", "stepx", "running", "step-1", ""] {
            assert_eq!(JobStatus::parse(bad), None, "{bad}");
        }
    }
}
