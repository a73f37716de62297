//! The `leases` table: DHCP leases of the PXE responder, so that addresses
//! survive a restart.

use super::{Store, StoreError};
use crate::foundation::dhcp::Lease;
use rusqlite::params;

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
            let mut stmt = conn.prepare("SELECT mac, ip, expires, bound FROM leases")?;
            let rows = stmt
                .query_map([], |r| {
                    let ip: String = r.get(1)?;
                    Ok((
                        r.get::<_, String>(0)?,
                        ip,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(mac, ip, expires, bound)| {
                    Some(Lease {
                        mac,
                        ip: ip.parse().ok()?,
                        expires,
                        bound,
                    })
                })
                .collect())
        })
        .await
    }

    /// Writes the leases of the MACs given (removing those paired with
    /// `None`), all in one transaction: the DHCP loop persists a whole batch
    /// of packets before it answers any of them.
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
                let mut delete_ip = tx.prepare_cached("DELETE FROM leases WHERE ip = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO leases (mac, ip, expires, bound) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (mac, lease) in changes {
                    delete_mac.execute([&mac])?;
                    if let Some(l) = lease {
                        let ip = l.ip.to_string();
                        delete_ip.execute([&ip])?;
                        insert.execute(params![l.mac, ip, l.expires, l.bound])?;
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
    ) -> Result<std::collections::HashMap<String, PxeNode>, StoreError> {
        self.call_read(move |conn| {
            use rusqlite::OptionalExtension;
            let mut stmt = conn.prepare_cached(
                "SELECT node_id, pxe_address, boot_mode FROM bm_nodes WHERE pxe_mac = ?1",
            )?;
            let mut found = std::collections::HashMap::new();
            for mac in macs {
                if let Some(row) = stmt
                    .query_row([&mac], |r| {
                        Ok(PxeNode {
                            node_id: r.get(0)?,
                            pxe_address: r.get(1)?,
                            uefi: r.get::<_, String>(2)? == "uefi",
                        })
                    })
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
