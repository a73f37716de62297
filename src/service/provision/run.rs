//! The job and per-node tasks of provisioning and inspection (see
//! [`super`]): steps, waits on the node's deploy events, failures with their
//! user messages, and the start-up recovery of nodes left mid-work.

use super::{DeployEvent, DeploySettings, Provisioner, Watch};
use crate::foundation::callbacks::Callback;
use crate::foundation::config::{Config, ImageConfig, ImageMethod};
use crate::foundation::errors::RetCode;
use crate::foundation::ids::now_secs;
use crate::foundation::ipmi::commands::{BootDevice, BootSetting};
use crate::foundation::redfish::Driver;
use crate::foundation::shared::Shared;
use crate::foundation::states::Trigger;
use crate::foundation::store::{
    BmNode, BmNodeStatus, BootMode, Job, JobNode, JobStatus, StoreError,
};
use crate::foundation::templates;
use crate::foundation::usermsg::{self, Event, Subject};
use crate::service::power::{PowerOp, PowerOutcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// What a job does to its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Provision,
    Inspect,
    /// UnprovisionBMNodes: wipe the disks, power off, `ready`.
    Clean,
}

impl Kind {
    /// The action that starts such a job (its `job_action`).
    pub fn action(self) -> &'static str {
        match self {
            Kind::Provision => "ProvisionBMNodes",
            Kind::Inspect => "IntrospectBMNodes",
            Kind::Clean => "UnprovisionBMNodes",
        }
    }

    /// The trigger that ends such work in failure.
    fn failed(self) -> Trigger {
        match self {
            Kind::Provision => Trigger::ProvisionFailed,
            Kind::Inspect => Trigger::InspectFailed,
            Kind::Clean => Trigger::CleanFailed,
        }
    }
}

/// Why a node's task stopped short.
enum Stop {
    Failed(Failure),
    Aborted,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

struct Failure {
    code: RetCode,
    event: &'static Event,
    args: Vec<(&'static str, String)>,
}

fn failure(code: RetCode, event: &'static Event, args: &[(&'static str, &str)]) -> Stop {
    Stop::Failed(Failure {
        code,
        event,
        args: args.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    })
}

/// A job's view of its nodes: the step each running node is at (the job's
/// status is the lowest), and what each node's task last reported.
struct Tracker {
    job_id: String,
    request_id: String,
    kind: Kind,
    /// Per running node: its step and when it began (the step durations
    /// of the metrics).
    steps: Mutex<HashMap<String, (u32, std::time::Instant)>>,
    job_step: tokio::sync::Mutex<u32>,
}

impl Tracker {
    /// Moves `node` to `step` at `progress` %, with a log line.
    async fn step(
        &self,
        pv: &Provisioner,
        node: &BmNode,
        step: u32,
        progress: u8,
        what: &str,
    ) -> Result<(), StoreError> {
        let previous = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.node_id.clone(), (step, std::time::Instant::now()));
        if let Some((was, since)) = previous.filter(|(was, _)| *was != step) {
            self.observe_step(was, since, "ok");
        }
        pv.shared
            .store
            .set_job_node(
                &self.job_id,
                share(node, &format!("step{step}"), progress, 0, String::new()),
                Some(format!("{}: step{step}: {what}", label(node))),
            )
            .await?;
        self.sync_job_status(pv).await
    }

    /// Sets `node`'s progress within its step.
    async fn progress(
        &self,
        pv: &Provisioner,
        node: &BmNode,
        step: u32,
        progress: u8,
    ) -> Result<(), StoreError> {
        pv.shared
            .store
            .set_job_node(
                &self.job_id,
                share(node, &format!("step{step}"), progress, 0, String::new()),
                None,
            )
            .await
    }

    /// Step3's share of a ramdisk's `percent` (10–90 %), shown when it
    /// moved past `shown`.
    async fn step3_progress(
        &self,
        pv: &Provisioner,
        node: &BmNode,
        shown: &mut u8,
        percent: u8,
    ) -> Result<(), StoreError> {
        let p = 10 + (u32::from(percent.min(100)) * 80 / 100) as u8;
        if p > *shown {
            *shown = p;
            self.progress(pv, node, 3, p).await?;
        }
        Ok(())
    }

    /// A step3 line in the job's log about `node`.
    async fn step3_log(
        &self,
        pv: &Provisioner,
        node: &BmNode,
        text: &str,
    ) -> Result<(), StoreError> {
        pv.shared
            .store
            .append_job_log(&self.job_id, format!("{}: step3: {text}", label(node)))
            .await?;
        Ok(())
    }

    /// The step `node_id` last reached (0 before it started).
    fn step_of(&self, node_id: &str) -> u32 {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node_id)
            .map_or(0, |(step, _)| *step)
    }

    fn observe_step(&self, step: u32, since: std::time::Instant, result: &str) {
        crate::foundation::metrics::metrics()
            .provision_steps
            .with_label_values(&[self.kind.action(), &format!("step{step}"), result])
            .observe(since.elapsed().as_secs_f64());
    }

    /// `node` is done (`result`: ok, failed): it no longer holds the job's
    /// status back.
    async fn finish(
        &self,
        pv: &Provisioner,
        node: &BmNode,
        result: &str,
    ) -> Result<(), StoreError> {
        let last = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&node.node_id);
        if let Some((step, since)) = last {
            self.observe_step(step, since, result);
        }
        self.sync_job_status(pv).await
    }

    async fn sync_job_status(&self, pv: &Provisioner) -> Result<(), StoreError> {
        let lowest = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|(step, _)| *step)
            .min();
        let mut current = self.job_step.lock().await;
        if let Some(step) = lowest {
            if step > *current {
                pv.shared
                    .store
                    .set_job_status(&self.job_id, JobStatus::Step(step), None)
                    .await?;
                *current = step;
            }
        }
        Ok(())
    }
}

fn label(node: &BmNode) -> String {
    format!("{} ({})", node.node_id, node.hostname)
}

fn share(node: &BmNode, status: &str, progress: u8, ret_code: i64, message: String) -> JobNode {
    JobNode {
        node_id: node.node_id.clone(),
        status: status.to_string(),
        progress,
        ret_code,
        message,
    }
}

/// Starts a `kind` job over `nodes` (already checked: they exist and may
/// be worked on); returns the job.
pub async fn start(
    pv: Arc<Provisioner>,
    kind: Kind,
    nodes: Vec<(BmNode, DeploySettings)>,
    user_id: &str,
    request_id: &str,
) -> Result<Job, StoreError> {
    let action = kind.action();
    let (nodes, settings): (Vec<BmNode>, Vec<DeploySettings>) = nodes.into_iter().unzip();
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
    let job = pv
        .shared
        .store
        .create_job(
            crate::foundation::ids::new_id(crate::foundation::ids::JOB_PREFIX),
            action,
            ids,
            user_id,
            request_id,
        )
        .await?;
    // Listen before anything can happen to the nodes.
    let watches: Vec<Watch> = nodes
        .iter()
        .zip(settings)
        .map(|(n, s)| pv.deploys.watch(&n.node_id, s))
        .collect();
    let tracker = Arc::new(Tracker {
        job_id: job.job_id.clone(),
        request_id: request_id.to_string(),
        kind,
        steps: Mutex::new(
            nodes
                .iter()
                .map(|n| (n.node_id.clone(), (0, std::time::Instant::now())))
                .collect(),
        ),
        job_step: tokio::sync::Mutex::new(0),
    });
    let runner = pv.clone();
    crate::service::jobs::spawn(
        &pv.shared.tasks,
        pv.shared.store.clone(),
        job.job_id.clone(),
        async move { run_job(runner, tracker, nodes, watches).await },
    );
    Ok(job)
}

async fn run_job(
    pv: Arc<Provisioner>,
    t: Arc<Tracker>,
    nodes: Vec<BmNode>,
    watches: Vec<Watch>,
) -> Result<(), StoreError> {
    let total = nodes.len();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        pv.shared.config().provision.max_concurrent,
    ));
    pv.shared
        .store
        .append_job_log(
            &t.job_id,
            format!(
                "{}: {total} node(s), {} at a time",
                t.kind.action(),
                pv.shared.config().provision.max_concurrent
            ),
        )
        .await?;
    let mut set = JoinSet::new();
    for (node, watch) in nodes.into_iter().zip(watches) {
        let (pv, t, slots) = (pv.clone(), t.clone(), slots.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let id = node.node_id.clone();
            let ok = match node_task(&pv, &t, node.clone(), watch).await {
                Ok(ok) => ok,
                Err(e) => {
                    // One node's trouble with the store never ends the
                    // others' work (nor leaves them half-done).
                    fail_after_store_error(&pv, &t, &node, &e).await;
                    false
                }
            };
            pv.deploys.forget(&id);
            (ok, id)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((true, _)) => {}
            Ok((false, id)) => failed.push(id),
            Err(e) => tracing::error!(job_id = %t.job_id, "node task panicked: {e}"),
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
    pv.shared
        .store
        .set_job_status(&t.job_id, status, Some(line))
        .await
}

/// One node's whole run; Ok(true) when it ended where it should.
async fn node_task(
    pv: &Arc<Provisioner>,
    t: &Tracker,
    node: BmNode,
    mut watch: Watch,
) -> Result<bool, StoreError> {
    let cancel = watch.cancel.clone();
    let started = crate::foundation::ids::now_secs();
    let _console = pv.consoles.capture(&node).await;
    let result = tokio::select! {
        r = async {
            match t.kind {
                Kind::Provision => provision_steps(pv, t, &node, &mut watch).await,
                Kind::Inspect => inspect_steps(pv, t, &node, &mut watch).await,
                Kind::Clean => clean_steps(pv, t, &node, &mut watch).await,
            }
        } => r,
        _ = cancel.cancelled() => Err(Stop::Aborted),
    };
    let step = t.step_of(&node.node_id);
    let outcome = match result {
        Ok(()) => {
            let line = match t.kind {
                Kind::Provision => format!("{}: active", label(&node)),
                Kind::Inspect => format!("{}: inspected, ready", label(&node)),
                Kind::Clean => format!("{}: cleaned, powered off, ready", label(&node)),
            };
            pv.shared
                .store
                .set_job_node(
                    &t.job_id,
                    share(&node, "successful", 100, 0, String::new()),
                    Some(line),
                )
                .await?;
            true
        }
        Err(Stop::Store(e)) => return Err(e),
        Err(Stop::Aborted) => {
            let status = end_in_failure(pv, &node, Trigger::Abort).await?;
            let text = record(
                pv,
                t,
                &node,
                &usermsg::PROVISION_ABORTED,
                &[
                    ("step", format!("step{step}")),
                    ("status", status.as_str().to_string()),
                ],
            )
            .await?;
            pv.shared
                .store
                .set_job_node(
                    &t.job_id,
                    share(
                        &node,
                        "failed",
                        100,
                        RetCode::ProvisionAborted.code(),
                        text.clone(),
                    ),
                    Some(format!("{}: aborted at step{step}: {text}", label(&node))),
                )
                .await?;
            false
        }
        Err(Stop::Failed(f)) => {
            let mut f = with_diagnosis(pv, &node, f).await;
            let lines = pv.consoles.telling_lines(&node.node_id, started, 3).await;
            if !lines.is_empty() {
                let quoted: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
                f.args.push((
                    "console",
                    format!(" Last console lines: {}.", quoted.join(" / ")),
                ));
            }
            end_in_failure(pv, &node, t.kind.failed()).await?;
            let text = record(pv, t, &node, f.event, &f.args).await?;
            pv.shared
                .store
                .set_job_node(
                    &t.job_id,
                    share(&node, "failed", 100, f.code.code(), text.clone()),
                    Some(format!("{}: failed at step{step}: {text}", label(&node))),
                )
                .await?;
            false
        }
    };
    t.finish(pv, &node, if outcome { "ok" } else { "failed" })
        .await?;
    Ok(outcome)
}

/// A step2/step3 timeout names the likely cause ([`diagnosis`]): from the
/// node's latest boot attempt in its timeline, the unregistered PXE clients
/// seen meanwhile and, when the node never asked DHCP, its BMC's power
/// state and boot device read now.
async fn with_diagnosis(pv: &Provisioner, node: &BmNode, mut f: Failure) -> Failure {
    if !matches!(
        f.code,
        RetCode::ProvisionNoNetboot | RetCode::ProvisionTimeout
    ) || node.pxe_mac.is_empty()
    {
        return f;
    }
    let Some(d) = pv.diagnose_boot(&node.pxe_mac, Some(node)).await else {
        return f;
    };
    if let Some((_, h)) = f.args.iter_mut().find(|(k, _)| *k == "hint") {
        let end = if d.text.ends_with(['.', '?', '!']) {
            ""
        } else {
            "."
        };
        *h = format!("{h} Likely cause: {}{end}", d.text);
    }
    f
}

/// A node whose task could not record its progress: best effort, it is
/// powered off and moved to the failed state, and the job says why.
async fn fail_after_store_error(pv: &Provisioner, t: &Tracker, node: &BmNode, e: &StoreError) {
    let step = t.step_of(&node.node_id);
    tracing::error!(job_id = %t.job_id, node_id = %node.node_id, "step{step}: store error: {e}");
    let status = match end_in_failure(pv, node, t.kind.failed()).await {
        Ok(s) => s.as_str().to_string(),
        Err(_) => "unknown".to_string(),
    };
    let text = format!(
        "internal error at step{step} ({e}); the node is {status}: see the daemon's log, then run the job again"
    );
    let _ = pv
        .shared
        .store
        .set_job_node(
            &t.job_id,
            share(node, "failed", 100, RetCode::Internal.code(), text.clone()),
            Some(format!("{}: failed at step{step}: {text}", label(node))),
        )
        .await;
    let _ = t.finish(pv, node, "failed").await;
}

/// After a failure or an abort: powers the node off if the work had begun,
/// and moves it to the matching failed state. Returns the state it is in.
async fn end_in_failure(
    pv: &Provisioner,
    node: &BmNode,
    trigger: Trigger,
) -> Result<BmNodeStatus, StoreError> {
    let current = current_status(pv, &node.node_id).await?;
    let working = matches!(
        current,
        BmNodeStatus::Provisioning | BmNodeStatus::Inspecting | BmNodeStatus::Verifying
    );
    if !working {
        return Ok(current);
    }
    if current != BmNodeStatus::Verifying {
        // Best effort: a node left running might still write its disk.
        if let Err(e) = pv.power.run_on(node, PowerOp::Off { hard: true }).await {
            tracing::warn!(node_id = %node.node_id, "could not power the node off after a failure: {e}");
        }
        let _ = vmedia_done(pv, node, 0, false).await;
    }
    let trigger = match (current, trigger) {
        (BmNodeStatus::Verifying, Trigger::Abort) => Trigger::Abort,
        (BmNodeStatus::Verifying, _) => Trigger::VerifyFailed,
        (_, t) => t,
    };
    match pv
        .shared
        .store
        .transition_bm_node(&node.node_id, trigger)
        .await
    {
        Ok((_, to)) => Ok(to),
        Err(StoreError::WrongState(_)) => current_status(pv, &node.node_id).await,
        Err(e) => Err(e),
    }
}

async fn current_status(pv: &Provisioner, node_id: &str) -> Result<BmNodeStatus, StoreError> {
    let filter = crate::foundation::store::BmNodeFilter {
        node_ids: vec![node_id.to_string()],
        ..Default::default()
    };
    let (nodes, _) = pv.shared.store.describe_bm_nodes(filter).await?;
    nodes
        .first()
        .map(|n| n.status)
        .ok_or_else(|| StoreError::NotFound(format!("node {node_id} is not registered")))
}

/// Stores a user message about `node`; returns its text.
async fn record(
    pv: &Provisioner,
    t: &Tracker,
    node: &BmNode,
    event: &Event,
    args: &[(&'static str, String)],
) -> Result<String, StoreError> {
    let mut all: Vec<(&str, &str)> = vec![
        ("node_id", node.node_id.as_str()),
        ("mac", node.pxe_mac.as_str()),
        ("os_version", node.os_version.as_str()),
    ];
    all.extend(args.iter().map(|(k, v)| (*k, v.as_str())));
    let message = usermsg::message(
        event,
        &all,
        Subject {
            resource_type: "BMNode",
            resource_id: &node.node_id,
            request_id: &t.request_id,
        },
        now_secs(),
        pv.shared.config().messages.retention_days,
    );
    let text = message.user_message.clone();
    pv.shared.store.insert_message(message).await?;
    Ok(text)
}

/// A BMC operation of step `step`, failing the node with the BMC's answer.
async fn bmc(
    pv: &Provisioner,
    node: &BmNode,
    step: u32,
    operation: &str,
    op: PowerOp,
) -> Result<PowerOutcome, Stop> {
    pv.power.run_on(node, op).await.map_err(|e| {
        let (code, _, detail) = crate::service::power::classify(&e);
        failure(
            code,
            &usermsg::PROVISION_POWER_FAILED,
            &[
                ("step", &format!("step{step}")),
                ("operation", operation),
                ("detail", &detail),
            ],
        )
    })
}

/// Step0's checks that need no BMC: the image, the ramdisk, the templates.
fn validate(
    pv: &Provisioner,
    cfg: &Config,
    node: &BmNode,
    kind: Kind,
) -> Result<Option<ImageConfig>, Stop> {
    let invalid = |detail: String| {
        failure(
            RetCode::ProvisionInvalid,
            &usermsg::PROVISION_INVALID,
            &[("detail", &detail)],
        )
    };
    let vmedia = by_vmedia(node);
    if node.pxe_mac.is_empty() {
        return Err(invalid(if vmedia {
            "it has no pxe_network_mac_addr: the virtual-media ramdisk finds its NIC by this MAC (set it with ModifyBMNodeAttributes)".into()
        } else {
            "it has no pxe_network_mac_addr (set it with ModifyBMNodeAttributes)".into()
        }));
    }
    if vmedia {
        if pv.shared.http_address().is_none() {
            return Err(invalid(
                "rackboot's HTTP server is off, so the BMC cannot fetch the virtual-media ISO: set http.address (or [dhcp] interface) and restart rackboot".into(),
            ));
        }
        crate::service::ramdisk::iso::check_tools()
            .map_err(|e| invalid(format!("the virtual-media ISO cannot be built: {e}")))?;
    } else if cfg.dhcp.interface.is_empty() {
        return Err(invalid(
            "the PXE responder is off, so no machine can network-boot: set [dhcp] interface (and restart rackboot)".into(),
        ));
    }
    if !node.has_bmc() {
        return Err(invalid(
            "it has no BMC yet (set ipmi_network_address, ipmi_username and ipmi_password with ModifyBMNodeAttributes)".into(),
        ));
    }
    let image = cfg
        .images
        .iter()
        .find(|i| i.os_version == node.os_version)
        .cloned();
    if kind == Kind::Provision {
        let Some(image) = &image else {
            return Err(invalid(format!(
                "os_version {} is not in the image catalogue ([[images]])",
                node.os_version
            )));
        };
        if !image.file.is_empty() && !std::path::Path::new(&image.file).is_file() {
            return Err(invalid(format!(
                "the image file of {} is missing on the deploy host",
                image.os_version
            )));
        }
        if vmedia && image.method == ImageMethod::Installer {
            return Err(invalid(format!(
                "{} is an installer image, which boots by PXE; virtual-media deploys write images (use bmc_address redfish://… for this node)",
                image.os_version
            )));
        }
    }
    let needs_ramdisk = matches!(kind, Kind::Inspect | Kind::Clean)
        || image
            .as_ref()
            .is_some_and(|i| i.method == ImageMethod::Image);
    if needs_ramdisk {
        for f in [&cfg.deploy.kernel, &cfg.deploy.initrd] {
            if !std::path::Path::new(f).is_file() {
                return Err(invalid("the deploy ramdisk is not built (rackboot ramdisk build, or set [deploy] kernel and initrd)".into()));
            }
        }
    }
    let mode = match (kind, image.as_ref().map(|i| i.method)) {
        (Kind::Inspect, _) => templates::Mode::Inspect,
        (Kind::Clean, _) => templates::Mode::Clean,
        (_, Some(ImageMethod::Installer)) => templates::Mode::Install,
        _ => templates::Mode::Deploy,
    };
    let urls = templates::Urls {
        address: "0.0.0.0",
        http_port: cfg.http.port,
    };
    let vars = templates::BootVars::new(
        mode,
        &templates::NodeVars::from(node),
        image.as_ref(),
        cfg,
        &urls,
        "validate",
    );
    pv.shared
        .templates()
        .render(mode.ipxe_template(), &vars)
        .map_err(|e| invalid(format!("its boot script does not render: {e}")))?;
    if vmedia {
        for name in templates::VMEDIA_TEMPLATES {
            pv.shared.templates().render(name, &vars).map_err(|e| {
                invalid(format!(
                    "its virtual-media boot config does not render: {e}"
                ))
            })?;
        }
    }
    Ok(image)
}

/// Step0: the image is downloaded, checked and converted once (see
/// `service::images`); what that does goes into the job's log.
async fn prepare_image(
    pv: &Provisioner,
    t: &Tracker,
    node: &BmNode,
    image: &ImageConfig,
) -> Result<(), Stop> {
    if pv.images.ready(image).is_some() {
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let store = pv.shared.store.clone();
    let (job_id, who) = (t.job_id.clone(), label(node));
    let logger = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let _ = store
                .append_job_log(&job_id, format!("{who}: step0: image: {line}"))
                .await;
        }
    });
    let result = pv
        .images
        .prepare(image, move |line| {
            let _ = tx.send(line);
        })
        .await;
    let _ = logger.await;
    match result {
        Ok(_) => {
            pv.images.prune(&pv.shared.config().images);
            Ok(())
        }
        Err(e) => Err(failure(
            RetCode::ProvisionInvalid,
            &usermsg::PROVISION_INVALID,
            &[(
                "detail",
                &format!(
                    "its image {} cannot be prepared: {}",
                    image.os_version,
                    clean(&e)
                ),
            )],
        )),
    }
}

/// Step0's BMC check (a `new` node goes through `verifying`), then the move
/// into the working state and a fresh deploy token.
async fn verify_and_enter(pv: &Provisioner, node: &BmNode, enter: Trigger) -> Result<(), Stop> {
    let status = current_status(pv, &node.node_id).await?;
    if status == BmNodeStatus::New {
        pv.shared
            .store
            .transition_bm_node(&node.node_id, Trigger::Verify)
            .await?;
        match bmc(pv, node, 0, "power status", PowerOp::Status).await {
            Ok(_) => {
                pv.shared
                    .store
                    .transition_bm_node(&node.node_id, Trigger::Verified)
                    .await?;
            }
            Err(e) => {
                pv.shared
                    .store
                    .transition_bm_node(&node.node_id, Trigger::VerifyFailed)
                    .await?;
                return Err(e);
            }
        }
    } else {
        bmc(pv, node, 0, "power status", PowerOp::Status).await?;
    }
    // The fresh token first: a machine that asks for its script the moment
    // the node is in the working state gets the token that stays.
    pv.shared.store.rotate_deploy_token(&node.node_id).await?;
    pv.shared
        .store
        .transition_bm_node(&node.node_id, enter)
        .await?;
    Ok(())
}

/// Step1: boot from the network once, power cycle (on when off).
async fn netboot(pv: &Provisioner, t: &Tracker, node: &BmNode) -> Result<(), Stop> {
    t.step(pv, node, 1, 2, "boot device pxe (next boot), power cycle")
        .await?;
    boot_and_cycle(pv, node, 1, BootDevice::Pxe, false).await
}

/// Whether `node` deploys by virtual media (`redfish-virtualmedia://`).
fn by_vmedia(node: &BmNode) -> bool {
    node.driver() == Some(Driver::RedfishVirtualMedia)
}

/// Sets the boot device (for the next boot, or `persistent`), then power
/// cycles; a BMC error fails the node at `step`.
async fn boot_and_cycle(
    pv: &Provisioner,
    node: &BmNode,
    step: u32,
    device: BootDevice,
    persistent: bool,
) -> Result<(), Stop> {
    let setting = BootSetting {
        device,
        persistent,
        efi: node.boot_mode == BootMode::Uefi,
    };
    boot_with(pv, node, step, setting).await
}

/// [`boot_and_cycle`] with the boot flags given whole.
async fn boot_with(
    pv: &Provisioner,
    node: &BmNode,
    step: u32,
    setting: BootSetting,
) -> Result<(), Stop> {
    let (device, persistent) = (setting.device, setting.persistent);
    let operation = format!("set boot device {}", device.as_str());
    bmc(pv, node, step, &operation, PowerOp::SetBoot(setting)).await?;
    // The boot timeline's mark of a new attempt (best effort).
    if !node.pxe_mac.is_empty() {
        let detail = format!(
            "step{step}: boot device {} ({}{}), power cycle",
            device.as_str(),
            if persistent {
                "persistent"
            } else {
                "next boot"
            },
            if setting.efi { ", EFI" } else { "" },
        );
        let _ = pv
            .shared
            .store
            .record_boot_event(node.pxe_mac.clone(), "bmc", detail)
            .await;
    }
    bmc(pv, node, step, "power cycle", PowerOp::Cycle).await?;
    Ok(())
}

/// A node's deploy events, with the one step2 saw first kept for step3
/// (a virtual-media ramdisk's first sign of life is its inventory).
struct Events<'a> {
    pending: Option<DeployEvent>,
    watch: &'a mut Watch,
}

impl Events<'_> {
    async fn next(&mut self) -> Option<DeployEvent> {
        match self.pending.take() {
            Some(e) => Some(e),
            None => self.watch.events.recv().await,
        }
    }
}

/// Step1 and step2: boot the deploy ramdisk (by PXE, or from virtual
/// media) and wait for its first sign of life.
async fn boot_ramdisk<'a>(
    pv: &Provisioner,
    t: &Tracker,
    node: &BmNode,
    mode: templates::Mode,
    watch: &'a mut Watch,
) -> Result<Events<'a>, Stop> {
    let vmedia = by_vmedia(node);
    if vmedia {
        vmedia_boot(pv, t, node, mode).await?;
    } else {
        netboot(pv, t, node).await?;
    }
    let secs = pv.shared.config().provision.boot_timeout;
    let what = if vmedia {
        format!("waiting for the deploy ramdisk to start from the virtual CD (up to {secs} s)")
    } else {
        format!("waiting for the network boot (up to {secs} s)")
    };
    t.step(pv, node, 2, 5, &what).await?;
    // Any sign of the deploy: its script, a file it fetched, a callback.
    let mut waited = tokio::time::timeout(Duration::from_secs(secs), watch.events.recv()).await;
    // Not one DHCP request from the node: some BMCs ignore a next-boot
    // override. Once more with a persistent one (step4 sets the disk).
    let retried = waited.is_err() && !vmedia && !asked_dhcp(pv, node).await;
    if retried {
        let line = format!(
            "{}: step2: no DHCP from {} in {secs} s: boot device pxe again, persistent this time, and a power cycle",
            label(node),
            node.pxe_mac
        );
        pv.shared.store.append_job_log(&t.job_id, line).await?;
        boot_and_cycle(pv, node, 2, BootDevice::Pxe, true).await?;
        waited = tokio::time::timeout(Duration::from_secs(secs), watch.events.recv()).await;
        if waited.is_ok() {
            let line = format!(
                "{}: step2: the persistent boot override worked (the next-boot one brought no DHCP in {secs} s)",
                label(node)
            );
            pv.shared.store.append_job_log(&t.job_id, line).await?;
        }
    }
    // A UEFI node still silent: some BMCs ignore an override that carries
    // the EFI flag. Once more without it (never for a BIOS node: the flag
    // would make its firmware boot the other way).
    let without_efi = retried
        && waited.is_err()
        && node.boot_mode == BootMode::Uefi
        && !asked_dhcp(pv, node).await;
    if without_efi {
        let line = format!(
            "{}: step2: no DHCP from {} in {secs} s: boot device pxe again, persistent and without the EFI flag, and a power cycle",
            label(node),
            node.pxe_mac
        );
        pv.shared.store.append_job_log(&t.job_id, line).await?;
        let setting = BootSetting {
            device: BootDevice::Pxe,
            persistent: true,
            efi: false,
        };
        boot_with(pv, node, 2, setting).await?;
        waited = tokio::time::timeout(Duration::from_secs(secs), watch.events.recv()).await;
        if waited.is_ok() {
            let line = format!(
                "{}: step2: the persistent boot override without the EFI flag worked (with it, and as a next-boot one, no DHCP came in {secs} s)",
                label(node)
            );
            pv.shared.store.append_job_log(&t.job_id, line).await?;
        }
    }
    match waited {
        Ok(Some(e)) => Ok(Events {
            pending: Some(e),
            watch,
        }),
        Ok(None) => Err(Stop::Aborted),
        Err(_) if vmedia => {
            let (address, port) = pv.shared.http_address().unwrap_or_default();
            Err(failure(
                RetCode::ProvisionNoNetboot,
                &usermsg::PROVISION_NO_VMEDIA_BOOT,
                &[
                    ("seconds", &secs.to_string()),
                    ("address", &format!("{address}:{port}")),
                ],
            ))
        }
        Err(_) => Err(failure(
            RetCode::ProvisionNoNetboot,
            &usermsg::PROVISION_NO_NETBOOT,
            &[
                ("seconds", &secs.to_string()),
                (
                    "hint",
                    if without_efi {
                        " Tried three times: with a next-boot boot override, a persistent one, and a persistent one without the EFI flag."
                    } else if retried {
                        " Tried twice: with a next-boot and with a persistent boot override."
                    } else {
                        ""
                    },
                ),
            ],
        )),
    }
}

/// Whether `node`'s latest boot attempt has a DHCP line.
async fn asked_dhcp(pv: &Provisioner, node: &BmNode) -> bool {
    pv.shared
        .store
        .last_boot_attempt(node.pxe_mac.clone(), 1000)
        .await
        .map(|events| events.iter().any(|e| e.kind == "dhcp"))
        .unwrap_or(true)
}

/// Step1 by virtual media: the node's ISO (the deploy ramdisk with its
/// token and network settings), inserted, boot from CD once, power cycle.
async fn vmedia_boot(
    pv: &Provisioner,
    t: &Tracker,
    node: &BmNode,
    mode: templates::Mode,
) -> Result<(), Stop> {
    t.step(
        pv,
        node,
        1,
        2,
        "virtual media: ISO built and inserted, boot device cd (next boot), power cycle",
    )
    .await?;
    let url = pv.build_vmedia_iso(node, mode).await.map_err(|detail| {
        failure(
            RetCode::ProvisionInvalid,
            &usermsg::PROVISION_ISO_FAILED,
            &[("detail", &detail)],
        )
    })?;
    pv.power.insert_media(node, &url).await.map_err(|e| {
        let (code, _, detail) = crate::service::power::classify(&e);
        failure(
            code,
            &usermsg::PROVISION_POWER_FAILED,
            &[
                ("step", "step1"),
                ("operation", "insert virtual media"),
                ("detail", &detail),
            ],
        )
    })?;
    pv.shared
        .store
        .append_job_log(
            &t.job_id,
            format!(
                "{}: step1: virtual media inserted ({})",
                label(node),
                url.split("/vmedia/").next().unwrap_or("")
            ),
        )
        .await?;
    boot_and_cycle(pv, node, 1, BootDevice::Cd, false).await
}

/// Ejects a virtual-media node's CD and deletes its ISO (best effort
/// after a failure: `strict` false).
async fn vmedia_done(pv: &Provisioner, node: &BmNode, step: u32, strict: bool) -> Result<(), Stop> {
    if !by_vmedia(node) {
        return Ok(());
    }
    let _ = std::fs::remove_file(pv.vmedia_iso(&node.node_id));
    match pv.power.eject_media(node).await {
        Ok(()) => Ok(()),
        Err(e) if !strict => {
            tracing::warn!(node_id = %node.node_id, "could not eject the virtual media: {e}");
            Ok(())
        }
        Err(e) => {
            let (code, _, detail) = crate::service::power::classify(&e);
            Err(failure(
                code,
                &usermsg::PROVISION_POWER_FAILED,
                &[
                    ("step", &format!("step{step}")),
                    ("operation", "eject virtual media"),
                    ("detail", &detail),
                ],
            ))
        }
    }
}

fn clean(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .,:;_-/()=%".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect()
}

async fn provision_steps(
    pv: &Arc<Provisioner>,
    t: &Tracker,
    node: &BmNode,
    watch: &mut Watch,
) -> Result<(), Stop> {
    let cfg = pv.shared.config();
    t.step(
        pv,
        node,
        0,
        0,
        "validate (image, ramdisk, templates, BMC login)",
    )
    .await?;
    let image = validate(pv, &cfg, node, Kind::Provision)?.expect("validate checks the image");
    if image.method == ImageMethod::Image {
        prepare_image(pv, t, node, &image).await?;
    }
    // Rebuild: an active node (ProvisionBMNodes with rebuild: 1).
    let enter = if current_status(pv, &node.node_id).await? == BmNodeStatus::Active {
        Trigger::Rebuild
    } else {
        Trigger::Provision
    };
    verify_and_enter(pv, node, enter).await?;
    let mode = match image.method {
        ImageMethod::Image => templates::Mode::Deploy,
        ImageMethod::Installer => templates::Mode::Install,
    };
    let mut events = boot_ramdisk(pv, t, node, mode, watch).await?;

    // Step3: the deploy runs; every sign of life restarts its clock.
    let secs = cfg.provision.deploy_timeout;
    let how = match image.method {
        ImageMethod::Image => "the deploy ramdisk writes the image",
        ImageMethod::Installer => "the installer runs",
    };
    t.step(
        pv,
        node,
        3,
        10,
        &format!("deploying {} ({how})", image.os_version),
    )
    .await?;
    let mut shown = 10u8;
    loop {
        match tokio::time::timeout(Duration::from_secs(secs), events.next()).await {
            Err(_) => {
                return Err(failure(
                    RetCode::ProvisionTimeout,
                    &usermsg::PROVISION_TIMEOUT,
                    &[
                        ("step", "step3"),
                        ("seconds", &secs.to_string()),
                        ("detail", "no progress from the deploy"),
                        ("hint", ""),
                    ],
                ))
            }
            Ok(None) => return Err(Stop::Aborted),
            Ok(Some(DeployEvent::Callback(Callback::Progress { percent, .. }))) => {
                t.step3_progress(pv, node, &mut shown, percent).await?;
            }
            Ok(Some(DeployEvent::Callback(Callback::Done))) => break,
            Ok(Some(DeployEvent::Callback(Callback::Log { message }))) => {
                t.step3_log(pv, node, &message).await?;
            }
            Ok(Some(DeployEvent::Callback(Callback::Failed { message }))) => {
                return Err(failure(
                    RetCode::ProvisionDeployFailed,
                    &usermsg::PROVISION_DEPLOY_FAILED,
                    &[("detail", &clean(&message))],
                ))
            }
            Ok(Some(DeployEvent::Callback(Callback::Inventory(json)))) => {
                let raw: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                let seen = super::inventory::process(&raw);
                let since_kernel = raw["uptime_s"]
                    .as_f64()
                    .map(|s| format!(", {s:.1} s after its kernel started"))
                    .unwrap_or_default();
                let mode = if seen.boot_mode.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", booted {}{}",
                        seen.boot_mode,
                        if seen.secure_boot == Some(true) {
                            " with Secure Boot"
                        } else {
                            ""
                        }
                    )
                };
                pv.shared
                    .store
                    .append_job_log(
                        &t.job_id,
                        format!(
                            "{}: step3: inventory received ({} disk(s), {} NIC(s){mode}{since_kernel})",
                            label(node),
                            seen.disks.len(),
                            seen.nics.len()
                        ),
                    )
                    .await?;
            }
            Ok(Some(DeployEvent::DiskChosen {
                disk,
                why,
                data_bytes,
                virtual_size,
            })) => {
                pv.shared
                    .store
                    .append_job_log(
                        &t.job_id,
                        format!(
                            "{}: step3: writing to {disk} ({why}): {} MiB of data of a {} MiB image",
                            label(node),
                            data_bytes.div_ceil(1 << 20),
                            virtual_size >> 20
                        ),
                    )
                    .await?;
            }
            Ok(Some(DeployEvent::NoDisk { why, hints, disks })) => {
                return Err(failure(
                    RetCode::ProvisionNoDisk,
                    &usermsg::PROVISION_NO_DISK,
                    &[
                        ("detail", &clean(&why)),
                        ("hints", &clean(&hints)),
                        ("disks", &clean(&disks)),
                    ],
                ))
            }
            Ok(Some(_)) => {}
        }
    }

    // Step4: from now on a network boot gets the local disk.
    pv.deploys.set_deployed(&node.node_id);
    let what = if by_vmedia(node) {
        "virtual media ejected, boot device disk, power cycle"
    } else {
        "boot device disk, power cycle"
    };
    t.step(pv, node, 4, 90, what).await?;
    vmedia_done(pv, node, 4, true).await?;
    boot_and_cycle(pv, node, 4, BootDevice::Disk, true).await?;
    let secs = cfg.provision.power_on_timeout;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let PowerOutcome::Power(true) = bmc(pv, node, 4, "power status", PowerOp::Status).await?
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failure(
                RetCode::ProvisionTimeout,
                &usermsg::PROVISION_TIMEOUT,
                &[
                    ("step", "step4"),
                    ("seconds", &secs.to_string()),
                    ("detail", "the BMC never reported power on"),
                    ("hint", ""),
                ],
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    if image.first_boot_callback {
        let secs = cfg.provision.first_boot_timeout;
        t.step(
            pv,
            node,
            5,
            95,
            &format!("waiting for the installed OS to call back (up to {secs} s)"),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(DeployEvent::Callback(Callback::Booted))) => break,
                Ok(Some(_)) => {}
                Ok(None) => return Err(Stop::Aborted),
                Err(_) => {
                    return Err(failure(
                        RetCode::ProvisionTimeout,
                        &usermsg::PROVISION_TIMEOUT,
                        &[
                            ("step", "step5"),
                            ("seconds", &secs.to_string()),
                            ("detail", "the installed OS never called back"),
                            ("hint", ""),
                        ],
                    ))
                }
            }
        }
    }
    pv.shared
        .store
        .transition_bm_node(&node.node_id, Trigger::Deployed)
        .await?;
    // The installed machine, as a Node of seed §1 linked to this BMNode.
    match super::inventory::link_node(&pv.shared.store, node).await {
        Ok(id) => {
            pv.shared
                .store
                .append_job_log(
                    &t.job_id,
                    format!("{}: listed as Node {id} (DescribeNodes)", label(node)),
                )
                .await?;
        }
        Err(e) => tracing::warn!(node_id = %node.node_id, "could not list the node as a Node: {e}"),
    }
    Ok(())
}

async fn inspect_steps(
    pv: &Arc<Provisioner>,
    t: &Tracker,
    node: &BmNode,
    watch: &mut Watch,
) -> Result<(), Stop> {
    let cfg = pv.shared.config();
    t.step(pv, node, 0, 0, "validate (ramdisk, templates, BMC login)")
        .await?;
    validate(pv, &cfg, node, Kind::Inspect)?;
    verify_and_enter(pv, node, Trigger::Inspect).await?;
    let mut events = boot_ramdisk(pv, t, node, templates::Mode::Inspect, watch).await?;
    let secs = cfg.provision.inspect_timeout;
    t.step(pv, node, 3, 50, "waiting for the inventory").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(DeployEvent::Callback(Callback::Inventory(json)))) => {
                if let Ok(raw) = serde_json::from_str::<serde_json::Value>(&json) {
                    super::inventory::apply(&pv.shared.store, &node.node_id, &raw).await?;
                }
                break;
            }
            Ok(Some(DeployEvent::Callback(Callback::Failed { message }))) => {
                return Err(failure(
                    RetCode::ProvisionDeployFailed,
                    &usermsg::INSPECT_FAILED,
                    &[("step", "step3"), ("detail", &clean(&message))],
                ))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(Stop::Aborted),
            Err(_) => {
                return Err(failure(
                    RetCode::ProvisionTimeout,
                    &usermsg::INSPECT_FAILED,
                    &[
                        ("step", "step3"),
                        ("detail", &format!("no inventory within {secs} s")),
                    ],
                ))
            }
        }
    }
    pv.deploys.set_deployed(&node.node_id);
    t.step(pv, node, 4, 90, "inventory stored; power off")
        .await?;
    bmc(pv, node, 4, "power off", PowerOp::Off { hard: true }).await?;
    vmedia_done(pv, node, 4, true).await?;
    pv.shared
        .store
        .transition_bm_node(&node.node_id, Trigger::Inspected)
        .await?;
    Ok(())
}

/// UnprovisionBMNodes on one node: boot the ramdisk in clean mode, which
/// reports its disks and wipes them as the run's `wipe` says (progress for
/// `zero`), then power off and `ready`. `wipe: none` only powers off.
async fn clean_steps(
    pv: &Arc<Provisioner>,
    t: &Tracker,
    node: &BmNode,
    watch: &mut Watch,
) -> Result<(), Stop> {
    let cfg = pv.shared.config();
    let wipe = pv.deploys.settings(&node.node_id).wipe;
    t.step(pv, node, 0, 0, "validate (ramdisk, templates, BMC login)")
        .await?;
    if wipe == super::Wipe::None {
        verify_and_enter(pv, node, Trigger::Clean).await?;
    } else {
        validate(pv, &cfg, node, Kind::Clean)?;
        verify_and_enter(pv, node, Trigger::Clean).await?;
        let mut events = boot_ramdisk(pv, t, node, templates::Mode::Clean, watch).await?;
        let secs = cfg.provision.deploy_timeout;
        t.step(
            pv,
            node,
            3,
            10,
            &format!("wiping the disks ({})", wipe.as_str()),
        )
        .await?;
        let mut shown = 10u8;
        let failed = |detail: String| {
            failure(
                RetCode::ProvisionDeployFailed,
                &usermsg::CLEAN_FAILED,
                &[("step", "step3"), ("detail", &clean(&detail))],
            )
        };
        loop {
            match tokio::time::timeout(Duration::from_secs(secs), events.next()).await {
                Err(_) => {
                    return Err(failure(
                        RetCode::ProvisionTimeout,
                        &usermsg::CLEAN_FAILED,
                        &[
                            ("step", "step3"),
                            (
                                "detail",
                                &format!("no progress from the ramdisk within {secs} s"),
                            ),
                        ],
                    ))
                }
                Ok(None) => return Err(Stop::Aborted),
                Ok(Some(DeployEvent::Callback(Callback::Progress { percent, .. }))) => {
                    t.step3_progress(pv, node, &mut shown, percent).await?;
                }
                Ok(Some(DeployEvent::WipePlanned { disks, how })) => {
                    t.step3_log(pv, node, &format!("wiping ({}) {disks}", how.as_str()))
                        .await?;
                }
                Ok(Some(DeployEvent::Callback(Callback::Log { message }))) => {
                    t.step3_log(pv, node, &message).await?;
                }
                Ok(Some(DeployEvent::Callback(Callback::Done))) => break,
                Ok(Some(DeployEvent::Callback(Callback::Failed { message }))) => {
                    return Err(failed(message))
                }
                Ok(Some(_)) => {}
            }
        }
        pv.deploys.set_deployed(&node.node_id);
    }
    t.step(pv, node, 4, 90, "power off").await?;
    bmc(pv, node, 4, "power off", PowerOp::Off { hard: true }).await?;
    vmedia_done(pv, node, 4, true).await?;
    pv.shared
        .store
        .transition_bm_node(&node.node_id, Trigger::Cleaned)
        .await?;
    // The machine's OS is gone: it is no longer a Node of seed §1.
    if let Err(e) = super::inventory::unlink_node(&pv.shared.store, node).await {
        tracing::warn!(node_id = %node.node_id, "could not drop the node's Node: {e}");
    }
    Ok(())
}

/// At start-up: nodes left verifying, provisioning or inspecting by a stop
/// of the daemon go to their failed state, each with a user message.
pub async fn fail_interrupted_nodes(shared: &Shared) -> Result<Vec<String>, StoreError> {
    let ids = shared
        .store
        .bm_nodes_in(vec![
            BmNodeStatus::Verifying,
            BmNodeStatus::Provisioning,
            BmNodeStatus::Inspecting,
            BmNodeStatus::Cleaning,
        ])
        .await?;
    for id in &ids {
        let (from, to) = shared
            .store
            .transition_bm_node(id, Trigger::Interrupted)
            .await?;
        let message = usermsg::message(
            &usermsg::PROVISION_INTERRUPTED,
            &[
                ("node_id", id),
                ("was", from.as_str()),
                ("status", to.as_str()),
            ],
            Subject {
                resource_type: "BMNode",
                resource_id: id,
                request_id: "",
            },
            now_secs(),
            shared.config().messages.retention_days,
        );
        shared.store.insert_message(message).await?;
        tracing::warn!(node_id = %id, from = from.as_str(), to = to.as_str(), "node was mid-work when the daemon stopped");
    }
    Ok(ids)
}
