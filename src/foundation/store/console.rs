//! The `console_lines` table: what each node's serial console printed
//! while rackboot watched it over SOL, one row per line, bounded per node
//! to the last [`BYTES_PER_NODE`] bytes.

use super::{Store, StoreError};
use rusqlite::params;

/// Console text kept per node (the oldest lines go first).
pub const BYTES_PER_NODE: i64 = 1 << 20;

/// One console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub line: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

impl Store {
    /// Appends lines (unix ms, text) to a node's console log in one
    /// transaction and trims the log to [`BYTES_PER_NODE`]. Lines of a
    /// node that was deleted meanwhile are dropped.
    pub async fn append_console(
        &self,
        node_id: String,
        lines: Vec<(i64, String)>,
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM bm_nodes WHERE node_id = ?1)",
                [&node_id],
                |r| r.get(0),
            )?;
            if exists {
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO console_lines (node_id, line, created_ms) VALUES (?1, ?2, ?3)",
                    )?;
                    for (ms, line) in &lines {
                        insert.execute(params![node_id, line, ms])?;
                    }
                }
                tx.execute(
                    "DELETE FROM console_lines WHERE node_id = ?1 AND seq <= coalesce((
                         SELECT seq FROM (
                             SELECT seq, sum(length(CAST(line AS BLOB)) + 1) OVER (ORDER BY seq DESC) AS total
                             FROM console_lines WHERE node_id = ?1)
                         WHERE total > ?2 ORDER BY seq DESC LIMIT 1), -1)",
                    params![node_id, BYTES_PER_NODE],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether a BMNode with this id is registered.
    pub async fn bm_node_exists(&self, node_id: String) -> Result<bool, StoreError> {
        self.call_read(move |conn| {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM bm_nodes WHERE node_id = ?1)",
                [node_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The last `limit` lines of a node's console log printed at or after
    /// `since_ms`, oldest first.
    pub async fn console_log(
        &self,
        node_id: String,
        since_ms: i64,
        limit: u64,
    ) -> Result<Vec<ConsoleLine>, StoreError> {
        self.call_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT line, created_ms FROM (
                     SELECT seq, line, created_ms FROM console_lines
                     WHERE node_id = ?1 AND created_ms >= ?2 ORDER BY seq DESC LIMIT ?3)
                 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map(params![node_id, since_ms, limit as i64], |r| {
                    Ok(ConsoleLine {
                        line: r.get(0)?,
                        created_ms: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
