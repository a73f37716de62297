//! ScanBMNodes (seed 002 §2.8): discovers BMCs on a range of addresses (or
//! re-scans registered nodes) and registers or updates them. The job's
//! steps: step0 probe sweep — IPMI's Get Channel Authentication
//! Capabilities (which every IPMI 2.0 BMC answers without a session) and/or
//! Redfish's unauthenticated service root (`GET /redfish/v1`, HTTPS on
//! 443 by default); bounded concurrency and rate, one short timeout per
//! probe —, step1 login with the given or configured credentials, step2
//! Device ID, FRU (brand, serial) and power state, or the Redfish systems
//! (one node each), step3 register new BMCs (status `new`, PXE MAC unknown;
//! a host answering both protocols once, as Redfish, which the log says)
//! and update known ones; with `intake`, step4 joins each BMC without a
//! PXE MAC to its machine (see [`intake`]). Only the given addresses are
//! ever contacted.

use crate::foundation::config::ScanCredentials;
use crate::foundation::ids::{new_id, now_secs, JOB_PREFIX, NODE_PREFIX};
use crate::foundation::ipmi::client::{probe, BmcError, Session, Target, Timing};
use crate::foundation::ipmi::commands::{self, FruInfo};
use crate::foundation::ipmi::session::Credentials;
use crate::foundation::redfish::client::{self as rf, RedfishError};
use crate::foundation::redfish::wire::{Inventory, System};
use crate::foundation::redfish::BmcUrl;
use crate::foundation::shared::Shared;
use crate::foundation::store::{
    BmNode, BmNodeFilter, Job, JobNode, JobStatus, PowerState, StoreError,
};
use crate::service::power::{Power, PowerError};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Most addresses one scan may cover.
pub const MAX_ADDRESSES: u32 = 4096;

/// What one BMC told us.
#[derive(Debug, Clone)]
struct Found {
    addr: SocketAddr,
    creds: ScanCredentials,
    power_on: bool,
    fru: Option<FruInfo>,
    /// Found over Redfish: the system's address (one node per system).
    redfish: Option<BmcUrl>,
}

impl Found {
    fn host(&self) -> IpAddr {
        self.addr.ip()
    }
    fn label(&self) -> String {
        match &self.redfish {
            Some(u) => u.to_string(),
            None => self.addr.to_string(),
        }
    }
}

/// A scan as requested, checked.
pub struct Plan {
    /// IPMI endpoints to probe (empty: no IPMI).
    pub addresses: Vec<SocketAddr>,
    /// Redfish services to probe (`redfish://host:port`, or a registered
    /// node's own address when re-scanning).
    pub redfish: Vec<BmcUrl>,
    /// Verify the Redfish services' certificates (system roots +
    /// `redfish.ca_file`); 0 for self-signed BMCs.
    pub verify_tls: bool,
    /// Credentials to try, in order (per host when re-scanning nodes).
    pub credentials: Vec<ScanCredentials>,
    pub per_node: HashMap<IpAddr, ScanCredentials>,
    /// Known node per address (re-scan).
    pub known: Vec<String>,
    /// Zero-touch intake of the BMCs found without a PXE MAC (step4).
    pub intake: bool,
}

/// The scan service.
pub struct Scanner {
    shared: Arc<Shared>,
    power: Arc<Power>,
}

impl Scanner {
    pub fn new(shared: Arc<Shared>, power: Arc<Power>) -> Scanner {
        Scanner { shared, power }
    }

    /// Starts a ScanBMNodes job for `plan`; returns the job.
    pub async fn start(
        self: &Arc<Self>,
        plan: Plan,
        user_id: &str,
        request_id: &str,
    ) -> Result<Job, StoreError> {
        let job = self
            .shared
            .store
            .create_job(
                new_id(JOB_PREFIX),
                "ScanBMNodes",
                plan.known.clone(),
                user_id,
                request_id,
            )
            .await?;
        let job_id = job.job_id.clone();
        let runner = self.clone();
        crate::service::jobs::spawn(
            &self.shared.tasks,
            self.shared.store.clone(),
            job_id.clone(),
            async move { run(&runner, &job_id, plan).await },
        );
        Ok(job)
    }
}

async fn run(sc: &Arc<Scanner>, job_id: &str, plan: Plan) -> Result<(), StoreError> {
    let store = &sc.shared.store;
    let cfg = sc.shared.config().scan.clone();
    let mut hosts: HashSet<IpAddr> = plan.addresses.iter().map(|a| a.ip()).collect();
    hosts.extend(
        plan.redfish
            .iter()
            .filter_map(|u| u.host.parse::<IpAddr>().ok()),
    );
    let total = hosts.len();
    let protocols = match (plan.addresses.is_empty(), plan.redfish.is_empty()) {
        (false, false) => "IPMI and Redfish",
        (false, true) => "IPMI",
        _ => "Redfish",
    };
    store
        .append_job_log(
            job_id,
            format!("step0: probing {total} address(es) ({protocols})"),
        )
        .await?;

    // step0: probe sweep, bounded in concurrency and rate.
    let gate = Arc::new(Semaphore::new(cfg.concurrency));
    let timing = Timing {
        timeout: Duration::from_millis(cfg.probe_timeout_ms),
        attempts: 1,
    };
    let gap = Duration::from_secs_f64(1.0 / f64::from(cfg.rate));
    let mut probes = JoinSet::new();
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for addr in plan.addresses.clone() {
        tick.tick().await;
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        probes.spawn(async move {
            let alive = probe(addr, timing).await.is_ok();
            drop(permit);
            (addr, alive)
        });
    }
    // The Redfish probes: an unauthenticated GET of the service root.
    let (tls, timing) = sc.power.controller.redfish_settings();
    let probe_timeout =
        Duration::from_millis(cfg.probe_timeout_ms).max(timing.timeout.min(Duration::from_secs(2)));
    let mut rf_probes = JoinSet::new();
    for url in plan.redfish.clone() {
        tick.tick().await;
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        let (tls, verify) = (tls.clone(), plan.verify_tls);
        rf_probes.spawn(async move {
            let r = rf::probe(&url, &tls, verify, probe_timeout).await;
            drop(permit);
            (url, r)
        });
    }
    let mut alive = Vec::new();
    while let Some(r) = probes.join_next().await {
        if let Ok((addr, true)) = r {
            alive.push(addr);
        }
    }
    alive.sort();
    let mut rf_alive = Vec::new();
    while let Some(r) = rf_probes.join_next().await {
        let Ok((url, r)) = r else { continue };
        match r {
            Ok(_) => rf_alive.push(url),
            // A TLS failure is a Redfish BMC we cannot trust yet: say why.
            Err(e @ RedfishError::Tls { .. }) => {
                store
                    .append_job_log(job_id, format!("{url}: {e}; not registered"))
                    .await?;
            }
            Err(_) => {}
        }
    }
    rf_alive.sort_by_key(|u| u.to_string());
    let mut answered: HashSet<IpAddr> = alive.iter().map(|a| a.ip()).collect();
    answered.extend(
        rf_alive
            .iter()
            .filter_map(|u| u.host.parse::<IpAddr>().ok()),
    );
    let unreachable = total - answered.len();
    store
        .set_job_status(
            job_id,
            JobStatus::Step(1),
            Some(format!(
                "step1: {} BMC(s) answered ({} IPMI, {} Redfish); logging in",
                answered.len(),
                alive.len(),
                rf_alive.len()
            )),
        )
        .await?;

    // step1 + step2: login with each credential in turn, then inventory in
    // the same session; Redfish first, so that a host answering both is
    // registered once, as Redfish.
    let creds_for = |host: IpAddr| match plan.per_node.get(&host) {
        Some(c) => vec![c.clone()],
        None => plan.credentials.clone(),
    };
    let mut found = Vec::new();
    let mut auth_failed = 0;
    let mut as_redfish: HashSet<IpAddr> = HashSet::new();
    let mut rf_logins = JoinSet::new();
    for url in rf_alive.clone() {
        let sc = sc.clone();
        let creds = url
            .host
            .parse::<IpAddr>()
            .map(creds_for)
            .unwrap_or_else(|_| plan.credentials.clone());
        let verify = plan.verify_tls;
        rf_logins.spawn(async move {
            let r = redfish_login_and_inventory(&sc, &url, verify, &creds).await;
            (url, r)
        });
    }
    let ipmi_hosts: HashSet<IpAddr> = alive.iter().map(|a| a.ip()).collect();
    while let Some(r) = rf_logins.join_next().await {
        let Ok((url, result)) = r else { continue };
        match result {
            Ok(systems) => {
                if let Ok(host) = url.host.parse::<IpAddr>() {
                    as_redfish.insert(host);
                    if ipmi_hosts.contains(&host) {
                        tracing::info!(%host, "the BMC answers IPMI and Redfish: registered as Redfish");
                        store
                            .append_job_log(
                                job_id,
                                format!("{host}: answers IPMI and Redfish; using Redfish"),
                            )
                            .await?;
                    }
                }
                found.extend(systems);
            }
            Err(e) => {
                let (_, _, detail) = super::power::classify(&e);
                let host = url.host.parse::<IpAddr>().ok();
                if host.is_some_and(|h| ipmi_hosts.contains(&h)) {
                    store
                        .append_job_log(job_id, format!("{url}: {detail}; trying IPMI"))
                        .await?;
                } else {
                    auth_failed += 1;
                    store
                        .append_job_log(job_id, format!("{url}: {detail}; not registered"))
                        .await?;
                }
            }
        }
    }
    let mut logins = JoinSet::new();
    for addr in alive
        .clone()
        .into_iter()
        .filter(|a| !as_redfish.contains(&a.ip()))
    {
        let sc = sc.clone();
        let creds = creds_for(addr.ip());
        logins.spawn(async move { (addr, login_and_inventory(&sc, addr, &creds).await) });
    }
    while let Some(r) = logins.join_next().await {
        let Ok((addr, result)) = r else { continue };
        match result {
            Ok(f) => found.push(f),
            Err(e) => {
                auth_failed += 1;
                let (_, _, detail) = super::power::classify(&e);
                store
                    .append_job_log(job_id, format!("{addr}: {detail}; not registered"))
                    .await?;
            }
        }
    }
    found.sort_by_key(|f| f.label());
    store
        .set_job_status(
            job_id,
            JobStatus::Step(2),
            Some(format!("step2: read {} BMC(s)", found.len())),
        )
        .await?;

    // step3: register the new, update the known.
    store
        .set_job_status(job_id, JobStatus::Step(3), None)
        .await?;
    let (registered, updated) = register(sc, job_id, &found, plan.verify_tls).await?;
    let mut summary = format!(
        "found {}, registered {registered}, updated {updated}, auth failed {auth_failed}, unreachable {unreachable}",
        answered.len()
    );
    if plan.intake {
        store
            .set_job_status(job_id, JobStatus::Step(4), None)
            .await?;
        let (joined, failed) = intake(sc, job_id, &found).await?;
        summary.push_str(&format!(", intake joined {joined}, not joined {failed}"));
        if failed > 0 {
            return store
                .set_job_status(job_id, JobStatus::Failed, Some(summary))
                .await;
        }
    }
    store
        .set_job_status(job_id, JobStatus::Successful, Some(summary))
        .await
}

/// How long the intake waits for a machine powered into the discovery
/// ramdisk to call back, beyond `provision.boot_timeout`.
const INTAKE_EXTRA_WAIT: Duration = Duration::from_secs(120);

/// Step4 of a scan with `intake`: every node of a BMC found whose PXE MAC
/// is unknown (and that no work holds) is powered on into the discovery
/// ramdisk (PXE once) and joined to the machine that calls back — first
/// all at once, by system serial (DMI) = FRU serial, then the rest one at a
/// time, by order — then powered off and `ready`. Returns (joined, not
/// joined).
async fn intake(
    sc: &Arc<Scanner>,
    job_id: &str,
    found: &[Found],
) -> Result<(usize, usize), StoreError> {
    use crate::foundation::intake::{Candidate, Round};
    use crate::foundation::ipmi::commands::{BootDevice, BootSetting};
    use crate::foundation::states::Trigger;
    use crate::foundation::store::BootMode;
    use crate::service::power::PowerOp;
    let store = &sc.shared.store;
    let (nodes, _) = store.describe_bm_nodes(BmNodeFilter::default()).await?;
    let ipmi: HashSet<(String, u16)> = found
        .iter()
        .filter(|f| f.redfish.is_none())
        .map(|f| (f.addr.ip().to_string(), f.addr.port()))
        .collect();
    let redfish: HashSet<String> = found
        .iter()
        .filter_map(|f| f.redfish.as_ref().map(|u| u.endpoint()))
        .collect();
    let mut waiting: Vec<BmNode> = nodes
        .into_iter()
        .filter(|n| {
            n.pxe_mac.is_empty()
                && !n.status.is_busy()
                && if n.bmc_address.is_empty() {
                    ipmi.contains(&(n.ipmi_address.clone(), n.ipmi_port))
                } else {
                    redfish.contains(&n.bmc_endpoint())
                }
        })
        .collect();
    waiting.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    if waiting.is_empty() {
        store
            .append_job_log(
                job_id,
                "step4: intake: every BMC found has its PXE MAC".to_string(),
            )
            .await?;
        return Ok((0, 0));
    }
    let (tx, mut joins) = tokio::sync::mpsc::unbounded_channel();
    // Each IPMI BMC's own LAN MAC: what the machine reads in-band.
    let mut candidates: Vec<Candidate> = Vec::new();
    for n in &waiting {
        let bmc_mac = match sc.power.controller.ipmi_target(n) {
            Ok(t) if n.bmc_address.is_empty() => sc
                .power
                .controller
                .with_session(&t, async |s: &mut Session| Ok(commands::lan_mac(s).await))
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            _ => String::new(),
        };
        candidates.push(Candidate {
            node_id: n.node_id.clone(),
            serial: n.serial_number.clone(),
            bmc_mac,
        });
    }
    if !sc.shared.intake.open(Round {
        candidates: candidates.clone(),
        alone: None,
        joined: tx,
    }) {
        store
            .append_job_log(
                job_id,
                "step4: intake skipped: another scan's intake runs; run this one again when it ends".to_string(),
            )
            .await?;
        return Ok((0, waiting.len()));
    }
    struct Close<'a>(&'a Shared);
    impl Drop for Close<'_> {
        fn drop(&mut self) {
            self.0.intake.close();
        }
    }
    let _close = Close(&sc.shared);
    let started = std::time::Instant::now();
    let wait = Duration::from_secs(sc.shared.config().provision.boot_timeout) + INTAKE_EXTRA_WAIT;
    // At once: the nodes whose BMC MAC or FRU serial no other candidate
    // shares.
    let unique = |n: &BmNode| {
        let me = candidates
            .iter()
            .find(|c| c.node_id == n.node_id)
            .expect("every waiting node is a candidate");
        let bmc = !me.bmc_mac.is_empty()
            && candidates
                .iter()
                .filter(|c| c.bmc_mac.eq_ignore_ascii_case(&me.bmc_mac))
                .count()
                == 1;
        let serial = !me.serial.trim().is_empty()
            && candidates
                .iter()
                .filter(|c| c.serial.trim().eq_ignore_ascii_case(me.serial.trim()))
                .count()
                == 1;
        bmc || serial
    };
    let in_band = candidates.iter().filter(|c| !c.bmc_mac.is_empty()).count();
    let (by_serial, mut by_order): (Vec<BmNode>, Vec<BmNode>) =
        waiting.iter().cloned().partition(|n| unique(n));
    store
        .append_job_log(
            job_id,
            format!(
                "step4: intake of {} node(s) without a PXE MAC: {} at once (by the BMC's LAN MAC read in-band, {in_band} BMC(s) report one; or FRU serial = the system's DMI serial), {} one at a time; discovery answers are on meanwhile",
                waiting.len(),
                by_serial.len(),
                by_order.len()
            ),
        )
        .await?;
    let power = |n: BmNode, op: PowerOp| {
        let p = sc.power.clone();
        async move { p.run_on(&n, op).await }
    };
    let pxe_once = |n: &BmNode| {
        PowerOp::SetBoot(BootSetting {
            device: BootDevice::Pxe,
            persistent: false,
            efi: n.boot_mode == BootMode::Uefi,
        })
    };
    let mut joined_ids: Vec<String> = Vec::new();
    let mut not_joined: Vec<(BmNode, String)> = Vec::new();
    // Records a join: power off, ready, a log line.
    let finish = |n: BmNode, j: crate::foundation::intake::Joined| {
        let (store, power) = (store.clone(), sc.power.clone());
        let job_id = job_id.to_string();
        async move {
            let _ = power.run_on(&n, PowerOp::Off { hard: true }).await;
            if n.status == crate::foundation::store::BmNodeStatus::New {
                store
                    .transition_bm_node(&n.node_id, Trigger::Verify)
                    .await?;
                store
                    .transition_bm_node(&n.node_id, Trigger::Verified)
                    .await?;
            }
            let line = format!(
                "joined {} ({}) to the machine with PXE MAC {} {}; inventory kept, powered off, ready",
                n.node_id, n.hostname, j.mac, j.by
            );
            store
                .set_job_node(
                    &job_id,
                    JobNode {
                        node_id: n.node_id.clone(),
                        status: "joined".into(),
                        progress: 100,
                        ret_code: 0,
                        message: String::new(),
                    },
                    Some(line),
                )
                .await
        }
    };
    // Phase 1: all serial candidates at once.
    let mut powered: Vec<BmNode> = Vec::new();
    for n in by_serial {
        let set = power(n.clone(), pxe_once(&n)).await;
        let on = match set {
            Ok(_) => power(n.clone(), PowerOp::Cycle).await,
            Err(e) => Err(e),
        };
        match on {
            Ok(_) => powered.push(n),
            Err(e) => not_joined.push((n, format!("its BMC refused the PXE boot: {e}"))),
        }
    }
    let phase1 = tokio::time::Instant::now();
    let mut deadline = phase1 + wait;
    while !powered.is_empty() {
        // One machine left: whatever calls in now is it (its serial did
        // not match; the ramdisk retries its callback for ~8 s).
        if powered.len() == 1 {
            sc.shared.intake.set_alone(Some(powered[0].node_id.clone()));
        }
        match tokio::time::timeout_at(deadline, joins.recv()).await {
            Ok(Some(j)) => {
                // Machines powered on together boot in about the same time:
                // after the first, the others get twice that (at least 60 s).
                let first = phase1.elapsed() * 2;
                deadline =
                    deadline.min(tokio::time::Instant::now() + first.max(Duration::from_secs(60)));
                if let Some(i) = powered.iter().position(|n| n.node_id == j.node_id) {
                    let n = powered.remove(i);
                    joined_ids.push(n.node_id.clone());
                    finish(n, j).await?;
                } else if let Some(i) = by_order.iter().position(|n| n.node_id == j.node_id) {
                    let n = by_order.remove(i);
                    joined_ids.push(n.node_id.clone());
                    finish(n, j).await?;
                }
            }
            _ => break,
        }
    }
    sc.shared.intake.set_alone(None);
    // Those whose machine did not call back with their serial: off, then
    // one at a time.
    for n in powered.drain(..) {
        let _ = power(n.clone(), PowerOp::Off { hard: true }).await;
        by_order.push(n);
    }
    // Phase 2: one at a time; whatever enlists is the one powered on.
    for n in by_order {
        if joined_ids.contains(&n.node_id) {
            continue;
        }
        sc.shared.intake.set_alone(Some(n.node_id.clone()));
        let on = match power(n.clone(), pxe_once(&n)).await {
            Ok(_) => power(n.clone(), PowerOp::Cycle).await,
            Err(e) => Err(e),
        };
        if let Err(e) = on {
            not_joined.push((n, format!("its BMC refused the PXE boot: {e}")));
            continue;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut done = false;
        while let Ok(Some(j)) = tokio::time::timeout_at(deadline, joins.recv()).await {
            if j.node_id == n.node_id {
                joined_ids.push(n.node_id.clone());
                finish(n.clone(), j).await?;
                done = true;
                break;
            }
        }
        sc.shared.intake.set_alone(None);
        if !done {
            let _ = power(n.clone(), PowerOp::Off { hard: true }).await;
            not_joined.push((
                n,
                format!(
                    "no machine called back from the discovery ramdisk within {} s of its power-on: check that it network-boots from a NIC on rackboot's network (DescribeBootEvents of its MACs), then scan again with intake",
                    wait.as_secs()
                ),
            ));
        }
    }
    for (n, why) in &not_joined {
        store
            .set_job_node(
                job_id,
                JobNode {
                    node_id: n.node_id.clone(),
                    status: "not_joined".into(),
                    progress: 100,
                    ret_code: crate::foundation::errors::RetCode::ProvisionNoNetboot.code(),
                    message: format!(
                        "Node {} was not joined to a machine: {why}. It stays without a PXE MAC.",
                        n.node_id
                    ),
                },
                Some(format!("not joined {} ({}): {why}", n.node_id, n.hostname)),
            )
            .await?;
    }
    store
        .append_job_log(
            job_id,
            format!(
                "step4: intake done in {:.0} s: {} joined, {} not joined",
                started.elapsed().as_secs_f64(),
                joined_ids.len(),
                not_joined.len()
            ),
        )
        .await?;
    Ok((joined_ids.len(), not_joined.len()))
}

async fn login_and_inventory(
    sc: &Scanner,
    addr: SocketAddr,
    creds: &[ScanCredentials],
) -> Result<Found, PowerError> {
    let mut last = PowerError::Bmc(BmcError::NoCipherSuite);
    for c in creds {
        let target = Target {
            addr,
            creds: Credentials {
                user: c.username.clone(),
                password: c.password.clone(),
                bmc_key: None,
                privilege: sc.power.controller.privilege(),
            },
            suite: None,
        };
        let result = sc
            .power
            .controller
            .with_session(&target, async |s: &mut Session| {
                let power_on = commands::power_is_on(s).await?;
                let mut fru = commands::read_fru(s).await.unwrap_or(None);
                if fru.as_ref().is_none_or(|f| f.brand().is_empty()) {
                    // No FRU brand: name the maker from Get Device ID.
                    if let Ok((_, iana, _)) = commands::device_id(s).await {
                        if let Some(brand) = commands::brand_of_manufacturer(iana) {
                            fru.get_or_insert_with(FruInfo::default)
                                .product_manufacturer = brand.into();
                        }
                    }
                }
                Ok((power_on, fru))
            })
            .await;
        match result {
            Ok((power_on, fru)) => {
                return Ok(Found {
                    addr,
                    creds: c.clone(),
                    power_on,
                    fru,
                    redfish: None,
                })
            }
            // Wrong user or password: try the next credentials.
            Err(e @ PowerError::Bmc(BmcError::Auth(_))) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Logs in to the Redfish service at `url` (each credential in turn) and
/// reads every system it lists (or the one its path names): one [`Found`]
/// each, with its power state, maker and serial number.
async fn redfish_login_and_inventory(
    sc: &Scanner,
    url: &BmcUrl,
    verify_tls: bool,
    creds: &[ScanCredentials],
) -> Result<Vec<Found>, PowerError> {
    let mut last = PowerError::Redfish(RedfishError::Auth("no credentials to try".into()));
    let host: IpAddr = url
        .host
        .parse()
        .map_err(|_| PowerError::BadAddress(url.host.clone()))?;
    for c in creds {
        let target = rf::Target {
            url: url.clone(),
            user: c.username.clone(),
            password: c.password.clone(),
            verify_tls,
        };
        let result = sc
            .power
            .controller
            .with_redfish(&target, async |s: &mut rf::Session| {
                let paths = match &url.system {
                    Some(p) => vec![p.clone()],
                    None => crate::service::power::redfish::systems(s).await?,
                };
                let mut out = Vec::new();
                for p in paths {
                    let v = s.get(&p).await?.body;
                    out.push((p, System::parse(&v).power_on, Inventory::from_system(&v)));
                }
                Ok(out)
            })
            .await;
        match result {
            Ok(systems) => {
                return Ok(systems
                    .into_iter()
                    .map(|(path, power, inv)| Found {
                        addr: SocketAddr::new(host, url.port),
                        creds: c.clone(),
                        power_on: power.unwrap_or(false),
                        fru: Some(FruInfo {
                            product_manufacturer: inv.manufacturer,
                            product_serial: inv.serial_number,
                            ..Default::default()
                        }),
                        redfish: Some(BmcUrl {
                            system: Some(path),
                            ..url.clone()
                        }),
                    })
                    .collect())
            }
            Err(e @ PowerError::Redfish(RedfishError::Auth(_))) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// "Dell Inc. CN7016, " (what the FRU said), or nothing.
fn machine_text(brand: &str, serial: &str) -> String {
    let text = format!("{brand} {serial}");
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("{text}, ")
    }
}

fn hostname_for(pattern: &str, addr: SocketAddr, usual_port: u16) -> String {
    let ip = addr.ip().to_string().replace(['.', ':'], "-");
    let mut name = pattern
        .replace("{ip}", &ip)
        .replace("{port}", &addr.port().to_string());
    if !pattern.contains("{port}") && addr.port() != usual_port {
        name = format!("{name}-{}", addr.port());
    }
    name.to_ascii_lowercase()
}

/// The host name of a node found by a scan: the pattern, and for one of
/// several Redfish systems behind one BMC, the system's id.
fn hostname_of(pattern: &str, f: &Found, systems_on_host: usize) -> String {
    let Some(url) = &f.redfish else {
        return hostname_for(pattern, f.addr, 623);
    };
    let base = hostname_for(pattern, f.addr, if url.tls { 443 } else { 80 });
    if systems_on_host < 2 {
        return base;
    }
    let id: String = url
        .system
        .as_deref()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{base}-{}", id.trim_matches('-'))
}

async fn register(
    sc: &Arc<Scanner>,
    job_id: &str,
    found: &[Found],
    verify_tls: bool,
) -> Result<(usize, usize), StoreError> {
    let (nodes, _) = sc
        .shared
        .store
        .describe_bm_nodes(BmNodeFilter::default())
        .await?;
    let by_addr: HashMap<(String, u16), BmNode> = nodes
        .iter()
        .filter(|n| n.bmc_address.is_empty())
        .map(|n| ((n.ipmi_address.clone(), n.ipmi_port), n.clone()))
        .collect();
    let by_endpoint: HashMap<String, BmNode> = nodes
        .iter()
        .filter(|n| !n.bmc_address.is_empty())
        .map(|n| (n.bmc_endpoint(), n.clone()))
        .collect();
    // A host known under one driver is the same machine under the other.
    let by_host: HashMap<String, BmNode> = nodes
        .iter()
        .filter_map(|n| n.bmc_url().map(|u| (u.host, n.clone())))
        .collect();
    let mut systems_on_host: HashMap<IpAddr, usize> = HashMap::new();
    for f in found.iter().filter(|f| f.redfish.is_some()) {
        *systems_on_host.entry(f.host()).or_default() += 1;
    }
    let mut hostnames: HashSet<String> = nodes.iter().map(|n| n.hostname.clone()).collect();
    let pattern = sc.shared.config().scan.hostname_pattern.clone();
    let now = now_secs();
    let mut new_nodes = Vec::new();
    let mut updated = 0;
    for f in found {
        let (brand, serial) = f
            .fru
            .as_ref()
            .map(|fru| (fru.brand().to_string(), fru.serial().to_string()))
            .unwrap_or_default();
        let power = if f.power_on {
            PowerState::On
        } else {
            PowerState::Off
        };
        let power_text = if f.power_on { "on" } else { "off" };
        let host = f.host().to_string();
        let known = match &f.redfish {
            Some(u) => by_endpoint.get(&u.endpoint()).or_else(|| {
                (systems_on_host.get(&f.host()).copied().unwrap_or(0) < 2)
                    .then(|| by_host.get(&host))
                    .flatten()
            }),
            // Another IPMI port on the same host is another BMC (lab
            // simulators, chassis managers); a Redfish node on the host is
            // the same machine.
            None => by_addr
                .get(&(host.clone(), f.addr.port()))
                .or_else(|| by_host.get(&host).filter(|n| !n.bmc_address.is_empty())),
        };
        if let Some(known) = known {
            let (b, s) = (brand.clone(), serial.clone());
            sc.shared
                .store
                .modify_bm_node(&known.node_id, move |n| {
                    if !b.is_empty() {
                        n.brand = b;
                    }
                    if !s.is_empty() {
                        n.serial_number = s;
                    }
                    Ok(())
                })
                .await?;
            sc.shared
                .store
                .record_power_state(&known.node_id, power, now)
                .await?;
            updated += 1;
            let line = format!(
                "updated {} ({}) at {}: {}power {power_text}",
                known.node_id,
                known.hostname,
                f.label(),
                machine_text(&brand, &serial)
            );
            let share = JobNode {
                node_id: known.node_id.clone(),
                status: "updated".into(),
                progress: 100,
                ret_code: 0,
                message: String::new(),
            };
            sc.shared
                .store
                .set_job_node(job_id, share, Some(line))
                .await?;
            continue;
        }
        let base = hostname_of(
            &pattern,
            f,
            systems_on_host.get(&f.host()).copied().unwrap_or(0),
        );
        let mut hostname = base.clone();
        let mut n = 2;
        while !hostnames.insert(hostname.clone()) {
            hostname = format!("{base}-{n}");
            n += 1;
        }
        new_nodes.push(BmNode {
            node_id: new_id(NODE_PREFIX),
            hostname,
            cpu_arch: "x86_64".into(),
            serial_number: serial,
            brand,
            description: "found by ScanBMNodes".into(),
            ipmi_address: if f.redfish.is_some() {
                String::new()
            } else {
                f.addr.ip().to_string()
            },
            ipmi_port: if f.redfish.is_some() {
                623
            } else {
                f.addr.port()
            },
            ipmi_username: f.creds.username.clone(),
            ipmi_password: f.creds.password.clone(),
            power_state: power,
            power_state_time: Some(now),
            create_time: now,
            update_time: now,
            bmc_address: f
                .redfish
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_default(),
            bmc_verify_tls: verify_tls,
            ..BmNode::blank()
        });
    }
    let registered = new_nodes.len();
    sc.shared.store.insert_bm_nodes(new_nodes.clone()).await?;
    // Redfish nodes: their out-of-band inventory (NICs, drives) follows.
    sc.power.inventory_in_background(new_nodes.clone());
    for n in &new_nodes {
        let line = format!(
            "registered {} ({}) at {}: {}power {}",
            n.node_id,
            n.hostname,
            n.bmc_url().map(|u| u.to_string()).unwrap_or_default(),
            machine_text(&n.brand, &n.serial_number),
            n.power_state.as_str()
        );
        let share = JobNode {
            node_id: n.node_id.clone(),
            status: "registered".into(),
            progress: 100,
            ret_code: 0,
            message: String::new(),
        };
        sc.shared
            .store
            .set_job_node(job_id, share, Some(line))
            .await?;
    }
    Ok((registered, updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_the_pattern_and_name_odd_ports() {
        let a: SocketAddr = "10.0.0.5:623".parse().unwrap();
        assert_eq!(hostname_for("bmc-{ip}", a, 623), "bmc-10-0-0-5");
        let b: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(hostname_for("bmc-{ip}", b, 623), "bmc-127-0-0-1-9100");
        assert_eq!(hostname_for("r1-{ip}-{port}", b, 623), "r1-127-0-0-1-9100");
        let f = Found {
            addr: "10.0.0.5:443".parse().unwrap(),
            creds: ScanCredentials {
                username: "u".into(),
                password: "p".into(),
            },
            power_on: false,
            fru: None,
            redfish: Some(BmcUrl::parse("redfish://10.0.0.5/redfish/v1/Systems/Node_1").unwrap()),
        };
        assert_eq!(hostname_of("bmc-{ip}", &f, 1), "bmc-10-0-0-5");
        assert_eq!(hostname_of("bmc-{ip}", &f, 3), "bmc-10-0-0-5-node-1");
    }
}
