//! Asynchronous work: the daemon side of the job table. At start-up, jobs that
//! were running when the daemon died are marked failed with a log line and a
//! user message. [`spawn`] runs an action's job work in the background and
//! fails the job when the work cannot record its progress; the work itself
//! uses the store's job methods.

use crate::foundation::store::{Job, JobStatus, Store, StoreError};
use std::future::Future;
use tokio_util::task::TaskTracker;

/// The last line of a job whose work hit a store error.
pub const INTERNAL_ERROR_LINE: &str =
    "Error: internal error while recording this job; see the daemon log";

/// Runs `work` for job `job_id` on `tasks` (awaited at shutdown). When the
/// work fails (it could not write to the store), the job is marked failed
/// with [`INTERNAL_ERROR_LINE`] rather than left running until a restart.
pub fn spawn<F>(tasks: &TaskTracker, store: Store, job_id: String, work: F)
where
    F: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    tasks.spawn(async move {
        if let Err(e) = work.await {
            tracing::error!(job_id = %job_id, "job work failed: {e}");
            let _ = store
                .set_job_status(&job_id, JobStatus::Failed, Some(INTERNAL_ERROR_LINE.into()))
                .await;
        }
    });
}
use crate::foundation::usermsg::{self, Subject};

/// The log line written into a job that was interrupted by a daemon stop.
pub const INTERRUPTED_LINE: &str =
    "Error: the rackboot daemon stopped while this job was running; the job was marked failed at the next start";

/// Marks every unfinished job failed, each with [`INTERRUPTED_LINE`] in its
/// log and a [`usermsg::JOB_INTERRUPTED`] message, in one transaction.
pub async fn fail_interrupted(store: &Store, retention_days: u32) -> Result<Vec<Job>, StoreError> {
    let now = crate::foundation::ids::now_secs();
    store
        .fail_unfinished_jobs(INTERRUPTED_LINE.to_string(), move |job| {
            usermsg::message(
                &usermsg::JOB_INTERRUPTED,
                &[("job_id", &job.job_id), ("job_action", &job.job_action)],
                Subject {
                    resource_type: "Job",
                    resource_id: &job.job_id,
                    request_id: &job.request_id,
                },
                now,
                retention_days,
            )
        })
        .await
}
