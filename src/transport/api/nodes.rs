//! Node actions (seed 002 §1) for hosts that already run an OS: AddNodes,
//! CollectNodes (a job: step0 connect, step1 collect, step2 store),
//! DescribeNodes, DeleteNodes, ModifyNodeAttributes, and DescribeSSHKey
//! (the daemon's public key, created on first use).

use super::bmnodes::check_node_ids;
use super::{Call, Fields, HandlerFuture};
use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::ids::{format_time, new_id, now_secs, NODE_PREFIX};
use crate::foundation::inventory::{self, Net};
use crate::foundation::ssh::{self};
use crate::foundation::store::{Node, NodeStatus, StoreError};
use crate::service::app::App;
use crate::service::collect::{key_path, settings, stored, Stored};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Most addresses one AddNodes may cover.
pub const MAX_ADD: u32 = 1024;
const DISK_TYPES: &[&str] = &["ssd", "sata", "hdd", "nvme"];

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

pub fn describe(app: Arc<App>, call: Call) -> HandlerFuture {
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
        let all = app.store.list_nodes().await?;
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

pub fn add(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let addrs = p.ipv4_range(MAX_ADD, "AddNodes")?;
        let s = settings(&app.shared);
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
        let known = app.store.list_nodes().await?;
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
        app.store.insert_nodes(new_nodes.clone()).await?;
        let mut out = Fields::new()
            .with("node_ids", &ids)
            .with("total_count", ids.len());
        if !new_nodes.is_empty() {
            let job_id = app
                .collect
                .start(new_nodes, &call.caller.user_id, &call.caller.request_id)
                .await?
                .job_id;
            out.insert("job_id", job_id);
            out.insert("job_action", "CollectNodes");
        }
        Ok(out)
    })
}

pub fn collect(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let ids = call.params.list("node_ids");
        check_node_ids("node_ids", &ids)?;
        let mut nodes = Vec::new();
        for id in &ids {
            let node = app.store.get_node(id).await?.ok_or_else(|| {
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
        let job_id = app
            .collect
            .start(nodes, &call.caller.user_id, &call.caller.request_id)
            .await?
            .job_id;
        Ok(Fields::new()
            .with("job_id", job_id)
            .with("job_action", "CollectNodes"))
    })
}

pub fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let unique = call.params.unique_list("node_ids");
        check_node_ids("node_ids", &unique)?;
        let deleted = app.store.delete_nodes(unique).await?;
        let n = deleted.len();
        Ok(Fields::new()
            .with("node_ids", deleted)
            .with("total_count", n))
    })
}

pub fn modify(app: Arc<App>, call: Call) -> HandlerFuture {
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
        app.store
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

pub fn ssh_key(app: Arc<App>, _call: Call) -> HandlerFuture {
    Box::pin(async move {
        let path = key_path(&app.shared);
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
            .with("user", app.config().ssh.user.clone()))
    })
}
