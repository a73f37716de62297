//! Power actions: StartBMNodes, StopBMNodes, RestartBMNodes,
//! SetBMNodesBootDevice and RefreshBMNodesPowerState. Each checks its
//! parameters and nodes and starts a job of the power service
//! ([`crate::service::power::Power::start_job`]), answering its id.

use super::bmnodes::check_node_ids;
use super::{Call, Fields, HandlerFuture};
use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::ipmi::commands::{BootDevice, BootSetting};
use crate::foundation::store::{BmNode, BmNodeFilter};
use crate::service::app::App;
use crate::service::power::{PowerOp, Work};
use std::sync::Arc;

/// Loads the nodes named by `node_ids` (all when empty and `all_if_empty`),
/// refusing unknown ids and nodes with work under way.
async fn load_nodes(app: &App, node_ids: Vec<String>) -> Result<Vec<BmNode>, ApiError> {
    check_node_ids("node_ids", &node_ids)?;
    let filter = BmNodeFilter {
        node_ids,
        ..Default::default()
    };
    let (nodes, _) = app.store.describe_bm_nodes(filter).await?;
    if let Some(busy) = nodes.iter().find(|n| n.status.is_busy()) {
        return Err(ApiError::new(
            RetCode::WrongState,
            format!(
                "node {} is {}: power operations wait until its work ends (or abort it); no job was started",
                busy.node_id,
                busy.status.as_str()
            ),
        ));
    }
    Ok(nodes)
}

fn start_job(app: Arc<App>, call: Call, work: Work, nodes: Vec<BmNode>) -> HandlerFuture {
    Box::pin(async move {
        if nodes.is_empty() {
            return Err(ApiError::missing("node_ids", " (no node is registered)"));
        }
        let job = app
            .power
            .start_job(work, nodes, &call.caller.user_id, &call.caller.request_id)
            .await?;
        Ok(Fields::new()
            .with("job_id", job.job_id)
            .with("job_action", work.action))
    })
}

fn power_action(app: Arc<App>, call: Call, work: Work) -> HandlerFuture {
    Box::pin(async move {
        let nodes = load_nodes(&app, call.params.list("node_ids")).await?;
        start_job(app, call, work, nodes).await
    })
}

pub fn start(app: Arc<App>, call: Call) -> HandlerFuture {
    power_action(
        app,
        call,
        Work {
            action: "StartBMNodes",
            op: PowerOp::On,
            operation: "power on",
            efi_from_boot_mode: false,
            inventory: false,
        },
    )
}

pub fn stop(app: Arc<App>, call: Call) -> HandlerFuture {
    let hard = call.params.int("force").unwrap_or(1) == 1;
    let operation = if hard { "power off" } else { "soft power off" };
    power_action(
        app,
        call,
        Work {
            action: "StopBMNodes",
            op: PowerOp::Off { hard },
            operation,
            efi_from_boot_mode: false,
            inventory: false,
        },
    )
}

pub fn restart(app: Arc<App>, call: Call) -> HandlerFuture {
    let hard = call.params.int("force").unwrap_or(1) == 1;
    let (op, operation) = if hard {
        (PowerOp::Reset, "hard reset")
    } else {
        (PowerOp::Cycle, "power cycle")
    };
    power_action(
        app,
        call,
        Work {
            action: "RestartBMNodes",
            op,
            operation,
            efi_from_boot_mode: false,
            inventory: false,
        },
    )
}

pub fn set_boot_device(app: Arc<App>, call: Call) -> HandlerFuture {
    let p = &call.params;
    let name = p.str("boot_device").unwrap_or_default().to_string();
    let Some(device) = BootDevice::parse(&name) else {
        return Box::pin(async move {
            Err(ApiError::field(
                "boot_device",
                format!("`{name}` is not a boot device (allowed: pxe, disk, cd, bios)"),
            ))
        });
    };
    let setting = BootSetting {
        device,
        persistent: p.int("persistent") == Some(1),
        efi: p.int("efi") == Some(1),
    };
    let efi_from_boot_mode = !p.has("efi");
    power_action(
        app,
        call,
        Work {
            action: "SetBMNodesBootDevice",
            op: PowerOp::SetBoot(setting),
            operation: "set boot device",
            efi_from_boot_mode,
            inventory: false,
        },
    )
}

pub fn refresh(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let ids = call.params.list("node_ids");
        let inventory = call.params.int("inventory") == Some(1);
        check_node_ids("node_ids", &ids)?;
        let (nodes, _) = app
            .store
            .describe_bm_nodes(BmNodeFilter {
                node_ids: ids,
                ..Default::default()
            })
            .await?;
        start_job(
            app,
            call,
            Work {
                action: "RefreshBMNodesPowerState",
                op: PowerOp::Status,
                operation: "power status",
                efi_from_boot_mode: false,
                inventory,
            },
            nodes,
        )
        .await
    })
}
