//! The `leases` table: DHCP leases of the PXE responder, so that addresses
//! survive a restart.

use super::{Store, StoreError};
use crate::foundation::dhcp::Lease;
use rusqlite::params;

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
        self.call(move |conn| {
            let tx = conn.transaction()?;
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
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The registered nodes among `macs` (PXE MAC → node id, fixed address).
    pub async fn nodes_by_pxe_macs(
        &self,
        macs: Vec<String>,
    ) -> Result<std::collections::HashMap<String, (String, String)>, StoreError> {
        self.call_read(move |conn| {
            use rusqlite::OptionalExtension;
            let mut stmt = conn
                .prepare_cached("SELECT node_id, pxe_address FROM bm_nodes WHERE pxe_mac = ?1")?;
            let mut found = std::collections::HashMap::new();
            for mac in macs {
                if let Some(row) = stmt
                    .query_row([&mac], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                {
                    found.insert(mac, row);
                }
            }
            Ok(found)
        })
        .await
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
