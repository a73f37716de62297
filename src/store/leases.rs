//! The `leases` table: DHCP leases of the PXE responder, so that addresses
//! survive a restart.

use super::{Store, StoreError};
use crate::pxe::dhcp::Lease;
use rusqlite::params;

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

    /// Writes the lease of `mac` (or removes it when `lease` is `None`).
    pub async fn save_lease(&self, mac: String, lease: Option<Lease>) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM leases WHERE mac = ?1", [&mac])?;
            if let Some(l) = lease {
                tx.execute("DELETE FROM leases WHERE ip = ?1", [l.ip.to_string()])?;
                tx.execute(
                    "INSERT INTO leases (mac, ip, expires, bound) VALUES (?1, ?2, ?3, ?4)",
                    params![l.mac, l.ip.to_string(), l.expires, l.bound],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The registered node whose PXE MAC is `mac`: (node_id, fixed address).
    pub async fn node_by_pxe_mac(&self, mac: &str) -> Result<Option<(String, String)>, StoreError> {
        let mac = mac.to_string();
        self.call(move |conn| {
            use rusqlite::OptionalExtension;
            Ok(conn
                .prepare_cached("SELECT node_id, pxe_address FROM bm_nodes WHERE pxe_mac = ?1")?
                .query_row([mac], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
        .await
    }
}
