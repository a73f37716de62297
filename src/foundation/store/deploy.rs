//! Per-node deploy secrets and reports: the token embedded in a node's
//! rendered boot config (and required by its callbacks), rotated per
//! provision, and the raw inventory its deploy ramdisk reported.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension};

impl Store {
    /// Gives `node_id` a new random deploy token (the old one stops working)
    /// and returns it; `None` when there is no such node.
    pub async fn rotate_deploy_token(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        use rand::Rng;
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let node_id = node_id.to_string();
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE bm_nodes SET deploy_token = ?2 WHERE node_id = ?1",
                params![node_id, token],
            )?;
            Ok((n == 1).then_some(token))
        })
        .await
    }

    /// The current deploy token of `node_id` ("" when it never had one).
    pub async fn deploy_token(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        let node_id = node_id.to_string();
        self.call_read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT deploy_token FROM bm_nodes WHERE node_id = ?1")?
                .query_row([node_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Keeps the raw inventory a ramdisk reported for `node_id`.
    pub async fn save_inventory(&self, node_id: &str, inventory: String) -> Result<(), StoreError> {
        let node_id = node_id.to_string();
        let now = crate::foundation::ids::now_secs();
        self.call(move |conn| {
            conn.execute(
                "UPDATE bm_nodes SET inventory = ?2, inventory_time = ?3 WHERE node_id = ?1",
                params![node_id, inventory, now],
            )?;
            Ok(())
        })
        .await
    }

    /// The raw inventory of `node_id` and when it came ("" when none).
    pub async fn inventory(
        &self,
        node_id: &str,
    ) -> Result<Option<(String, Option<i64>)>, StoreError> {
        let node_id = node_id.to_string();
        self.call_read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT inventory, inventory_time FROM bm_nodes WHERE node_id = ?1",
                )?
                .query_row([node_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
        .await
    }
}

impl Store {
    /// Moves `node_id` by `trigger` (the state table decides where to), the
    /// old status becoming `pre_status`, in one transaction; refuses with
    /// `WrongState` naming the current state when the table has no such
    /// move. Returns (from, to).
    pub async fn transition_bm_node(
        &self,
        node_id: &str,
        trigger: crate::foundation::states::Trigger,
    ) -> Result<(super::BmNodeStatus, super::BmNodeStatus), StoreError> {
        let node_id = node_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let current: Option<String> = tx
                .query_row("SELECT status FROM bm_nodes WHERE node_id = ?1", [&node_id], |r| r.get(0))
                .optional()?;
            let Some(from) = current.as_deref().and_then(super::BmNodeStatus::parse) else {
                return Err(StoreError::NotFound(format!("node {node_id} is not registered")));
            };
            let Some(to) = crate::foundation::states::next(from, trigger) else {
                return Err(StoreError::WrongState(format!(
                    "node {node_id} is {}: {trigger:?} does not apply to it",
                    from.as_str()
                )));
            };
            tx.execute(
                "UPDATE bm_nodes SET pre_status = status, status = ?2, update_time = ?3 WHERE node_id = ?1",
                params![node_id, to.as_str(), crate::foundation::ids::now_secs()],
            )?;
            tx.commit()?;
            Ok((from, to))
        })
        .await
    }

    /// Every node in one of `statuses` (start-up recovery).
    pub async fn bm_nodes_in(
        &self,
        statuses: Vec<super::BmNodeStatus>,
    ) -> Result<Vec<String>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT node_id FROM bm_nodes WHERE status = ?1")?;
            let mut out = Vec::new();
            for s in statuses {
                let ids = stmt
                    .query_map([s.as_str()], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                out.extend(ids);
            }
            Ok(out)
        })
        .await
    }
}
