//! Node actions (seed 002 §1) for hosts that already run an OS: AddNodes,
//! CollectNodes (a job: step0 connect, step1 collect, step2 store),
//! DescribeNodes, DeleteNodes, ModifyNodeAttributes, and DescribeSSHKey
//! (the daemon's public key, created on first use).

use super::bmnodes::check_node_ids;
use super::error::{ApiError, RetCode};
use super::{Call, Ctx, Fields, HandlerFuture};
use crate::ids::{format_time, new_id, now_secs, JOB_PREFIX, NODE_PREFIX};
use crate::inventory::{self, Inventory, Net};
use crate::ssh::{self, SshError, SshSettings};
use crate::store::{JobNode, JobStatus, Node, NodeStatus, StoreError};
use crate::usermsg::{self, Subject};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Most addresses one AddNodes may cover.
pub const MAX_ADD: u32 = 1024;
const DISK_PREFIX: &str = "d-";
const NET_PREFIX: &str = "e-";
const DISK_TYPES: &[&str] = &["ssd", "sata", "hdd", "nvme"];

/// What the `inventory` column holds: the inventory and the ids given to
/// its disks and interfaces (kept across re-collections by name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    inv: Inventory,
    #[serde(default)]
    disk_ids: BTreeMap<String, String>,
    #[serde(default)]
    net_ids: BTreeMap<String, String>,
}

fn stored(node: &Node) -> Stored {
    serde_json::from_str(&node.inventory).unwrap_or_default()
}

fn key_path(ctx: &Ctx) -> PathBuf {
    let configured = ctx.config().ssh.key.clone();
    if configured.is_empty() {
        ctx.state_dir.join("ssh").join("id_ed25519")
    } else {
        PathBuf::from(configured)
    }
}

fn settings(ctx: &Ctx) -> SshSettings {
    let c = ctx.config().ssh.clone();
    SshSettings {
        user: c.user,
        port: c.port,
        connect_timeout: Duration::from_secs(c.connect_timeout),
        command_timeout: Duration::from_secs(c.command_timeout),
    }
}

fn bond_mode_number(mode: &str) -> i64 {
    match mode {
        "balance-rr" => 0,
        "active-backup" => 1,
        "balance-xor" => 2,
        "broadcast" => 3,
        "802.3ad" => 4,
        "balance-tlb" => 5,
        "balance-alb" => 6,
        _ => 0,
    }
}

fn net_json(n: &Net, s: &Stored, node_id: &str, with_raw: bool) -> Value {
    let id = s.net_ids.get(&n.name).cloned().unwrap_or_default();
    let raw = s.inv.devices.iter().find(|d| d.name == n.raw_device);
    let mut v = json!({
        "address": n.address,
        "bond_mode": bond_mode_number(&n.bond_mode),
        "gateway": n.gateway,
        "mac_address": n.mac_address,
        "name": n.name,
        "netmask": n.netmask,
        "network": n.network,
        "network_id": id,
        "node_id": node_id,
        "raw_device": n.raw_device,
        "raw_device_id": raw.and_then(|r| s.net_ids.get(&r.name)).cloned().unwrap_or_default(),
        "raw_device_type": raw.map(|r| r.kind.clone()).unwrap_or_default(),
        "slave_devices": n.slave_devices,
        "type": n.kind,
        "vlan_id": n.vlan_id,
    });
    if with_raw {
        v["raw_device_info"] = match raw {
            Some(r) => net_json(r, s, node_id, false),
            None => json!({}),
        };
    }
    v
}

fn disk_json(d: &inventory::Disk, s: &Stored, node_id: &str) -> Value {
    json!({
        "disk_id": s.disk_ids.get(&d.name).cloned().unwrap_or_default(),
        "id": d.id, "name": d.name, "node_id": node_id,
        "rest_part": d.rest_part, "rest_size": d.rest_size,
        "root_part": d.root_part, "root_size": d.root_size,
        "size": d.size, "status": d.status,
        "swap_part": d.swap_part, "swap_size": d.swap_size,
        "type": d.kind,
    })
}

/// One node in the shape of seed 002's DescribeNodes example.
fn node_json(n: &Node) -> Value {
    let s = stored(n);
    let id = n.node_id.as_str();
    let mgmt = s.inv.networks.iter().find(|x| x.address == n.address);
    let mgmt_json = match mgmt {
        Some(m) => json!({
            "address": m.address,
            "bond_mode": m.bond_mode,
            "bond_name": if m.kind == "bond" { m.name.clone() } else { String::new() },
            "bond_slaves": if m.kind == "bond" { m.slave_devices.clone() } else { String::new() },
            "gateway": m.gateway,
            "name": m.name,
            "netmask": m.netmask,
            "vlan_id": m.vlan_id,
            "vlan_raw_device": if m.kind == "vlan" { m.raw_device.clone() } else { String::new() },
        }),
        None => {
            json!({"address": n.address, "bond_mode": "", "bond_name": "", "bond_slaves": "", "gateway": "",
                       "name": "", "netmask": "", "vlan_id": "", "vlan_raw_device": ""})
        }
    };
    let os_disk = s
        .inv
        .disks
        .iter()
        .find(|d| d.is_os)
        .map(|d| disk_json(d, &s, id))
        .unwrap_or_else(|| json!({}));
    let data_disks: Vec<Value> = s
        .inv
        .disks
        .iter()
        .filter(|d| !d.is_os)
        .map(|d| disk_json(d, &s, id))
        .collect();
    let networks: Vec<Value> = s
        .inv
        .networks
        .iter()
        .map(|x| net_json(x, &s, id, true))
        .collect();
    json!({
        "address": n.address,
        "bm_node_id": n.bm_node_id,
        "cpu": s.inv.cpu,
        "create_time": format_time(n.create_time),
        "data_disks": data_disks,
        "description": n.description,
        "hostname": n.hostname,
        "machine_id": n.machine_id,
        "memory": {"memory_size": s.inv.memory_size},
        "mgmt_network": mgmt_json,
        "networks": networks,
        "node_id": n.node_id,
        "os": s.inv.os,
        "os_disk": os_disk,
        "pre_status": n.pre_status.map(|x| x.as_str()).unwrap_or(""),
        "product_name": n.product_name,
        "product_type": n.product_type,
        "role": n.role,
        "status": n.status.as_str(),
        "sub_roles": n.sub_roles,
        "update_time": format_time(n.update_time),
        "zone_id": n.zone_id,
    })
}

pub fn describe(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let ids = p.list("node_ids");
        check_node_ids("node_ids", &ids)?;
        let status = match p.str("status") {
            None => None,
            Some(x) => Some(NodeStatus::parse(x).ok_or_else(|| {
                ApiError::field("status", format!("`{x}` is not a Node status (allowed: collecting, available, collect_failed)"))
            })?),
        };
        let pre = match p.str("pre_status") {
            None => None,
            Some(x) => Some(NodeStatus::parse(x).ok_or_else(|| {
                ApiError::field("pre_status", format!("`{x}` is not a Node status (allowed: collecting, available, collect_failed)"))
            })?),
        };
        let (offset, limit) = p.paging()?;
        let all = ctx.store.list_nodes().await?;
        for id in &ids {
            if !all.iter().any(|n| &n.node_id == id) {
                return Err(ApiError::not_found(format!(
                    "node {id} is not registered: list nodes with DescribeNodes without node_ids"
                )));
            }
        }
        let sub_roles = p.list("sub_roles");
        let matches: Vec<&Node> = all
            .iter()
            .filter(|n| ids.is_empty() || ids.contains(&n.node_id))
            .filter(|n| status.is_none_or(|s| n.status == s))
            .filter(|n| pre.is_none_or(|s| n.pre_status == Some(s)))
            .filter(|n| p.str("role").is_none_or(|r| n.role == r))
            .filter(|n| p.str("product_type").is_none_or(|r| n.product_type == r))
            .filter(|n| p.str("product_name").is_none_or(|r| n.product_name == r))
            .filter(|n| sub_roles.iter().all(|r| n.sub_roles.contains(r)))
            .collect();
        let total = matches.len();
        let set: Vec<Value> = matches
            .into_iter()
            .skip(offset as usize)
            .take(limit.map(|l| l as usize).unwrap_or(usize::MAX))
            .map(node_json)
            .collect();
        Ok(Fields::new()
            .with("node_set", set)
            .with("total_count", total))
    })
}

pub fn add(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let addrs = p.ipv4_range(MAX_ADD, "AddNodes")?;
        let s = settings(&ctx);
        // Probe the SSH port of every address, bounded in concurrency and time.
        let gate = Arc::new(Semaphore::new(256));
        let mut probes = JoinSet::new();
        for ip in addrs {
            let gate = gate.clone();
            let (port, timeout) = (s.port, s.connect_timeout);
            probes.spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                let addr = SocketAddr::from((ip, port));
                matches!(
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                )
                .then_some(ip)
            });
        }
        let mut live = Vec::new();
        while let Some(r) = probes.join_next().await {
            if let Ok(Some(ip)) = r {
                live.push(ip);
            }
        }
        live.sort();
        let known = ctx.store.list_nodes().await?;
        let now = now_secs();
        let new_nodes: Vec<Node> = live
            .iter()
            .filter(|ip| {
                !known
                    .iter()
                    .any(|n| n.address == ip.to_string() && n.port == s.port)
            })
            .map(|ip| Node {
                node_id: new_id(NODE_PREFIX),
                address: ip.to_string(),
                port: s.port,
                hostname: String::new(),
                role: String::new(),
                sub_roles: Vec::new(),
                product_type: String::new(),
                product_name: String::new(),
                zone_id: String::new(),
                description: String::new(),
                status: NodeStatus::Collecting,
                pre_status: None,
                machine_id: String::new(),
                host_key: String::new(),
                bm_node_id: String::new(),
                inventory: "{}".into(),
                create_time: now,
                update_time: now,
            })
            .collect();
        let ids: Vec<String> = new_nodes.iter().map(|n| n.node_id.clone()).collect();
        ctx.store.insert_nodes(new_nodes.clone()).await?;
        let mut out = Fields::new()
            .with("node_ids", &ids)
            .with("total_count", ids.len());
        if !new_nodes.is_empty() {
            let job_id = start_collect(&ctx, &call, new_nodes).await?;
            out.insert("job_id", job_id);
            out.insert("job_action", "CollectNodes");
        }
        Ok(out)
    })
}

pub fn collect(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let ids = call.params.list("node_ids");
        check_node_ids("node_ids", &ids)?;
        let mut nodes = Vec::new();
        for id in &ids {
            let node = ctx.store.get_node(id).await?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "node {id} is not registered: check the id with DescribeNodes"
                ))
            })?;
            if !node.role.is_empty() {
                return Err(ApiError::new(
                    RetCode::WrongState,
                    format!("node {id} has role `{}`: only nodes without a role are collected (seed 002 §1.4); clear its role first", node.role),
                ));
            }
            nodes.push(node);
        }
        let job_id = start_collect(&ctx, &call, nodes).await?;
        Ok(Fields::new()
            .with("job_id", job_id)
            .with("job_action", "CollectNodes"))
    })
}

async fn start_collect(ctx: &Arc<Ctx>, call: &Call, nodes: Vec<Node>) -> Result<String, ApiError> {
    let ids = nodes.iter().map(|n| n.node_id.clone()).collect();
    let job = ctx
        .store
        .create_job(
            new_id(JOB_PREFIX),
            "CollectNodes",
            ids,
            &call.caller.user_id,
            &call.caller.request_id,
        )
        .await?;
    let (runner, job_id, request_id) = (
        ctx.clone(),
        job.job_id.clone(),
        call.caller.request_id.clone(),
    );
    crate::jobs::spawn(&ctx.tasks, ctx.store.clone(), job_id.clone(), async move {
        run_collect(runner, &job_id, nodes, &request_id).await
    });
    Ok(job.job_id)
}

/// What collecting one host gave.
type Collected = Result<(inventory::Outputs, Vec<String>, String), SshError>;

async fn run_collect(
    ctx: Arc<Ctx>,
    job_id: &str,
    nodes: Vec<Node>,
    request_id: &str,
) -> Result<(), StoreError> {
    let store = &ctx.store;
    let total = nodes.len();
    store
        .append_job_log(job_id, format!("step0: connecting to {total} node(s)"))
        .await?;
    let key = match ssh::load_or_create_key(&key_path(&ctx)) {
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
    let s = settings(&ctx);
    let gate = Arc::new(Semaphore::new(ctx.config().ssh.max_concurrent));
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
                ctx.store
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
                let user = ctx.config().ssh.user.clone();
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
                    ctx.config().messages.retention_days,
                );
                let text = message.user_message.clone();
                store.insert_message(message).await?;
                ctx.store
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

pub fn delete(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let unique = call.params.unique_list("node_ids");
        check_node_ids("node_ids", &unique)?;
        let deleted = ctx.store.delete_nodes(unique).await?;
        let n = deleted.len();
        Ok(Fields::new()
            .with("node_ids", deleted)
            .with("total_count", n))
    })
}

pub fn modify(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let id = p.str("node_id").unwrap_or_default().to_string();
        check_node_ids("node_id", std::slice::from_ref(&id))?;
        let disks = p.list("data_disks");
        let kind = p.str("type").map(str::to_string);
        if let Some(k) = &kind {
            if !DISK_TYPES.contains(&k.as_str()) {
                return Err(ApiError::field(
                    "type",
                    format!(
                        "`{k}` is not a disk type (allowed: {})",
                        DISK_TYPES.join(", ")
                    ),
                ));
            }
        }
        let status = p.int("status");
        if let Some(s) = status {
            if !(0..=1).contains(&s) {
                return Err(ApiError::field(
                    "status",
                    format!("{s} is not a disk status (0 = not a data disk, 1 = data disk)"),
                ));
            }
        }
        ctx.store
            .modify_node(&id, move |node| {
                let mut st = stored(node);
                for name in &disks {
                    let name = name.trim_start_matches("/dev/");
                    let Some(d) = st.inv.disks.iter_mut().find(|d| d.name == name) else {
                        let known: Vec<&str> = st.inv.disks.iter().map(|d| d.name.as_str()).collect();
                        return Err(StoreError::Invalid(format!(
                            "data_disks: node {} has no disk `{name}` (its disks: {})",
                            node.node_id,
                            if known.is_empty() { "none collected yet".to_string() } else { known.join(", ") }
                        )));
                    };
                    if d.is_os {
                        return Err(StoreError::Invalid(format!(
                            "data_disks: `{name}` holds the OS of node {}; it cannot be a data disk",
                            node.node_id
                        )));
                    }
                    if let Some(k) = &kind {
                        d.kind = k.clone();
                    }
                    if let Some(s) = status {
                        d.status = s;
                    }
                }
                node.inventory = serde_json::to_string(&st).unwrap_or_else(|_| "{}".into());
                Ok(())
            })
            .await?;
        Ok(Fields::new())
    })
}

pub fn ssh_key(ctx: Arc<Ctx>, _call: Call) -> HandlerFuture {
    Box::pin(async move {
        let path = key_path(&ctx);
        let key = tokio::task::spawn_blocking({
            let path = path.clone();
            move || ssh::load_or_create_key(&path)
        })
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            ApiError::new(
                RetCode::Internal,
                format!("{e}: fix the file or set ssh.key"),
            )
        })?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|_| ApiError::internal())?;
        Ok(Fields::new()
            .with("public_key", &public)
            .with("fingerprint", ssh::fingerprint(&public))
            .with("key_path", path.display().to_string())
            .with("user", ctx.config().ssh.user.clone()))
    })
}
