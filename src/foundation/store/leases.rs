//! The `leases` table: DHCP leases of the PXE responder, so that addresses
//! survive a restart.

use super::{Store, StoreError};
use crate::foundation::dhcp::Lease;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::PathBuf;

/// The DHCP responder's own connection, used synchronously from its own
/// thread (never the async runtime): one batch of packets costs one node
/// lookup and one lease transaction without a hop to another thread, as a
/// single-threaded DHCP server does. WAL lets it write beside the store's
/// writer thread (SQLite takes turns; the busy timeout waits).
pub struct LeaseDb {
    conn: Connection,
    path: PathBuf,
    /// Timeline lines written since the global bound was last kept.
    lines_since_bound: usize,
}

/// Timeline lines written between two checks of the global bound (the check
/// counts the table: not on every ACK).
const BOUND_EVERY: usize = 256;

impl LeaseDb {
    /// The registered nodes among `macs` (PXE MAC → node id, fixed address).
    pub fn nodes_by_pxe_macs(
        &mut self,
        macs: &[String],
    ) -> Result<HashMap<String, PxeNode>, StoreError> {
        let r = nodes_by_macs(&self.conn, macs);
        r.map_err(|e| e.on_disk(&self.path))
    }

    /// Writes a batch's lease changes and boot timeline lines (mac, kind,
    /// detail) in one transaction: the DHCP thread's only writes. The
    /// timeline rides on the lease transaction an ACK waits for anyway (a
    /// second writer, or a second transaction, would hold the write lock
    /// or the thread longer: 2–3× Kea's answer delay in a discovery flood).
    pub fn save(
        &mut self,
        changes: Vec<(String, Option<Lease>)>,
        events: Vec<(String, &'static str, String)>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() && events.is_empty() {
            return Ok(());
        }
        self.lines_since_bound += events.len();
        let bound = self.lines_since_bound >= BOUND_EVERY;
        if bound {
            self.lines_since_bound = 0;
        }
        let r = (|| {
            let tx = self.conn.transaction()?;
            write_lease_changes(&tx, changes)?;
            super::boot_events::insert_events(&tx, events)?;
            if bound {
                super::boot_events::bound_all(&tx)?;
            }
            tx.commit()?;
            Ok(())
        })();
        r.map_err(|e: StoreError| e.on_disk(&self.path))
    }
}

/// The DHCP connection's busy handler: tries again every 50 µs, for at most
/// about five seconds (as the store's busy timeout), then gives up (the batch
/// is not acknowledged; the clients retry).
fn wait_briefly(tries: i32) -> bool {
    const TRY_EVERY: std::time::Duration = std::time::Duration::from_micros(50);
    const TRIES: i32 = 5_000_000 / 60;
    if tries >= TRIES {
        return false;
    }
    std::thread::sleep(TRY_EVERY);
    true
}

fn nodes_by_macs(
    conn: &Connection,
    macs: &[String],
) -> Result<HashMap<String, PxeNode>, StoreError> {
    use rusqlite::OptionalExtension;
    let mut stmt = conn.prepare_cached(
        "SELECT node_id, pxe_address, boot_mode FROM bm_nodes WHERE pxe_mac = ?1",
    )?;
    let mut found = HashMap::new();
    for mac in macs {
        if let Some(row) = stmt
            .query_row([mac], |r| {
                Ok(PxeNode {
                    node_id: r.get(0)?,
                    pxe_address: r.get(1)?,
                    uefi: r.get::<_, String>(2)? == "uefi",
                })
            })
            .optional()?
        {
            found.insert(mac.clone(), row);
        }
    }
    Ok(found)
}

fn write_leases(
    conn: &mut Connection,
    changes: Vec<(String, Option<Lease>)>,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    write_lease_changes(&tx, changes)?;
    tx.commit()?;
    Ok(())
}

fn write_lease_changes(
    tx: &Connection,
    changes: Vec<(String, Option<Lease>)>,
) -> Result<(), StoreError> {
    {
        let mut delete_mac = tx.prepare_cached("DELETE FROM leases WHERE mac = ?1")?;
        // REPLACE deletes the rows that hold the MAC or the address.
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO leases (mac, ip, expires, bound, discovery) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (mac, lease) in changes {
            match lease {
                Some(l) => {
                    insert.execute(params![
                        l.mac,
                        l.ip.to_string(),
                        l.expires,
                        l.bound,
                        l.discovery
                    ])?;
                }
                None => {
                    delete_mac.execute([&mac])?;
                }
            }
        }
    }
    Ok(())
}

/// What the PXE servers need of a registered node, by its PXE MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeNode {
    pub node_id: String,
    /// Its fixed address ("" = from the pool).
    pub pxe_address: String,
    /// Registered with boot_mode `uefi`.
    pub uefi: bool,
}

impl Store {
    /// Every lease.
    pub async fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare("SELECT mac, ip, expires, bound, discovery FROM leases")?;
            let rows = stmt
                .query_map([], |r| {
                    let ip: String = r.get(1)?;
                    Ok((
                        r.get::<_, String>(0)?,
                        ip,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, bool>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(mac, ip, expires, bound, discovery)| {
                    Some(Lease {
                        mac,
                        ip: ip.parse().ok()?,
                        expires,
                        bound,
                        discovery,
                    })
                })
                .collect())
        })
        .await
    }

    /// Writes the leases of the MACs given (removing those paired with
    /// `None`; a lease replaces any row of its MAC or its address), all in
    /// one transaction: the DHCP loop persists a whole batch of packets
    /// before it acknowledges any of them.
    pub async fn save_leases(
        &self,
        changes: Vec<(String, Option<Lease>)>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.call(move |conn| write_leases(conn, changes)).await
    }

    /// A connection of its own for the DHCP responder's thread ([`LeaseDb`]).
    pub fn lease_db(&self) -> Result<LeaseDb, StoreError> {
        let mut conn = Connection::open(self.path())?;
        // SQLite's own busy timeout sleeps 1, 2, 5, 10… ms between tries:
        // a lease write that meets the store's writer (a timeline batch of
        // well under a millisecond) would wait milliseconds before its ACK.
        conn.busy_handler(Some(wait_briefly))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints (which sync the disk) stay with the store's writer
        // thread: never on the path of a DHCP answer.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // As the store's writer: the write lock from the start of each
        // transaction (a read-then-write one could fail with SQLITE_BUSY
        // without waiting).
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        Ok(LeaseDb {
            conn,
            path: self.path().to_path_buf(),
            lines_since_bound: 0,
        })
    }

    /// The registered nodes among `macs` (PXE MAC → node id, fixed address).
    pub async fn nodes_by_pxe_macs(
        &self,
        macs: Vec<String>,
    ) -> Result<HashMap<String, PxeNode>, StoreError> {
        self.call_read(move |conn| nodes_by_macs(conn, &macs)).await
    }
}

impl Store {
    /// How many rows the lease table has (offers are not stored).
    pub async fn lease_count(&self) -> Result<u64, StoreError> {
        self.call_read(|conn| {
            Ok(conn.query_row("SELECT count(*) FROM leases", [], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }

    /// The address leased to `mac`, if any.
    pub async fn ip_of_lease(&self, mac: String) -> Result<Option<String>, StoreError> {
        self.call_read(move |conn| {
            use rusqlite::OptionalExtension;
            Ok(conn
                .prepare_cached("SELECT ip FROM leases WHERE mac = ?1")?
                .query_row([mac], |r| r.get(0))
                .optional()?)
        })
        .await
    }
}
