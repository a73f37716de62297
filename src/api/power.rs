//! Power actions: StartBMNodes, StopBMNodes, RestartBMNodes,
//! SetBMNodesBootDevice and RefreshBMNodesPowerState. Each checks its nodes,
//! starts a job and returns its id; the job runs the operation on every node
//! at once (within the power controller's budgets) and writes one log line
//! per node with its outcome. Also the power-sync poll of the daemon.

use super::bmnodes::check_node_ids;
use super::error::{ApiError, RetCode};
use super::{Call, Ctx, Fields, HandlerFuture};
use crate::ids::{new_id, now_secs, JOB_PREFIX};
use crate::ipmi::client::BmcError;
use crate::ipmi::commands::{BootDevice, BootSetting};
use crate::power::{PowerError, PowerOp, PowerOutcome};
use crate::store::{BmNode, BmNodeFilter, JobNode, JobStatus, PowerState};
use crate::usermsg::{self, Event, Subject};
use std::sync::Arc;
use tokio::task::JoinSet;

/// The ret_code, catalogue event and a fixed detail text for a failure.
pub fn classify(e: &PowerError) -> (RetCode, &'static Event, &'static str) {
    use crate::usermsg::*;
    match e {
        PowerError::Bmc(BmcError::Unreachable(_)) | PowerError::BackingOff(_) => {
            (RetCode::BmcUnreachable, &BMC_UNREACHABLE, "no answer")
        }
        PowerError::Bmc(BmcError::Auth(_)) => {
            (RetCode::BmcAuthFailed, &BMC_AUTH_FAILED, "login refused")
        }
        PowerError::Bmc(BmcError::Privilege)
        | PowerError::Bmc(BmcError::Completion { code: 0xD4, .. }) => (
            RetCode::BmcPrivilege,
            &BMC_PRIVILEGE,
            "insufficient privilege",
        ),
        PowerError::Bmc(BmcError::NoSession) | PowerError::Busy => {
            (RetCode::BmcNoSession, &BMC_NO_SESSION, "no free session")
        }
        PowerError::Bmc(BmcError::NoCipherSuite) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "no common cipher suite (17 or 3)",
        ),
        PowerError::Bmc(BmcError::Completion { code: 0xD5, .. }) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "not supported in the present state",
        ),
        PowerError::Bmc(BmcError::Completion { code: 0xC1, .. }) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "command not supported",
        ),
        PowerError::Bmc(BmcError::Completion { .. }) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "refused by the BMC",
        ),
        PowerError::Bmc(BmcError::Malformed(_)) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "malformed reply",
        ),
        PowerError::Bmc(BmcError::Io(_)) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "network error",
        ),
        PowerError::BadAddress(_) => (
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "bad BMC address",
        ),
    }
}

/// What an action does to each node, for logs and messages.
#[derive(Clone, Copy)]
struct Work {
    action: &'static str,
    op: PowerOp,
    /// "power on", "set boot device", … (goes into messages).
    operation: &'static str,
}

fn outcome_text(o: &PowerOutcome) -> String {
    match o {
        PowerOutcome::Power(true) => "power is on".into(),
        PowerOutcome::Power(false) => "power is off".into(),
        PowerOutcome::Boot(b) => format!(
            "boot device {} ({}, {})",
            b.device.as_str(),
            if b.persistent {
                "persistent"
            } else {
                "next boot only"
            },
            if b.efi { "UEFI" } else { "legacy BIOS" }
        ),
    }
}

/// Loads the nodes named by `node_ids` (all when empty and `all_if_empty`),
/// refusing unknown ids and nodes with work under way.
async fn load_nodes(ctx: &Ctx, node_ids: Vec<String>) -> Result<Vec<BmNode>, ApiError> {
    check_node_ids("node_ids", &node_ids)?;
    let filter = BmNodeFilter {
        node_ids,
        ..Default::default()
    };
    let (nodes, _) = ctx.store.describe_bm_nodes(filter).await?;
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

fn start_job(ctx: Arc<Ctx>, call: Call, work: Work, nodes: Vec<BmNode>) -> HandlerFuture {
    Box::pin(async move {
        if nodes.is_empty() {
            return Err(ApiError::missing("node_ids", " (no node is registered)"));
        }
        let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
        let job = ctx
            .store
            .create_job(
                new_id(JOB_PREFIX),
                work.action,
                ids,
                &call.caller.user_id,
                &call.caller.request_id,
            )
            .await?;
        let job_id = job.job_id.clone();
        let runner = ctx.clone();
        let request_id = call.caller.request_id.clone();
        crate::jobs::spawn(&ctx.tasks, ctx.store.clone(), job_id.clone(), async move {
            run_job(runner, &job_id, work, nodes, &request_id).await
        });
        Ok(Fields::new()
            .with("job_id", job.job_id)
            .with("job_action", work.action))
    })
}

async fn run_job(
    ctx: Arc<Ctx>,
    job_id: &str,
    work: Work,
    nodes: Vec<BmNode>,
    request_id: &str,
) -> Result<(), crate::store::StoreError> {
    let total = nodes.len();
    ctx.store
        .set_job_status(
            job_id,
            JobStatus::Step(1),
            Some(format!("{}: {total} node(s)", work.action)),
        )
        .await?;
    let mut set = JoinSet::new();
    for node in nodes {
        let ctx = ctx.clone();
        let job_id = job_id.to_string();
        let request_id = request_id.to_string();
        set.spawn(async move {
            run_node(&ctx, &job_id, work, &node, &request_id)
                .await
                .map(|ok| (ok, node.node_id))
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((true, _))) => {}
            Ok(Ok((false, id))) => failed.push(id),
            Ok(Err(e)) => return Err(e),
            Err(e) => tracing::error!(job_id, "node task panicked: {e}"),
        }
    }
    let (status, line) = if failed.is_empty() {
        (
            JobStatus::Successful,
            format!("{total} of {total} node(s) done"),
        )
    } else {
        failed.sort();
        (
            JobStatus::Failed,
            format!(
                "{} of {total} node(s) done; failed: {}",
                total - failed.len(),
                failed.join(", ")
            ),
        )
    };
    ctx.store.set_job_status(job_id, status, Some(line)).await
}

/// Runs `work` on one node and records the outcome; returns success.
async fn run_node(
    ctx: &Ctx,
    job_id: &str,
    work: Work,
    node: &BmNode,
    request_id: &str,
) -> Result<bool, crate::store::StoreError> {
    let result = match ctx.power.target(node) {
        Ok(target) => ctx.power.run(&target, work.op).await,
        Err(e) => Err(e),
    };
    let label = format!("{} ({})", node.node_id, node.hostname);
    match result {
        Ok(outcome) => {
            if let PowerOutcome::Power(on) = outcome {
                let state = if on { PowerState::On } else { PowerState::Off };
                ctx.store
                    .record_power_state(&node.node_id, state, now_secs())
                    .await?;
            }
            let node_share = JobNode {
                node_id: node.node_id.clone(),
                status: "successful".into(),
                progress: 100,
                ret_code: 0,
                message: String::new(),
            };
            let line = format!("{label}: {}", outcome_text(&outcome));
            ctx.store
                .set_job_node(job_id, node_share, Some(line))
                .await?;
            Ok(true)
        }
        Err(e) => {
            tracing::info!(job_id, node_id = %node.node_id, error = %e, "{} failed", work.operation);
            let (code, event, detail) = classify(&e);
            let text = record_failure(ctx, node, event, work.operation, detail, request_id).await?;
            let node_share = JobNode {
                node_id: node.node_id.clone(),
                status: "failed".into(),
                progress: 100,
                ret_code: code.code(),
                message: text.clone(),
            };
            ctx.store
                .set_job_node(job_id, node_share, Some(format!("{label}: failed: {text}")))
                .await?;
            Ok(false)
        }
    }
}

/// Records the user message of a failed operation; returns its text.
async fn record_failure(
    ctx: &Ctx,
    node: &BmNode,
    event: &Event,
    operation: &str,
    detail: &str,
    request_id: &str,
) -> Result<String, crate::store::StoreError> {
    let address = format!("{}:{}", node.ipmi_address, node.ipmi_port);
    let message = usermsg::message(
        event,
        &[
            ("node_id", &node.node_id),
            ("address", &address),
            ("user", &node.ipmi_username),
            ("operation", operation),
            ("detail", detail),
        ],
        Subject {
            resource_type: "BMNode",
            resource_id: &node.node_id,
            request_id,
        },
        now_secs(),
        ctx.config().messages.retention_days,
    );
    let text = message.user_message.clone();
    ctx.store.insert_message(message).await?;
    Ok(text)
}

fn power_action(ctx: Arc<Ctx>, call: Call, work: Work) -> HandlerFuture {
    Box::pin(async move {
        let nodes = load_nodes(&ctx, call.params.list("node_ids")).await?;
        start_job(ctx, call, work, nodes).await
    })
}

pub fn start(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    power_action(
        ctx,
        call,
        Work {
            action: "StartBMNodes",
            op: PowerOp::On,
            operation: "power on",
        },
    )
}

pub fn stop(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    let hard = call.params.int("force").unwrap_or(1) == 1;
    let operation = if hard { "power off" } else { "soft power off" };
    power_action(
        ctx,
        call,
        Work {
            action: "StopBMNodes",
            op: PowerOp::Off { hard },
            operation,
        },
    )
}

pub fn restart(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    let hard = call.params.int("force").unwrap_or(1) == 1;
    let (op, operation) = if hard {
        (PowerOp::Reset, "hard reset")
    } else {
        (PowerOp::Cycle, "power cycle")
    };
    power_action(
        ctx,
        call,
        Work {
            action: "RestartBMNodes",
            op,
            operation,
        },
    )
}

pub fn set_boot_device(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    let p = &call.params;
    let name = p.str("boot_device").unwrap_or_default().to_string();
    let Some(device) = BootDevice::parse(&name) else {
        return Box::pin(async move {
            Err(ApiError::field(
                "boot_device",
                format!("`{name}` is not a boot device (allowed: pxe, disk, bios)"),
            ))
        });
    };
    let setting = BootSetting {
        device,
        persistent: p.int("persistent") == Some(1),
        efi: p.int("efi") == Some(1),
    };
    power_action(
        ctx,
        call,
        Work {
            action: "SetBMNodesBootDevice",
            op: PowerOp::SetBoot(setting),
            operation: "set boot device",
        },
    )
}

pub fn refresh(ctx: Arc<Ctx>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let ids = call.params.list("node_ids");
        check_node_ids("node_ids", &ids)?;
        let (nodes, _) = ctx
            .store
            .describe_bm_nodes(BmNodeFilter {
                node_ids: ids,
                ..Default::default()
            })
            .await?;
        start_job(
            ctx,
            call,
            Work {
                action: "RefreshBMNodesPowerState",
                op: PowerOp::Status,
                operation: "power status",
            },
            nodes,
        )
        .await
    })
}

/// One power-sync round: reads every node's power state (within the
/// controller's budgets), records it, marks nodes whose BMC failed
/// `ipmi.power_sync_failures` polls in a row unreachable (one message), and
/// clears the mark when they answer (one message). Returns (ok, failed).
pub async fn sync_power(ctx: Arc<Ctx>) -> (usize, usize) {
    let nodes = match ctx.store.describe_bm_nodes(BmNodeFilter::default()).await {
        Ok((nodes, _)) => nodes,
        Err(e) => {
            tracing::warn!("power sync cannot list nodes: {e}");
            return (0, 0);
        }
    };
    let mut set = JoinSet::new();
    for node in nodes.into_iter().filter(|n| !n.ipmi_address.is_empty()) {
        let ctx = ctx.clone();
        set.spawn(async move {
            let result = match ctx.power.target(&node) {
                Ok(t) => ctx.power.run(&t, PowerOp::Status).await,
                Err(e) => Err(e),
            };
            let now = now_secs();
            match result {
                Ok(PowerOutcome::Power(on)) => {
                    let state = if on { PowerState::On } else { PowerState::Off };
                    if let Ok(true) = ctx.store.record_power_state(&node.node_id, state, now).await {
                        note(&ctx, &node, &usermsg::BMC_BACK, state.as_str()).await;
                    }
                    true
                }
                Ok(PowerOutcome::Boot(_)) => true,
                Err(e) => {
                    tracing::debug!(node_id = %node.node_id, error = %e, "power sync poll failed");
                    let threshold = ctx.config().ipmi.power_sync_failures;
                    if let Ok(true) = ctx.store.record_bmc_failure(&node.node_id, threshold, now).await {
                        tracing::warn!(node_id = %node.node_id, "BMC marked unreachable after {threshold} failed polls");
                        note(&ctx, &node, &usermsg::BMC_LOST, "").await;
                    }
                    false
                }
            }
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r {
            Ok(true) => ok += 1,
            _ => failed += 1,
        }
    }
    (ok, failed)
}

async fn note(ctx: &Ctx, node: &BmNode, event: &Event, power_state: &str) {
    let address = format!("{}:{}", node.ipmi_address, node.ipmi_port);
    let count = ctx.config().ipmi.power_sync_failures.to_string();
    let message = usermsg::message(
        event,
        &[
            ("node_id", &node.node_id),
            ("address", &address),
            ("count", &count),
            ("power_state", power_state),
        ],
        Subject {
            resource_type: "BMNode",
            resource_id: &node.node_id,
            request_id: "",
        },
        now_secs(),
        ctx.config().messages.retention_days,
    );
    if let Err(e) = ctx.store.insert_message(message).await {
        tracing::warn!("cannot record a user message: {e}");
    }
}
