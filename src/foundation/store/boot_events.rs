//! The `boot_events` table: what happened when a machine network-booted
//! (DHCP exchanges, TFTP and HTTP files served), bounded per machine and in
//! all (a flood of made-up MACs cannot grow it without end).

use super::{Store, StoreError};
use rusqlite::params;

/// Events kept per MAC; older ones are dropped.
pub const EVENTS_PER_MAC: i64 = 200;
/// Events kept in all. Past it, the oldest events of MACs that are no
/// registered node's go first, then the oldest of all, down to 99 % (small
/// steps: each is a pause of the DHCP thread, which writes its own lines).
pub const EVENTS_MAX: i64 = 20_000;

/// One step of a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    pub mac: String,
    pub node_id: String,
    /// dhcp, tftp, http, callback or bmc (what rackboot told its BMC).
    pub kind: String,
    pub detail: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

impl Store {
    /// Records an event (the node id is looked up by MAC when empty).
    pub async fn record_boot_event(
        &self,
        mac: String,
        kind: &'static str,
        detail: String,
    ) -> Result<(), StoreError> {
        self.record_boot_events(vec![(mac, kind, detail)]).await
    }

    /// Records several events (mac, kind, detail) in one transaction.
    pub async fn record_boot_events(
        &self,
        events: Vec<(String, &'static str, String)>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.call(move |conn| write_events(conn, events)).await
    }

    /// How many events the table holds in all.
    pub async fn boot_event_count(&self) -> Result<u64, StoreError> {
        self.call_read(|conn| {
            Ok(conn.query_row("SELECT count(*) FROM boot_events", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
        .await
    }

    /// Events of `mac` (or of the node's MAC) since `since_ms`, oldest first, at most `limit`.
    pub async fn boot_events(
        &self,
        mac: String,
        since_ms: i64,
        limit: u64,
    ) -> Result<Vec<BootEvent>, StoreError> {
        self.call_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT mac, node_id, kind, detail, created_ms FROM boot_events
                 WHERE mac = ?1 AND created_ms >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![mac, since_ms, limit as i64], event_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Events of `mac` since the last thing rackboot told its BMC (the
    /// `bmc` line included; all of them when there is none), oldest
    /// first, at most `limit`: the latest boot attempt.
    pub async fn last_boot_attempt(
        &self,
        mac: String,
        limit: u64,
    ) -> Result<Vec<BootEvent>, StoreError> {
        self.call_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT mac, node_id, kind, detail, created_ms FROM boot_events
                 WHERE mac = ?1 AND seq >= coalesce(
                     (SELECT max(seq) FROM boot_events WHERE mac = ?1 AND kind = 'bmc'), 0)
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![mac, limit as i64], event_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// MACs of no registered node whose PXE firmware (a DHCP request with
    /// a client architecture) asked since `since_ms`, newest first, at
    /// most `limit`.
    pub async fn pxe_strangers(
        &self,
        since_ms: i64,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.call_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT mac FROM boot_events
                 WHERE kind = 'dhcp' AND created_ms >= ?1 AND detail LIKE '%, arch %'
                   AND mac NOT IN (SELECT pxe_mac FROM bm_nodes WHERE pxe_mac IS NOT NULL)
                 GROUP BY mac ORDER BY max(seq) DESC LIMIT ?2",
            )?;
            let macs = stmt
                .query_map(params![since_ms, limit as i64], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(macs)
        })
        .await
    }

    /// The MAC holding the lease of `ip`, if any.
    pub async fn mac_of_lease(&self, ip: String) -> Result<Option<String>, StoreError> {
        self.call(move |conn| {
            use rusqlite::OptionalExtension;
            Ok(conn
                .prepare_cached("SELECT mac FROM leases WHERE ip = ?1")?
                .query_row([ip], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// The PXE MAC of a node.
    pub async fn pxe_mac_of(&self, node_id: String) -> Result<Option<String>, StoreError> {
        self.call(move |conn| {
            use rusqlite::OptionalExtension;
            Ok(conn
                .prepare_cached("SELECT pxe_mac FROM bm_nodes WHERE node_id = ?1")?
                .query_row([node_id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }
}

/// Keeps the table within [`EVENTS_MAX`] rows (see there). The span of
/// sequence numbers bounds the count from above, so the full count runs
/// only when the table may be over.
/// Writes `events` (mac, kind, detail) in one transaction, stamped now,
/// keeping the per-MAC and global bounds.
pub(super) fn write_events(
    conn: &mut rusqlite::Connection,
    events: Vec<(String, &'static str, String)>,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    insert_events(&tx, events)?;
    bound_all(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Inserts `events` stamped now, each MAC kept to [`EVENTS_PER_MAC`], in
/// the caller's transaction; the global bound is the caller's
/// ([`bound_all`]).
/// A row of `SELECT mac, node_id, kind, detail, created_ms`.
fn event_of(r: &rusqlite::Row) -> rusqlite::Result<BootEvent> {
    Ok(BootEvent {
        mac: r.get(0)?,
        node_id: r.get(1)?,
        kind: r.get(2)?,
        detail: r.get(3)?,
        created_ms: r.get(4)?,
    })
}

pub(super) fn insert_events(
    conn: &rusqlite::Connection,
    events: Vec<(String, &'static str, String)>,
) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut insert = conn.prepare_cached(
        "INSERT INTO boot_events (mac, node_id, kind, detail, created_ms)
         VALUES (?1, COALESCE((SELECT node_id FROM bm_nodes WHERE pxe_mac = ?1), ''), ?2, ?3, ?4)",
    )?;
    let mut trim = conn.prepare_cached(
        "DELETE FROM boot_events WHERE mac = ?1 AND seq <= (SELECT seq FROM boot_events WHERE mac = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?;
    let mut macs = std::collections::HashSet::new();
    for (mac, kind, detail) in events {
        insert.execute(params![mac, kind, detail, now])?;
        macs.insert(mac);
    }
    for mac in macs {
        trim.execute(params![mac, EVENTS_PER_MAC])?;
    }
    Ok(())
}

pub(super) fn bound_all(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let span: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM boot_events")?
        .query_row([], |r| r.get(0))?;
    if span <= EVENTS_MAX {
        return Ok(());
    }
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM boot_events")?
        .query_row([], |r| r.get(0))?;
    if count <= EVENTS_MAX {
        return Ok(());
    }
    let excess = count - EVENTS_MAX * 99 / 100;
    let unknown = conn
        .prepare_cached(
            "DELETE FROM boot_events WHERE seq IN (SELECT seq FROM boot_events
             WHERE mac NOT IN (SELECT pxe_mac FROM bm_nodes WHERE pxe_mac IS NOT NULL)
             ORDER BY seq LIMIT ?1)",
        )?
        .execute([excess])? as i64;
    if unknown < excess {
        conn.prepare_cached(
            "DELETE FROM boot_events WHERE seq IN (SELECT seq FROM boot_events ORDER BY seq LIMIT ?1)",
        )?
        .execute([excess - unknown])?;
    }
    Ok(())
}
