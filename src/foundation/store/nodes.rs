//! The `nodes` table: hosts that already run an OS (seed 002 §1), where
//! their SSH server answers, their role and their collected inventory.

use super::{Store, StoreError};
use crate::foundation::ids::now_secs;
use rusqlite::{params, OptionalExtension, Row};

/// A Node's collection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Added; its inventory is being collected.
    Collecting,
    /// Inventory collected.
    Available,
    /// The last collection failed; see the job log and messages.
    CollectFailed,
}

impl NodeStatus {
    pub const ALL: [NodeStatus; 3] = [
        NodeStatus::Collecting,
        NodeStatus::Available,
        NodeStatus::CollectFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Collecting => "collecting",
            NodeStatus::Available => "available",
            NodeStatus::CollectFailed => "collect_failed",
        }
    }

    pub fn parse(s: &str) -> Option<NodeStatus> {
        NodeStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A host with an OS.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub node_id: String,
    pub address: String,
    pub port: u16,
    pub hostname: String,
    pub role: String,
    pub sub_roles: Vec<String>,
    pub product_type: String,
    pub product_name: String,
    pub zone_id: String,
    pub description: String,
    pub status: NodeStatus,
    pub pre_status: Option<NodeStatus>,
    pub machine_id: String,
    pub host_key: String,
    pub bm_node_id: String,
    /// JSON of [`crate::foundation::inventory::Inventory`] plus assigned ids.
    pub inventory: String,
    pub create_time: i64,
    pub update_time: i64,
}

const COLUMNS: &str = "node_id, address, port, hostname, role, sub_roles, product_type, product_name, zone_id, \
    description, status, pre_status, machine_id, host_key, bm_node_id, inventory, create_time, update_time";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Node> {
    let sub: String = r.get(5)?;
    let status: String = r.get(10)?;
    let pre: String = r.get(11)?;
    Ok(Node {
        node_id: r.get(0)?,
        address: r.get(1)?,
        port: r.get(2)?,
        hostname: r.get(3)?,
        role: r.get(4)?,
        sub_roles: serde_json::from_str(&sub).unwrap_or_default(),
        product_type: r.get(6)?,
        product_name: r.get(7)?,
        zone_id: r.get(8)?,
        description: r.get(9)?,
        status: NodeStatus::parse(&status).unwrap_or(NodeStatus::CollectFailed),
        pre_status: NodeStatus::parse(&pre),
        machine_id: r.get(12)?,
        host_key: r.get(13)?,
        bm_node_id: r.get(14)?,
        inventory: r.get(15)?,
        create_time: r.get(16)?,
        update_time: r.get(17)?,
    })
}

fn write(conn: &rusqlite::Connection, n: &Node, insert: bool) -> rusqlite::Result<usize> {
    let sql = if insert {
        format!("INSERT INTO nodes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)")
    } else {
        let sets: Vec<String> = COLUMNS
            .split(',')
            .map(str::trim)
            .enumerate()
            .skip(1)
            .map(|(i, c)| format!("{c} = ?{}", i + 1))
            .collect();
        format!("UPDATE nodes SET {} WHERE node_id = ?1", sets.join(", "))
    };
    conn.prepare_cached(&sql)?.execute(params![
        n.node_id,
        n.address,
        n.port,
        n.hostname,
        n.role,
        serde_json::to_string(&n.sub_roles).unwrap_or_else(|_| "[]".into()),
        n.product_type,
        n.product_name,
        n.zone_id,
        n.description,
        n.status.as_str(),
        n.pre_status.map(|s| s.as_str()).unwrap_or(""),
        n.machine_id,
        n.host_key,
        n.bm_node_id,
        n.inventory,
        n.create_time,
        n.update_time,
    ])
}

impl Store {
    /// Inserts nodes all-or-nothing; an address+port already registered is a conflict.
    pub async fn insert_nodes(&self, nodes: Vec<Node>) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for n in &nodes {
                write(&tx, n, true).map_err(|e| {
                    super::unique_violation(e, |_| {
                        format!("a node at {}:{} is already registered", n.address, n.port)
                    })
                })?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every node, in registration order.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.call(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM nodes ORDER BY seq"))?;
            let nodes = stmt
                .query_map([], from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(nodes)
        })
        .await
    }

    /// One node by id.
    pub async fn get_node(&self, node_id: &str) -> Result<Option<Node>, StoreError> {
        let id = node_id.to_string();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE node_id = ?1"))?
                .query_row([id], from_row)
                .optional()?)
        })
        .await
    }

    /// Deletes nodes all-or-nothing; an unknown id deletes none.
    pub async fn delete_nodes(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for id in &ids {
                if tx.execute("DELETE FROM nodes WHERE node_id = ?1", [id])? == 0 {
                    return Err(StoreError::NotFound(format!(
                        "node {id} is not registered: check the id with DescribeNodes; nothing was deleted"
                    )));
                }
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Applies `change` to a stored node in one transaction (`update_time`
    /// set; a status change moves the old status to `pre_status`).
    pub async fn modify_node<F>(&self, node_id: &str, change: F) -> Result<Node, StoreError>
    where
        F: FnOnce(&mut Node) -> Result<(), StoreError> + Send + 'static,
    {
        let id = node_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let Some(mut node) = tx
                .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE node_id = ?1"))?
                .query_row([&id], from_row)
                .optional()?
            else {
                return Err(StoreError::NotFound(format!(
                    "node {id} is not registered: check the id with DescribeNodes"
                )));
            };
            let before = node.status;
            change(&mut node)?;
            if node.status != before {
                node.pre_status = Some(before);
            }
            node.update_time = now_secs();
            write(&tx, &node, false)?;
            tx.commit()?;
            Ok(node)
        })
        .await
    }
}
