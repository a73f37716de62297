//! The node-collection service: CollectNodes jobs (step0 connect, step1
//! collect, step2 store) over SSH with the daemon's own key, at most
//! `ssh.max_concurrent` hosts at once, and the stored form of a Node's
//! inventory (ids given to its disks and interfaces, kept across
//! re-collections by name).

use crate::foundation::errors::RetCode;
use crate::foundation::ids::{new_id, now_secs, JOB_PREFIX};
use crate::foundation::inventory::{self, Inventory};
use crate::foundation::shared::Shared;
use crate::foundation::ssh::{self, SshError, SshSettings};
use crate::foundation::store::{Job, JobNode, JobStatus, Node, NodeStatus, StoreError};
use crate::foundation::usermsg::{self, Subject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Prefix of the ids given to a Node's disks.
pub const DISK_PREFIX: &str = "d-";
/// Prefix of the ids given to a Node's network interfaces.
pub const NET_PREFIX: &str = "e-";

/// What the `inventory` column holds: the inventory and the ids given to
/// its disks and interfaces (kept across re-collections by name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stored {
    #[serde(flatten)]
    pub inv: Inventory,
    #[serde(default)]
    pub disk_ids: BTreeMap<String, String>,
    #[serde(default)]
    pub net_ids: BTreeMap<String, String>,
}

pub fn stored(node: &Node) -> Stored {
    serde_json::from_str(&node.inventory).unwrap_or_default()
}

/// The daemon's SSH key file.
pub fn key_path(shared: &Shared) -> PathBuf {
    let configured = shared.config().ssh.key.clone();
    if configured.is_empty() {
        shared.state_dir.join("ssh").join("id_ed25519")
    } else {
        PathBuf::from(configured)
    }
}

/// The SSH client settings of the config in force.
pub fn settings(shared: &Shared) -> SshSettings {
    let c = shared.config().ssh.clone();
    SshSettings {
        user: c.user,
        port: c.port,
        connect_timeout: Duration::from_secs(c.connect_timeout),
        command_timeout: Duration::from_secs(c.command_timeout),
    }
}

/// The node-collection service.
pub struct Collector {
    shared: Arc<Shared>,
}

impl Collector {
    pub fn new(shared: Arc<Shared>) -> Collector {
        Collector { shared }
    }

    /// Starts a CollectNodes job over `nodes`; returns the job.
    pub async fn start(
        &self,
        nodes: Vec<Node>,
        user_id: &str,
        request_id: &str,
    ) -> Result<Job, StoreError> {
        let ids = nodes.iter().map(|n| n.node_id.clone()).collect();
        let job = self
            .shared
            .store
            .create_job(new_id(JOB_PREFIX), "CollectNodes", ids, user_id, request_id)
            .await?;
        let (shared, job_id, request_id) = (
            self.shared.clone(),
            job.job_id.clone(),
            request_id.to_string(),
        );
        crate::service::jobs::spawn(
            &self.shared.tasks,
            self.shared.store.clone(),
            job_id.clone(),
            async move { run_collect(shared, &job_id, nodes, &request_id).await },
        );
        Ok(job)
    }
}

/// What collecting one host gave.
type Collected = Result<(inventory::Outputs, Vec<String>, String), SshError>;

async fn run_collect(
    shared: Arc<Shared>,
    job_id: &str,
    nodes: Vec<Node>,
    request_id: &str,
) -> Result<(), StoreError> {
    let store = &shared.store;
    let total = nodes.len();
    store
        .append_job_log(job_id, format!("step0: connecting to {total} node(s)"))
        .await?;
    let key = match ssh::load_or_create_key(&key_path(&shared)) {
        Ok(k) => Arc::new(k),
        Err(e) => {
            tracing::error!("{e}");
            return store
                .set_job_status(
                    job_id,
                    JobStatus::Failed,
                    Some(format!("Error: the daemon's SSH key is unusable: {e}")),
                )
                .await;
        }
    };
    let s = settings(&shared);
    let gate = Arc::new(Semaphore::new(shared.config().ssh.max_concurrent));
    let mut set = JoinSet::new();
    for node in nodes {
        let (s, key, gate) = (s.clone(), key.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let addr = match node.address.parse::<Ipv4Addr>() {
                Ok(ip) => SocketAddr::from((ip, node.port)),
                Err(_) => {
                    return (
                        node,
                        Err(SshError::Unreachable(SocketAddr::from(([0, 0, 0, 0], 0)))),
                    )
                }
            };
            let expected = (!node.host_key.is_empty()).then(|| node.host_key.clone());
            // The whole host is bounded too: connect + every command.
            let bound =
                s.connect_timeout * 2 + s.command_timeout * (inventory::COMMANDS.len() as u32 + 1);
            let r: Collected =
                match tokio::time::timeout(bound, ssh::collect(addr, &s, key, expected)).await {
                    Ok(r) => r,
                    Err(_) => Err(SshError::Timeout),
                };
            (node, r)
        });
    }
    store
        .set_job_status(job_id, JobStatus::Step(1), Some("step1: collecting".into()))
        .await?;
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            results.push(x);
        }
    }
    store
        .set_job_status(job_id, JobStatus::Step(2), Some("step2: storing".into()))
        .await?;
    // machine-id → (node, address) of every node known, updated as this
    // job stores its results (several of them may share one).
    let mut machine_ids: std::collections::HashMap<String, (String, String)> = store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|o| !o.machine_id.is_empty())
        .map(|o| (o.machine_id.clone(), (o.node_id.clone(), o.address.clone())))
        .collect();
    let mut failed = Vec::new();
    results.sort_by(|a, b| a.0.node_id.cmp(&b.0.node_id));
    for (node, result) in results {
        let label = format!("{} ({})", node.node_id, node.address);
        match result {
            Ok((outputs, notes, host_key)) => {
                let inv = inventory::parse(&outputs);
                for note in notes.iter().chain(inv.missing.iter()) {
                    store
                        .append_job_log(job_id, format!("{label}: warning: {note}"))
                        .await?;
                }
                if !inv.machine_id.is_empty() {
                    match machine_ids.get(&inv.machine_id) {
                        Some((twin, twin_address)) if *twin != node.node_id => {
                            store
                                .append_job_log(
                                    job_id,
                                    format!("{label}: warning: /etc/machine-id equals that of {twin} ({twin_address}): a cloned image or a shared namespace?"),
                                )
                                .await?;
                        }
                        Some(_) => {}
                        None => {
                            machine_ids.insert(
                                inv.machine_id.clone(),
                                (node.node_id.clone(), node.address.clone()),
                            );
                        }
                    }
                }
                let summary = format!(
                    "{label}: collected {} CPU(s), {} GiB, {} disk(s), {} network(s)",
                    inv.cpu.cpu_processors,
                    inv.memory_size,
                    inv.disks.len(),
                    inv.networks.len()
                );
                let prev = stored(&node);
                let mut st = Stored {
                    inv,
                    ..Stored::default()
                };
                for d in &st.inv.disks {
                    let id = prev
                        .disk_ids
                        .get(&d.name)
                        .cloned()
                        .unwrap_or_else(|| new_id(DISK_PREFIX));
                    st.disk_ids.insert(d.name.clone(), id);
                }
                for n in &st.inv.devices {
                    let id = prev
                        .net_ids
                        .get(&n.name)
                        .cloned()
                        .unwrap_or_else(|| new_id(NET_PREFIX));
                    st.net_ids.insert(n.name.clone(), id);
                }
                let json = serde_json::to_string(&st).unwrap_or_else(|_| "{}".into());
                shared
                    .store
                    .modify_node(&node.node_id, move |n| {
                        n.hostname = st.inv.hostname.clone();
                        n.machine_id = st.inv.machine_id.clone();
                        if n.host_key.is_empty() {
                            n.host_key = host_key; // trusted on first use
                        }
                        n.inventory = json;
                        n.status = NodeStatus::Available;
                        Ok(())
                    })
                    .await?;
                let share = JobNode {
                    node_id: node.node_id.clone(),
                    status: "successful".into(),
                    progress: 100,
                    ret_code: 0,
                    message: String::new(),
                };
                store.set_job_node(job_id, share, Some(summary)).await?;
            }
            Err(e) => {
                failed.push(node.node_id.clone());
                let address = format!("{}:{}", node.address, node.port);
                let (code, event, detail, expected, presented) = match &e {
                    SshError::Unreachable(_) => (
                        RetCode::NodeUnreachable,
                        &usermsg::NODE_UNREACHABLE,
                        String::new(),
                        String::new(),
                        String::new(),
                    ),
                    SshError::AuthRejected(..) => (
                        RetCode::NodeAuthRejected,
                        &usermsg::NODE_AUTH_REJECTED,
                        String::new(),
                        String::new(),
                        String::new(),
                    ),
                    SshError::HostKeyChanged {
                        expected,
                        presented,
                        ..
                    } => (
                        RetCode::NodeHostKeyChanged,
                        &usermsg::NODE_HOST_KEY_CHANGED,
                        String::new(),
                        expected.clone(),
                        presented.clone(),
                    ),
                    SshError::Timeout => (
                        RetCode::NodeCollectFailed,
                        &usermsg::NODE_COLLECT_FAILED,
                        "timed out".to_string(),
                        String::new(),
                        String::new(),
                    ),
                    SshError::Stalled(command, secs) => (
                        RetCode::NodeCollectFailed,
                        &usermsg::NODE_COLLECT_FAILED,
                        format!(
                            "`{}` did not finish within {secs} s",
                            command.split_whitespace().next().unwrap_or("")
                        ),
                        String::new(),
                        String::new(),
                    ),
                    SshError::Protocol(_) => (
                        RetCode::NodeCollectFailed,
                        &usermsg::NODE_COLLECT_FAILED,
                        "SSH session error".to_string(),
                        String::new(),
                        String::new(),
                    ),
                };
                tracing::info!(node_id = %node.node_id, error = %e, "collection failed");
                let port = node.port.to_string();
                let user = shared.config().ssh.user.clone();
                let message = usermsg::message(
                    event,
                    &[
                        ("node_id", &node.node_id),
                        ("address", &address),
                        ("port", &port),
                        ("user", &user),
                        ("detail", &detail),
                        ("expected", &expected),
                        ("presented", &presented),
                    ],
                    Subject {
                        resource_type: "Node",
                        resource_id: &node.node_id,
                        request_id,
                    },
                    now_secs(),
                    shared.config().messages.retention_days,
                );
                let text = message.user_message.clone();
                store.insert_message(message).await?;
                shared
                    .store
                    .modify_node(&node.node_id, |n| {
                        n.status = NodeStatus::CollectFailed;
                        Ok(())
                    })
                    .await?;
                let share = JobNode {
                    node_id: node.node_id.clone(),
                    status: "failed".into(),
                    progress: 100,
                    ret_code: code.code(),
                    message: text.clone(),
                };
                store
                    .set_job_node(job_id, share, Some(format!("{label}: failed: {text}")))
                    .await?;
            }
        }
    }
    let (status, line) = if failed.is_empty() {
        (
            JobStatus::Successful,
            format!("{total} of {total} node(s) collected"),
        )
    } else {
        (
            JobStatus::Failed,
            format!(
                "{} of {total} node(s) collected; failed: {}",
                total - failed.len(),
                failed.join(", ")
            ),
        )
    };
    store.set_job_status(job_id, status, Some(line)).await
}
