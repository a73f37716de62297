//! Asynchronous work: the daemon side of the job table. At start-up, jobs that
//! were running when the daemon died are marked failed with a log line and a
//! user message. The actions that start jobs (ProvisionBMNodes, ScanBMNodes,
//! CollectNodes…) use the store's job methods directly.

use crate::store::{Job, Store, StoreError};
use crate::usermsg::{self, Subject};

/// The log line written into a job that was interrupted by a daemon stop.
pub const INTERRUPTED_LINE: &str =
    "Error: the rackboot daemon stopped while this job was running; the job was marked failed at the next start";

/// Marks every unfinished job failed, each with [`INTERRUPTED_LINE`] in its
/// log and a [`usermsg::JOB_INTERRUPTED`] message, in one transaction.
pub async fn fail_interrupted(store: &Store, retention_days: u32) -> Result<Vec<Job>, StoreError> {
    let now = crate::ids::now_secs();
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
