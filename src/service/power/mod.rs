//! The power service: every BMC operation of the daemon goes through it.
//! [`controller::PowerController`] reaches BMCs within their budgets
//! (sessions, queue, backoff); [`Power`] runs operations on BMNodes and
//! records what it learns (power state, unreachable BMCs), runs the power
//! actions' jobs (StartBMNodes, StopBMNodes, RestartBMNodes,
//! SetBMNodesBootDevice, RefreshBMNodesPowerState: one log line per node)
//! and the daemon's power-sync rounds, and classifies BMC failures into
//! ret codes and user messages ([`classify`]).

pub mod controller;

pub use controller::{PowerController, PowerError, PowerOp, PowerOutcome};

use crate::foundation::errors::RetCode;
use crate::foundation::ids::{new_id, now_secs, JOB_PREFIX};
use crate::foundation::ipmi::client::BmcError;
use crate::foundation::shared::Shared;
use crate::foundation::store::{
    BmNode, BmNodeFilter, BootMode, Job, JobNode, JobStatus, PowerState, StoreError,
};
use crate::foundation::usermsg::{self, Event, Subject};
use std::sync::Arc;
use tokio::task::JoinSet;

/// The power service (see the module doc).
pub struct Power {
    shared: Arc<Shared>,
    pub controller: PowerController,
}

/// What a power action does to each node, for logs and messages.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    /// The action that started the job (its `job_action`).
    pub action: &'static str,
    pub op: PowerOp,
    /// "power on", "set boot device", … (goes into messages).
    pub operation: &'static str,
    /// For a boot device: the EFI bit comes from each node's `boot_mode`
    /// (the request did not choose).
    pub efi_from_boot_mode: bool,
}

impl Work {
    /// The operation for `node`.
    pub fn op_for(&self, node: &BmNode) -> PowerOp {
        match self.op {
            PowerOp::SetBoot(mut b) if self.efi_from_boot_mode => {
                b.efi = node.boot_mode == BootMode::Uefi;
                PowerOp::SetBoot(b)
            }
            op => op,
        }
    }
}

impl Power {
    pub fn new(shared: Arc<Shared>) -> Power {
        let controller = PowerController::new(shared.config().ipmi.clone());
        Power { shared, controller }
    }

    /// Runs `op` on `node`'s BMC, recording the power state it learns.
    pub async fn run_on(&self, node: &BmNode, op: PowerOp) -> Result<PowerOutcome, PowerError> {
        let target = self.controller.target(node)?;
        let outcome = self.controller.run(&target, op).await?;
        if let PowerOutcome::Power(on) = outcome {
            let state = if on { PowerState::On } else { PowerState::Off };
            let _ = self
                .shared
                .store
                .record_power_state(&node.node_id, state, now_secs())
                .await;
        }
        Ok(outcome)
    }

    /// Starts a job doing `work` on every one of `nodes` at once (within
    /// the controller's budgets); returns the job.
    pub async fn start_job(
        self: &Arc<Self>,
        work: Work,
        nodes: Vec<BmNode>,
        user_id: &str,
        request_id: &str,
    ) -> Result<Job, StoreError> {
        let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
        let job = self
            .shared
            .store
            .create_job(new_id(JOB_PREFIX), work.action, ids, user_id, request_id)
            .await?;
        let job_id = job.job_id.clone();
        let runner = self.clone();
        let request_id = request_id.to_string();
        crate::service::jobs::spawn(
            &self.shared.tasks,
            self.shared.store.clone(),
            job_id.clone(),
            async move { runner.run_job(&job_id, work, nodes, &request_id).await },
        );
        Ok(job)
    }

    async fn run_job(
        self: &Arc<Self>,
        job_id: &str,
        work: Work,
        nodes: Vec<BmNode>,
        request_id: &str,
    ) -> Result<(), StoreError> {
        let total = nodes.len();
        self.shared
            .store
            .set_job_status(
                job_id,
                JobStatus::Step(1),
                Some(format!("{}: {total} node(s)", work.action)),
            )
            .await?;
        let mut set = JoinSet::new();
        for node in nodes {
            let power = self.clone();
            let job_id = job_id.to_string();
            let request_id = request_id.to_string();
            set.spawn(async move {
                power
                    .run_node(&job_id, work, &node, &request_id)
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
        self.shared
            .store
            .set_job_status(job_id, status, Some(line))
            .await
    }

    /// Runs `work` on one node and records the outcome; returns success.
    async fn run_node(
        &self,
        job_id: &str,
        work: Work,
        node: &BmNode,
        request_id: &str,
    ) -> Result<bool, StoreError> {
        let result = self.run_on(node, work.op_for(node)).await;
        let label = format!("{} ({})", node.node_id, node.hostname);
        match result {
            Ok(outcome) => {
                let node_share = JobNode {
                    node_id: node.node_id.clone(),
                    status: "successful".into(),
                    progress: 100,
                    ret_code: 0,
                    message: String::new(),
                };
                let line = format!("{label}: {}", outcome_text(&outcome));
                self.shared
                    .store
                    .set_job_node(job_id, node_share, Some(line))
                    .await?;
                Ok(true)
            }
            Err(e) => {
                tracing::info!(job_id, node_id = %node.node_id, error = %e, "{} failed", work.operation);
                let (code, event, detail) = classify(&e);
                let text = self
                    .record_failure(node, event, work.operation, detail, request_id)
                    .await?;
                let node_share = JobNode {
                    node_id: node.node_id.clone(),
                    status: "failed".into(),
                    progress: 100,
                    ret_code: code.code(),
                    message: text.clone(),
                };
                self.shared
                    .store
                    .set_job_node(job_id, node_share, Some(format!("{label}: failed: {text}")))
                    .await?;
                Ok(false)
            }
        }
    }

    /// Records the user message of a failed operation; returns its text.
    async fn record_failure(
        &self,
        node: &BmNode,
        event: &Event,
        operation: &str,
        detail: &str,
        request_id: &str,
    ) -> Result<String, StoreError> {
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
            self.shared.config().messages.retention_days,
        );
        let text = message.user_message.clone();
        self.shared.store.insert_message(message).await?;
        Ok(text)
    }

    /// One power-sync round: reads every node's power state (within the
    /// controller's budgets), records it, marks nodes whose BMC failed
    /// `ipmi.power_sync_failures` polls in a row unreachable (one message), and
    /// clears the mark when they answer (one message). Returns (ok, failed).
    pub async fn sync_round(self: &Arc<Self>) -> (usize, usize) {
        let nodes = match self
            .shared
            .store
            .describe_bm_nodes(BmNodeFilter::default())
            .await
        {
            Ok((nodes, _)) => nodes,
            Err(e) => {
                tracing::warn!("power sync cannot list nodes: {e}");
                return (0, 0);
            }
        };
        let mut set = JoinSet::new();
        for node in nodes.into_iter().filter(|n| !n.ipmi_address.is_empty()) {
            let power = self.clone();
            set.spawn(async move {
                let result = match power.controller.target(&node) {
                    Ok(t) => power.controller.run(&t, PowerOp::Status).await,
                    Err(e) => Err(e),
                };
                let now = now_secs();
                match result {
                    Ok(PowerOutcome::Power(on)) => {
                        let state = if on { PowerState::On } else { PowerState::Off };
                        if let Ok(true) = power.shared.store.record_power_state(&node.node_id, state, now).await {
                            power.note(&node, &usermsg::BMC_BACK, state.as_str()).await;
                        }
                        true
                    }
                    Ok(PowerOutcome::Boot(_)) => true,
                    Err(e) => {
                        tracing::debug!(node_id = %node.node_id, error = %e, "power sync poll failed");
                        let threshold = power.shared.config().ipmi.power_sync_failures;
                        if let Ok(true) = power.shared.store.record_bmc_failure(&node.node_id, threshold, now).await {
                            tracing::warn!(node_id = %node.node_id, "BMC marked unreachable after {threshold} failed polls");
                            power.note(&node, &usermsg::BMC_LOST, "").await;
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

    async fn note(&self, node: &BmNode, event: &Event, power_state: &str) {
        let address = format!("{}:{}", node.ipmi_address, node.ipmi_port);
        let count = self.shared.config().ipmi.power_sync_failures.to_string();
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
            self.shared.config().messages.retention_days,
        );
        if let Err(e) = self.shared.store.insert_message(message).await {
            tracing::warn!("cannot record a user message: {e}");
        }
    }
}

/// The ret_code, catalogue event and a fixed detail text for a failure.
pub fn classify(e: &PowerError) -> (RetCode, &'static Event, &'static str) {
    use usermsg::*;
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
