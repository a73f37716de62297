//! The power service: every BMC operation of the daemon goes through it.
//! [`controller::PowerController`] reaches BMCs within their budgets
//! (sessions, queue, backoff); [`Power`] runs operations on BMNodes and
//! records what it learns (power state, unreachable BMCs), runs the power
//! actions' jobs (StartBMNodes, StopBMNodes, RestartBMNodes,
//! SetBMNodesBootDevice, RefreshBMNodesPowerState: one log line per node)
//! and the daemon's power-sync rounds, and classifies BMC failures into
//! ret codes and user messages ([`classify`]). The driver (IPMI or
//! Redfish, from the node's BMC address) is the controller's choice; the
//! Redfish-only work — out-of-band inventory, virtual media — is here too
//! ([`Power::refresh_inventory`], [`Power::insert_media`],
//! [`Power::eject_media`]), under the same budgets.

pub mod controller;
pub mod ops;
pub mod redfish;

pub use controller::{BmcTarget, PowerController, PowerError};
pub use ops::{PowerOp, PowerOutcome};

use crate::foundation::errors::RetCode;
use crate::foundation::ids::{new_id, now_secs, JOB_PREFIX};
use crate::foundation::ipmi::client::BmcError;
use crate::foundation::redfish::client::RedfishError;
use crate::foundation::redfish::wire::Inventory;
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
    /// Also read Redfish nodes' out-of-band inventory (RefreshBMNodesPowerState).
    pub inventory: bool,
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
        let cfg = shared.config();
        let controller = PowerController::new(cfg.ipmi.clone(), &cfg.redfish);
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

    /// The Redfish target of `node`, or a `NotSupported` error naming what
    /// only Redfish BMCs do.
    fn redfish_target(
        &self,
        node: &BmNode,
        what: &str,
    ) -> Result<crate::foundation::redfish::client::Target, PowerError> {
        match self.controller.target(node)? {
            BmcTarget::Redfish(t) => Ok(t),
            BmcTarget::Ipmi(_) => Err(PowerError::Redfish(RedfishError::NotSupported(format!(
                "{what} needs a Redfish BMC (bmc_address redfish://…)"
            )))),
        }
    }

    /// Reads `node`'s out-of-band inventory (and power state) in one
    /// Redfish session and records it: the inventory as `bmc_inventory`,
    /// the serial number and brand when the node has none, and the PXE MAC
    /// when the node has none and the system has exactly one NIC.
    pub async fn refresh_inventory(
        &self,
        node: &BmNode,
    ) -> Result<(Inventory, Option<bool>), PowerError> {
        let target = self.redfish_target(node, "an out-of-band inventory")?;
        let (inv, power) = self
            .controller
            .with_redfish(&target, async |s| redfish::inventory(s).await)
            .await?;
        let now = now_secs();
        if let Some(on) = power {
            let state = if on { PowerState::On } else { PowerState::Off };
            let _ = self
                .shared
                .store
                .record_power_state(&node.node_id, state, now)
                .await;
        }
        let json = serde_json::to_string(&inv).unwrap_or_default();
        let (serial, brand) = (inv.serial_number.clone(), inv.manufacturer.clone());
        let only_mac = match inv.nics.as_slice() {
            [one] => Some(one.mac.clone()),
            _ => None,
        };
        let id = node.node_id.clone();
        let result = self
            .shared
            .store
            .modify_bm_node(&node.node_id, move |n| {
                n.bmc_inventory = json;
                n.bmc_inventory_time = Some(now);
                if n.serial_number.is_empty() {
                    n.serial_number = serial;
                }
                if n.brand.is_empty() {
                    n.brand = brand;
                }
                if n.pxe_mac.is_empty() {
                    if let Some(mac) = only_mac {
                        tracing::info!(node_id = %id, %mac, "PXE MAC taken from the BMC's only NIC");
                        n.pxe_mac = mac;
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            // Another node holds that MAC (a conflict): keep the inventory.
            tracing::warn!(node_id = %node.node_id, "cannot record the BMC inventory fully: {e}");
            let json = serde_json::to_string(&inv).unwrap_or_default();
            let _ = self
                .shared
                .store
                .modify_bm_node(&node.node_id, move |n| {
                    n.bmc_inventory = json;
                    n.bmc_inventory_time = Some(now);
                    Ok(())
                })
                .await;
        }
        Ok((inv, power))
    }

    /// Reads the inventory of each Redfish node of `nodes` in the
    /// background (after registration), within the budgets.
    pub fn inventory_in_background(self: &Arc<Self>, nodes: Vec<BmNode>) {
        for node in nodes
            .into_iter()
            .filter(|n| n.driver().is_some_and(|d| d.is_redfish()))
        {
            let power = self.clone();
            self.shared.tasks.spawn(async move {
                match power.refresh_inventory(&node).await {
                    Ok((inv, _)) => tracing::info!(node_id = %node.node_id, nics = inv.nics.len(), drives = inv.drives.len(), "read the BMC's inventory"),
                    Err(e) => tracing::info!(node_id = %node.node_id, error = %e, "cannot read the BMC's inventory"),
                }
            });
        }
    }

    /// Inserts the ISO at `url` into `node`'s virtual CD (Redfish).
    pub async fn insert_media(&self, node: &BmNode, url: &str) -> Result<(), PowerError> {
        let target = self.redfish_target(node, "virtual media")?;
        self.controller
            .with_redfish(&target, async |s| redfish::insert_media(s, url).await)
            .await
    }

    /// Ejects `node`'s virtual CD (Redfish).
    pub async fn eject_media(&self, node: &BmNode) -> Result<(), PowerError> {
        let target = self.redfish_target(node, "virtual media")?;
        self.controller
            .with_redfish(&target, async |s| redfish::eject_media(s).await)
            .await
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
        let redfish = node.driver().is_some_and(|d| d.is_redfish());
        let result = if work.inventory && redfish {
            // One session: the inventory and the power state with it.
            match self.refresh_inventory(node).await {
                Ok((_, Some(on))) => Ok(PowerOutcome::Power(on)),
                Ok((_, None)) => Err(PowerError::Redfish(RedfishError::Malformed(
                    "the system shows no PowerState".into(),
                ))),
                Err(e) => Err(e),
            }
        } else {
            self.run_on(node, work.op_for(node)).await
        };
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
                tracing::warn!(job_id, node_id = %node.node_id, error = %e, "{} failed", work.operation);
                let (code, event, detail) = classify(&e);
                let text = self
                    .record_failure(node, event, work.operation, &detail, request_id)
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
        let address = node.bmc_label();
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

    /// One power-sync round: reads every node's power state but those in
    /// maintenance (within the
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
        // A node in maintenance is left alone (its BMC may be down for
        // service, or someone is working on it).
        for node in nodes.into_iter().filter(|n| n.has_bmc() && !n.maintenance) {
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
        let address = node.bmc_label();
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

/// The ret_code, catalogue event and detail text for a failure. IPMI
/// details are fixed texts; a Redfish BMC's refusal carries its own message
/// (the user message cuts it and strips control characters).
pub fn classify(e: &PowerError) -> (RetCode, &'static Event, String) {
    use usermsg::*;
    let fixed = |code, event, detail: &str| (code, event, detail.to_string());
    match e {
        PowerError::Bmc(BmcError::Unreachable(_)) | PowerError::BackingOff(_) => {
            fixed(RetCode::BmcUnreachable, &BMC_UNREACHABLE, "no answer")
        }
        PowerError::Bmc(BmcError::Auth(_)) => {
            fixed(RetCode::BmcAuthFailed, &BMC_AUTH_FAILED, "login refused")
        }
        PowerError::Bmc(BmcError::Privilege)
        | PowerError::Bmc(BmcError::Completion { code: 0xD4, .. }) => fixed(
            RetCode::BmcPrivilege,
            &BMC_PRIVILEGE,
            "insufficient privilege",
        ),
        PowerError::Bmc(BmcError::NoSession) | PowerError::Busy => {
            fixed(RetCode::BmcNoSession, &BMC_NO_SESSION, "no free session")
        }
        PowerError::Bmc(BmcError::NoCipherSuite) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "no common cipher suite (17 or 3)",
        ),
        PowerError::Bmc(BmcError::Completion { code: 0xD5, .. }) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "not supported in the present state",
        ),
        PowerError::Bmc(BmcError::Completion { code: 0xC1, .. }) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "command not supported",
        ),
        PowerError::Bmc(BmcError::Completion { .. }) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "refused by the BMC",
        ),
        PowerError::Bmc(BmcError::Malformed(_)) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "malformed reply",
        ),
        PowerError::Bmc(BmcError::Io(_)) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "network error",
        ),
        PowerError::BadAddress(_) => fixed(
            RetCode::BmcCommandFailed,
            &BMC_COMMAND_FAILED,
            "bad BMC address",
        ),
        PowerError::Redfish(r) => match r {
            RedfishError::Unreachable(_) => fixed(
                RetCode::BmcUnreachable,
                &REDFISH_UNREACHABLE,
                "no answer over HTTP(S)",
            ),
            RedfishError::Tls { problem, .. } => {
                (RetCode::BmcTlsFailed, &REDFISH_TLS_FAILED, problem.clone())
            }
            RedfishError::Auth(m) => (RetCode::BmcAuthFailed, &REDFISH_AUTH_FAILED, m.clone()),
            RedfishError::Refused {
                status: 403,
                message,
                ..
            } => (RetCode::BmcPrivilege, &BMC_PRIVILEGE, message.clone()),
            // The login was refused for want of a free session.
            RedfishError::Refused {
                what,
                status: 503,
                message,
            } if what == "login" => (RetCode::BmcNoSession, &BMC_NO_SESSION, message.clone()),
            RedfishError::Refused {
                what,
                status,
                message,
            } => (
                RetCode::BmcCommandFailed,
                &BMC_COMMAND_FAILED,
                format!("{what}: HTTP {status}: {message}"),
            ),
            RedfishError::NotSupported(m) => {
                (RetCode::BmcCommandFailed, &BMC_COMMAND_FAILED, m.clone())
            }
            RedfishError::Malformed(m) => (
                RetCode::BmcCommandFailed,
                &BMC_COMMAND_FAILED,
                format!("malformed reply: {m}"),
            ),
        },
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
