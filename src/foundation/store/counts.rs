//! Counts over the store for the metrics and the health check: nodes by
//! status and power state, unreachable BMCs, jobs by action and status,
//! leases in use, and whether the database answers at all.

use super::{Store, StoreError};

/// What the store holds, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub nodes_by_status: Vec<(String, i64)>,
    pub nodes_by_power: Vec<(String, i64)>,
    pub bmcs_unreachable: i64,
    /// (job_action, running | successful | failed, count).
    pub jobs: Vec<(String, String, i64)>,
    pub leases: i64,
}

fn pairs(conn: &rusqlite::Connection, sql: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

impl Store {
    /// Counts for the metrics (one read transaction).
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.call_read(|conn| {
            let tx = conn.unchecked_transaction()?;
            let nodes_by_status = pairs(&tx, "SELECT status, count(*) FROM bm_nodes GROUP BY status")?;
            let nodes_by_power =
                pairs(&tx, "SELECT power_state, count(*) FROM bm_nodes GROUP BY power_state")?;
            let bmcs_unreachable = tx.query_row(
                "SELECT count(*) FROM bm_nodes WHERE bmc_reachable = 0",
                [],
                |r| r.get(0),
            )?;
            let mut stmt = tx.prepare_cached(
                "SELECT job_action,
                        CASE WHEN status IN ('successful', 'failed') THEN status ELSE 'running' END AS s,
                        count(*)
                 FROM jobs GROUP BY job_action, s",
            )?;
            let jobs = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            let leases = tx.query_row("SELECT count(*) FROM leases WHERE bound = 1", [], |r| r.get(0))?;
            Ok(Counts {
                nodes_by_status,
                nodes_by_power,
                bmcs_unreachable,
                jobs,
                leases,
            })
        })
        .await
    }

    /// Whether the database answers a read and passes SQLite's quick check.
    pub async fn quick_check(&self) -> Result<(), StoreError> {
        self.call_read(|conn| {
            let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if verdict == "ok" {
                Ok(())
            } else {
                Err(StoreError::Invalid(format!(
                    "the database failed its check: {verdict}"
                )))
            }
        })
        .await
    }

    /// The schema version (the number of migrations applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call_read(|conn| Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .await
    }
}
