//! Provisioning and inspection: what ProvisionBMNodes, AbortProvisionBMNodes
//! and IntrospectBMNodes start, and how a node's deploy reaches it.
//!
//! One job per call; each node runs its own task (at most
//! `provision.max_concurrent` at once) through the steps, which are also the
//! job's status (that of its slowest node still running):
//! `step0` validate (image, ramdisk, templates, BMC login), `step1` boot
//! device PXE + power cycle, `step2` wait for the network boot, `step3`
//! deploy (progress from the ramdisk's or installer's callbacks), `step4`
//! boot device disk + power cycle + power on confirmed, `step5` (images with
//! `first_boot_callback`) the installed OS calls back. Every state change is
//! written before the BMC command that follows it. A failure powers the
//! node off, moves it to `provision_failed` and records a user message that
//! says which step failed and what to check.
//!
//! A `redfish-virtualmedia` node boots the deploy ramdisk from an ISO its
//! BMC fetches from the HTTP server (step1: ISO built with the node's token
//! and network settings, inserted, boot from CD once, power cycle; step4
//! ejects it): no DHCP, no PXE; the rest of the deploy is the same.
//!
//! The PXE servers reach this service through [`Provisioner`]'s narrow
//! boot interface only: they ask what a node boots now
//! ([`Provisioner::boot_mode`]), and report what they served and what the
//! node posted ([`Provisioner::served`], [`Provisioner::fetched`],
//! [`Provisioner::callback`], [`Provisioner::enlist`]); a node nobody
//! provisions is not listened to. They never move a node's state.

pub mod inventory;
mod run;
pub mod settings;

pub use run::Kind;
pub use settings::{DeploySettings, Wipe};

use crate::foundation::callbacks::Callback;
use crate::foundation::config::{Config, ImageConfig, ImageMethod};
use crate::foundation::diagnosis;
use crate::foundation::hints;
use crate::foundation::ipmi::commands::BootDevice;
use crate::foundation::shared::Shared;
use crate::foundation::states::Trigger;
use crate::foundation::store::{BmNode, BmNodeStatus, Job, StoreError};
use crate::foundation::templates::Mode;
use crate::service::console::Consoles;
use crate::service::images::{Images, Prepared};
use crate::service::power::{Power, PowerOp, PowerOutcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The provisioning service: starts and aborts provisions and inspections,
/// and is what the PXE servers ask and tell about network-booting nodes.
pub struct Provisioner {
    shared: Arc<Shared>,
    power: Arc<Power>,
    /// Images are prepared (downloaded, checked, converted) here first.
    pub images: Arc<Images>,
    /// The nodes being worked on now, and what their deploys do.
    deploys: Registry,
    /// Each task captures its node's serial console.
    consoles: Arc<Consoles>,
}

impl Provisioner {
    pub fn new(
        shared: Arc<Shared>,
        power: Arc<Power>,
        images: Arc<Images>,
        consoles: Arc<Consoles>,
    ) -> Provisioner {
        Provisioner {
            shared,
            power,
            images,
            consoles,
            deploys: Registry::default(),
        }
    }

    /// Starts a `kind` job over `nodes` (already checked: they exist and may
    /// be worked on); returns the job.
    pub async fn start(
        self: &Arc<Self>,
        kind: Kind,
        nodes: Vec<(BmNode, DeploySettings)>,
        user_id: &str,
        request_id: &str,
    ) -> Result<Job, StoreError> {
        run::start(self.clone(), kind, nodes, user_id, request_id).await
    }

    /// Starts listening for what `node_id` does on the network (a provision
    /// or inspection task does this before it powers the node on).
    pub fn watch(&self, node_id: &str) -> Watch {
        self.deploys.watch(node_id, DeploySettings::default())
    }

    /// "Why didn't it boot?" for the latest boot attempt of `mac` (its
    /// timeline since rackboot last told its BMC to boot, see
    /// [`diagnosis`]): with the unregistered PXE clients seen meanwhile and,
    /// given the `node` and when it never asked DHCP, its BMC's power state
    /// and boot device read now. `None`: no timeline, or nothing stands out.
    pub async fn diagnose_boot(
        &self,
        mac: &str,
        node: Option<&BmNode>,
    ) -> Option<diagnosis::Diagnosis> {
        let store = &self.shared.store;
        let events = store
            .last_boot_attempt(mac.to_string(), 1000)
            .await
            .unwrap_or_default();
        if events.is_empty() {
            return None;
        }
        let lines: Vec<diagnosis::Line> = events
            .iter()
            .map(|e| diagnosis::Line {
                kind: &e.kind,
                detail: &e.detail,
            })
            .collect();
        let silent = !events.iter().any(|e| e.kind == "dhcp");
        let strangers = if silent {
            let since = events[0].created_ms;
            store.pxe_strangers(since, 5).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let (mut power_on, mut boot_pxe) = (None, None);
        if let (true, Some(node)) = (silent, node) {
            if let Ok(PowerOutcome::Power(on)) = self.power.run_on(node, PowerOp::Status).await {
                power_on = Some(on);
            }
            if let Ok(PowerOutcome::Boot(b)) = self.power.run_on(node, PowerOp::GetBoot).await {
                boot_pxe = Some(b.device == BootDevice::Pxe);
            }
        }
        diagnosis::diagnose(&diagnosis::Facts {
            mac,
            lines: &lines,
            power_on,
            boot_pxe,
            strangers: &strangers,
        })
    }

    /// Whether a task works on `node_id` now.
    pub fn is_running(&self, node_id: &str) -> bool {
        self.deploys.is_running(node_id)
    }

    /// Stops the work on `node_id`: through its task, or (no task: the
    /// daemon restarted meanwhile) by moving it straight to its failed
    /// state.
    pub async fn abort(&self, node_id: &str) -> Result<(), StoreError> {
        if !self.deploys.abort(node_id) {
            self.shared
                .store
                .transition_bm_node(node_id, Trigger::Abort)
                .await?;
        }
        Ok(())
    }

    /// At start-up: nodes left mid-work by a stop of the daemon go to their
    /// failed state, each with a user message; returns their ids.
    pub async fn fail_interrupted_nodes(&self) -> Result<Vec<String>, StoreError> {
        run::fail_interrupted_nodes(&self.shared).await
    }

    /// What `node` boots when it network-boots now: only a node a task
    /// provisions or inspects, before its deploy is over, boots anything but
    /// its local disk (never a second deploy of an active node).
    pub fn boot_mode(&self, node: &BmNode, cfg: &Config) -> Mode {
        let image = cfg.images.iter().find(|i| i.os_version == node.os_version);
        if !self.deploys.needs_netboot(&node.node_id) {
            return Mode::Local;
        }
        if node.status == BmNodeStatus::Provisioning && image.is_none() {
            tracing::warn!(node_id = %node.node_id, os_version = %node.os_version, "the node is provisioning an os_version the image catalogue lacks: local boot");
        }
        mode_for(node.status, image)
    }

    /// The boot server served `node_id` its boot script.
    pub fn served(&self, node_id: &str) {
        self.deploys.notify(node_id, DeployEvent::BootScript);
    }

    /// The machine behind `mac` fetched `what` (`kernel`, `initrd`, `image`).
    pub async fn fetched(&self, mac: &str, what: &'static str) {
        if let Ok(found) = self
            .shared
            .store
            .nodes_by_pxe_macs(vec![mac.to_string()])
            .await
        {
            if let Some(n) = found.get(mac) {
                self.deploys.notify(&n.node_id, DeployEvent::Fetched(what));
            }
        }
    }

    /// `node_id` (its token already checked) called back with `cb`: an
    /// inventory is kept (with what it says of Secure Boot), and the node's
    /// task (if one runs) hears it. The answer to a deploy ramdisk's
    /// inventory is its plan: the image, and the disk the node's
    /// root-device hints choose among the disks it reported — or why none
    /// can be chosen, which fails the provision at once.
    pub async fn callback(&self, node_id: &str, cb: Callback) -> Result<Reply, StoreError> {
        let mut reply = Reply::Ok;
        let mut after = None;
        if let Callback::Inventory(json) = &cb {
            let store = &self.shared.store;
            store.save_inventory(node_id, json.clone()).await?;
            let raw: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            let seen = inventory::process(&raw);
            if let Some(sb) = seen.secure_boot {
                store
                    .modify_bm_node(node_id, move |n| {
                        n.secure_boot = Some(sb);
                        Ok(())
                    })
                    .await?;
            }
            if self.deploys.needs_netboot(node_id) {
                if let Some(node) = self.node(node_id).await? {
                    let cfg = self.shared.config();
                    let image = cfg.images.iter().find(|i| {
                        i.os_version == node.os_version && i.method == ImageMethod::Image
                    });
                    if node.status == BmNodeStatus::Cleaning {
                        let settings = self.deploys.settings(node_id);
                        let (r, event) = wipe_plan(settings.wipe, &seen.disks);
                        reply = r;
                        after = Some(event);
                    } else if let (BmNodeStatus::Provisioning, Some(image)) = (node.status, image) {
                        let seed = self.seed(&node, image, &cfg).await;
                        let (r, event) = match (self.images.ready(image), seed) {
                            (_, Err(why)) => (
                                Reply::Refused(why.clone()),
                                DeployEvent::Callback(Callback::Failed { message: why }),
                            ),
                            (Some(prepared), Ok(seed)) => {
                                plan(&node, image, &prepared, &seen.disks, seed)
                            }
                            (None, Ok(_)) => {
                                let why = "the image is not prepared (it changed since step0?)";
                                (
                                    Reply::Refused(why.into()),
                                    DeployEvent::Callback(Callback::Failed {
                                        message: why.into(),
                                    }),
                                )
                            }
                        };
                        reply = r;
                        after = Some(event);
                    }
                }
            }
        }
        self.deploys.notify(node_id, DeployEvent::Callback(cb));
        if let Some(event) = after {
            self.deploys.notify(node_id, event);
        }
        Ok(reply)
    }

    /// The cloud-init seed of `node`'s deploy of `image`: the run's SSH keys
    /// and rackboot's own (so CollectNodes logs in with no extra step), its
    /// user data, and the host name asked (else the node's).
    async fn seed(
        &self,
        node: &BmNode,
        image: &ImageConfig,
        cfg: &Config,
    ) -> Result<settings::Seed, String> {
        use crate::foundation::templates::{BootVars, NodeVars, Urls};
        let run = self.deploys.settings(&node.node_id);
        let (address, port) = self
            .shared
            .http_address()
            .unwrap_or_else(|| ("0.0.0.0".to_string(), cfg.http.port));
        let token = self
            .shared
            .store
            .deploy_token(&node.node_id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let urls = Urls {
            address: &address,
            http_port: port,
        };
        let vars = BootVars::new(
            Mode::Deploy,
            &NodeVars::from(node),
            Some(image),
            cfg,
            &urls,
            &token,
        );
        let mut keys = run.ssh_keys.clone();
        let path = crate::service::collect::key_path(&self.shared);
        match tokio::task::spawn_blocking(move || crate::foundation::ssh::load_or_create_key(&path))
            .await
        {
            Ok(Ok(key)) => {
                if let Ok(public) = key.public_key().to_openssh() {
                    keys.push(format!("{} rackboot", public.trim()));
                }
            }
            Ok(Err(e)) => tracing::warn!(
                "rackboot's SSH key: {e}: the installed OS gets only the caller's keys"
            ),
            Err(_) => {}
        }
        let hostname = if run.hostname.is_empty() {
            node.hostname.clone()
        } else {
            run.hostname.clone()
        };
        let instance_id = format!("{}-{}", node.node_id, crate::foundation::ids::now_secs());
        settings::seed(
            &self.shared.templates(),
            &vars,
            &hostname,
            &instance_id,
            &keys,
            &run.user_data,
        )
        .map_err(|e| format!("the cloud-init seed does not render: {e}"))
    }

    async fn node(&self, node_id: &str) -> Result<Option<BmNode>, StoreError> {
        let filter = crate::foundation::store::BmNodeFilter {
            node_ids: vec![node_id.to_string()],
            ..Default::default()
        };
        Ok(self
            .shared
            .store
            .describe_bm_nodes(filter)
            .await?
            .0
            .into_iter()
            .next())
    }

    /// Where `node_id`'s virtual-media ISO is kept while it is deployed.
    pub fn vmedia_iso(&self, node_id: &str) -> std::path::PathBuf {
        self.shared
            .state_dir
            .join("vmedia")
            .join(format!("{node_id}.iso"))
    }

    /// Builds `node`'s virtual-media ISO for `mode` (the deploy ramdisk,
    /// its kernel line rendered from the same templates as the iPXE
    /// script, with its current token and network settings) and returns the
    /// URL its BMC fetches it from.
    pub async fn build_vmedia_iso(&self, node: &BmNode, mode: Mode) -> Result<String, String> {
        use crate::foundation::templates::{BootVars, NodeVars, Urls};
        let cfg = self.shared.config();
        let (address, port) = self
            .shared
            .http_address()
            .ok_or("rackboot's HTTP server is off (set http.address or [dhcp] interface)")?;
        let token = self
            .shared
            .store
            .deploy_token(&node.node_id)
            .await
            .ok()
            .flatten()
            .filter(|t| !t.is_empty())
            .ok_or("the node has no deploy token")?;
        let image = cfg.images.iter().find(|i| i.os_version == node.os_version);
        let urls = Urls {
            address: &address,
            http_port: port,
        };
        let vars = BootVars::new(mode, &NodeVars::from(node), image, &cfg, &urls, &token);
        let templates = self.shared.templates();
        let grub = templates.render("vmedia/grub.cfg", &vars)?;
        let isolinux = templates.render("vmedia/isolinux.cfg", &vars)?;
        for f in [&cfg.deploy.kernel, &cfg.deploy.initrd] {
            if f.starts_with("http://") || f.starts_with("https://") {
                return Err(format!(
                    "{f}: the virtual-media ISO needs [deploy] kernel and initrd as local files"
                ));
            }
        }
        let (kernel, initrd) = (
            std::path::PathBuf::from(&cfg.deploy.kernel),
            std::path::PathBuf::from(&cfg.deploy.initrd),
        );
        let out = self.vmedia_iso(&node.node_id);
        let cache = self.shared.state_dir.join("vmedia");
        let label = node.node_id.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            let spec = crate::service::ramdisk::iso::IsoSpec {
                kernel: &kernel,
                initrd: &initrd,
                grub_cfg: &grub,
                isolinux_cfg: &isolinux,
                label: &label,
            };
            crate::service::ramdisk::iso::build(&spec, &cache, &out)
        })
        .await
        .map_err(|e| format!("the ISO build stopped: {e}"))??;
        tracing::info!(node_id = %node.node_id, ms = started.elapsed().as_millis() as u64, "built the virtual-media ISO");
        Ok(format!(
            "http://{address}:{port}/vmedia/{}/{token}/deploy.iso",
            node.node_id
        ))
    }

    /// Discovery: the unknown machine `mac` network-booted the discovery
    /// script and sent `raw`. While an intake runs, a machine it can join
    /// to a BMC-only node (`foundation::intake`) becomes that node's PXE
    /// MAC and inventory; else see [`inventory::enlist`]. Returns the node
    /// and what happened ("enlisted as", "already registered as", "joined
    /// by intake to").
    pub async fn enlist(
        &self,
        mac: &str,
        raw: &serde_json::Value,
    ) -> Result<(String, &'static str), StoreError> {
        let known = !self
            .shared
            .store
            .nodes_by_pxe_macs(vec![mac.to_string()])
            .await?
            .is_empty();
        if !known && self.shared.intake.active() {
            let serial = raw["system"]["serial"].as_str().unwrap_or("");
            let bmc_mac = raw["bmc"]["mac"].as_str().unwrap_or("");
            if let Some(joined) = self.shared.intake.take(mac, bmc_mac, serial) {
                let m = mac.to_string();
                // The firmware mode it booted the ramdisk in is its boot mode.
                let mode = raw["boot_mode"]
                    .as_str()
                    .and_then(crate::foundation::store::BootMode::parse);
                self.shared
                    .store
                    .modify_bm_node(&joined.node_id, move |n| {
                        n.pxe_mac = m;
                        if let Some(mode) = mode {
                            n.boot_mode = mode;
                        }
                        Ok(())
                    })
                    .await?;
                self.shared
                    .store
                    .save_inventory(&joined.node_id, raw.to_string())
                    .await?;
                inventory::apply(&self.shared.store, &joined.node_id, raw).await?;
                let id = joined.node_id.clone();
                self.shared.intake.report(joined);
                return Ok((id, "joined by intake to"));
            }
            if !self.shared.config().dhcp.discovery {
                // Discovery is on for the intake only: strangers are not enlisted.
                return Err(StoreError::Invalid(format!(
                    "{mac} is not one of the machines the intake powered on (dhcp.discovery is off)"
                )));
            }
        }
        let (id, created) = inventory::enlist(&self.shared.store, mac, raw).await?;
        Ok((
            id,
            if created {
                "enlisted as"
            } else {
                "already registered as"
            },
        ))
    }
}

/// What the boot server answers a callback with.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A plain "ok".
    Ok,
    /// The deploy ramdisk's plan (JSON; see [`plan`]).
    Plan(String),
    /// The deploy cannot go on (the reason; the provision fails with it).
    Refused(String),
}

/// The plan for a deploy ramdisk that reported `disks`: the disk `node`'s
/// root-device hints choose, and `image` as prepared (served by rackboot
/// as `/images/<v>/image`: its data extents, virtual size and digest); and
/// what the node's task hears about the choice.
pub fn plan(
    node: &BmNode,
    image: &ImageConfig,
    prepared: &Prepared,
    disks: &[hints::Disk],
    seed: settings::Seed,
) -> (Reply, DeployEvent) {
    match hints::choose(&node.hints(), disks) {
        Ok((disk, why)) => {
            let body = serde_json::json!({
                "action": "deploy",
                "disk": disk.name,
                "why": why,
                "image": {
                    "path": format!("{}/image", crate::foundation::config::image_path(&image.os_version)),
                    "virtual_size": prepared.virtual_size,
                    "extents": prepared.extents,
                    "data_bytes": prepared.data_bytes,
                    "digest": prepared.digest,
                },
                "first_boot": image.first_boot_callback,
                "seed": seed,
            });
            (
                Reply::Plan(body.to_string()),
                DeployEvent::DiskChosen {
                    disk: disk.name.clone(),
                    why,
                    data_bytes: prepared.data_bytes,
                    virtual_size: prepared.virtual_size,
                },
            )
        }
        Err(no) => {
            let hints = node.hints().describe();
            let found = hints::list(disks);
            (
                Reply::Refused(format!(
                    "no disk for the image: {no}; root_device hints: {hints}; disks found: {found}"
                )),
                DeployEvent::NoDisk {
                    why: no.to_string(),
                    hints,
                    disks: found,
                },
            )
        }
    }
}

/// The plan for a cleaning ramdisk that reported `disks`: wipe them all
/// (`wipe`); no disk at all fails the cleaning, naming that.
pub fn wipe_plan(wipe: Wipe, disks: &[hints::Disk]) -> (Reply, DeployEvent) {
    if disks.is_empty() && wipe != Wipe::None {
        let why = "the ramdisk found no disk to wipe".to_string();
        return (
            Reply::Refused(why.clone()),
            DeployEvent::Callback(Callback::Failed { message: why }),
        );
    }
    let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    let body = serde_json::json!({
        "action": "wipe",
        "disks": if wipe == Wipe::None { Vec::new() } else { names.clone() },
        "how": wipe.as_str(),
    });
    (
        Reply::Plan(body.to_string()),
        DeployEvent::WipePlanned {
            disks: hints::list(disks),
            how: wipe,
        },
    )
}

/// What a node that network-boots in `status` is told to do with `image`
/// (its os_version's catalogue entry), while a task wants it to netboot.
pub fn mode_for(status: BmNodeStatus, image: Option<&ImageConfig>) -> Mode {
    match (status, image) {
        (BmNodeStatus::Provisioning, Some(i)) if i.method == ImageMethod::Installer => {
            Mode::Install
        }
        (BmNodeStatus::Provisioning, Some(_)) => Mode::Deploy,
        (BmNodeStatus::Inspecting, _) => Mode::Inspect,
        (BmNodeStatus::Cleaning, _) => Mode::Clean,
        _ => Mode::Local,
    }
}

/// Something a node under provision did, as the HTTP boot server saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployEvent {
    /// Its iPXE script (deploy, install or inspect) was served.
    BootScript,
    /// It fetched a file: `kernel`, `initrd` or `image`.
    Fetched(&'static str),
    /// It called back.
    Callback(Callback),
    /// Its root-device hints chose `disk` among those its ramdisk
    /// reported; `data_bytes` of the image's `virtual_size` travel.
    DiskChosen {
        disk: String,
        why: String,
        data_bytes: u64,
        virtual_size: u64,
    },
    /// A cleaning ramdisk was told to wipe `disks` (`how`).
    WipePlanned { disks: String, how: Wipe },
    /// No disk could be chosen (`why`), with the hints and the disks found.
    NoDisk {
        why: String,
        hints: String,
        disks: String,
    },
}

/// What a provision task listens to.
pub struct Watch {
    pub events: mpsc::UnboundedReceiver<DeployEvent>,
    pub cancel: CancellationToken,
}

struct Entry {
    events: mpsc::UnboundedSender<DeployEvent>,
    /// What this run was asked for beyond the node's record.
    settings: Arc<DeploySettings>,
    cancel: CancellationToken,
    /// The deploy has ended (step4 on): a network boot gets the local disk.
    deployed: bool,
}

/// The nodes being provisioned or inspected right now, by node id.
#[derive(Default)]
struct Registry {
    nodes: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    /// Starts listening for `node_id` (replacing an older listener).
    pub fn watch(&self, node_id: &str, settings: DeploySettings) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        self.lock().insert(
            node_id.to_string(),
            Entry {
                settings: Arc::new(settings),
                events: tx,
                cancel: cancel.clone(),
                deployed: false,
            },
        );
        Watch { events: rx, cancel }
    }

    /// Stops listening for `node_id`.
    pub fn forget(&self, node_id: &str) {
        self.lock().remove(node_id);
    }

    /// Passes `event` to the task working on `node_id`, if any.
    pub fn notify(&self, node_id: &str, event: DeployEvent) {
        if let Some(e) = self.lock().get(node_id) {
            let _ = e.events.send(event);
        }
    }

    /// Asks the task working on `node_id` to stop; whether there was one.
    pub fn abort(&self, node_id: &str) -> bool {
        match self.lock().get(node_id) {
            Some(e) => {
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Marks `node_id`'s deploy as over: from now on it boots its disk.
    pub fn set_deployed(&self, node_id: &str) {
        if let Some(e) = self.lock().get_mut(node_id) {
            e.deployed = true;
        }
    }

    /// Whether `node_id` should network-boot its deploy now: a task works
    /// on it and has not finished the deploy.
    pub fn needs_netboot(&self, node_id: &str) -> bool {
        self.lock().get(node_id).is_some_and(|e| !e.deployed)
    }

    /// Whether a task works on `node_id`.
    pub fn is_running(&self, node_id: &str) -> bool {
        self.lock().contains_key(node_id)
    }

    /// The settings of the run on `node_id` (defaults when none runs).
    pub fn settings(&self, node_id: &str) -> Arc<DeploySettings> {
        self.lock()
            .get(node_id)
            .map(|e| e.settings.clone())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_provisioning_and_inspecting_nodes_boot_anything_but_their_disk() {
        let cfg = Config::parse("[[images]]\nos_version = \"tiny\"\nfile = \"/x.raw\"\n[[images]]\nos_version = \"inst\"\nmethod = \"installer\"\nurl = \"http://m/\"\nkernel = \"/k\"\ninitrd = \"/i\"\ntemplate = \"kickstart\"\n").unwrap();
        let (tiny, inst) = (Some(&cfg.images[0]), Some(&cfg.images[1]));
        assert_eq!(mode_for(BmNodeStatus::Provisioning, tiny), Mode::Deploy);
        assert_eq!(mode_for(BmNodeStatus::Provisioning, inst), Mode::Install);
        assert_eq!(mode_for(BmNodeStatus::Provisioning, None), Mode::Local);
        assert_eq!(mode_for(BmNodeStatus::Inspecting, None), Mode::Inspect);
        assert_eq!(mode_for(BmNodeStatus::Cleaning, tiny), Mode::Clean);
        for s in BmNodeStatus::ALL {
            if !matches!(
                s,
                BmNodeStatus::Provisioning | BmNodeStatus::Inspecting | BmNodeStatus::Cleaning
            ) {
                assert_eq!(mode_for(s, tiny), Mode::Local, "{s:?}");
            }
        }
    }
}
