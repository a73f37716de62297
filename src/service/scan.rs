//! ScanBMNodes (seed 002 §2.8): discovers BMCs on a range of addresses (or
//! re-scans registered nodes) and registers or updates them. The job's
//! steps: step0 probe sweep (Get Channel Authentication Capabilities, which
//! every IPMI 2.0 BMC answers without a session; bounded concurrency and
//! rate, one short timeout per address), step1 login with the given or
//! configured credentials, step2 Device ID, FRU (brand, serial) and power
//! state, step3 register new BMCs (status `new`, PXE MAC unknown) and update
//! known ones. Only the given addresses are ever contacted.

use crate::foundation::config::ScanCredentials;
use crate::foundation::ids::{new_id, now_secs, JOB_PREFIX, NODE_PREFIX};
use crate::foundation::ipmi::client::{probe, BmcError, Session, Target, Timing};
use crate::foundation::ipmi::commands::{self, FruInfo};
use crate::foundation::ipmi::session::Credentials;
use crate::foundation::shared::Shared;
use crate::foundation::store::{
    BmNode, BmNodeFilter, Job, JobNode, JobStatus, PowerState, StoreError,
};
use crate::service::power::{Power, PowerError};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
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
}

/// A scan as requested, checked.
pub struct Plan {
    pub addresses: Vec<SocketAddr>,
    /// Credentials to try, in order (per address when re-scanning nodes).
    pub credentials: Vec<ScanCredentials>,
    pub per_node: HashMap<SocketAddr, ScanCredentials>,
    /// Known node per address (re-scan).
    pub known: Vec<String>,
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
    let total = plan.addresses.len();
    store
        .append_job_log(job_id, format!("step0: probing {total} address(es)"))
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
    let mut alive = Vec::new();
    while let Some(r) = probes.join_next().await {
        if let Ok((addr, true)) = r {
            alive.push(addr);
        }
    }
    alive.sort();
    let unreachable = total - alive.len();
    store
        .set_job_status(
            job_id,
            JobStatus::Step(1),
            Some(format!(
                "step1: {} BMC(s) answered; logging in",
                alive.len()
            )),
        )
        .await?;

    // step1 + step2: login with each credential in turn, then inventory in
    // the same session.
    let mut logins = JoinSet::new();
    for addr in alive.clone() {
        let sc = sc.clone();
        let creds = match plan.per_node.get(&addr) {
            Some(c) => vec![c.clone()],
            None => plan.credentials.clone(),
        };
        logins.spawn(async move { (addr, login_and_inventory(&sc, addr, &creds).await) });
    }
    let mut found = Vec::new();
    let mut auth_failed = 0;
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
    found.sort_by_key(|f| f.addr);
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
    let (registered, updated) = register(sc, job_id, &found).await?;
    let summary = format!(
        "found {}, registered {registered}, updated {updated}, auth failed {auth_failed}, unreachable {unreachable}",
        alive.len()
    );
    store
        .set_job_status(job_id, JobStatus::Successful, Some(summary))
        .await
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
                })
            }
            // Wrong user or password: try the next credentials.
            Err(e @ PowerError::Bmc(BmcError::Auth(_))) => last = e,
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

fn hostname_for(pattern: &str, addr: SocketAddr) -> String {
    let ip = addr.ip().to_string().replace(['.', ':'], "-");
    let mut name = pattern
        .replace("{ip}", &ip)
        .replace("{port}", &addr.port().to_string());
    if !pattern.contains("{port}") && addr.port() != 623 {
        name = format!("{name}-{}", addr.port());
    }
    name.to_ascii_lowercase()
}

async fn register(
    sc: &Scanner,
    job_id: &str,
    found: &[Found],
) -> Result<(usize, usize), StoreError> {
    let (nodes, _) = sc
        .shared
        .store
        .describe_bm_nodes(BmNodeFilter::default())
        .await?;
    let by_addr: HashMap<(String, u16), BmNode> = nodes
        .iter()
        .map(|n| ((n.ipmi_address.clone(), n.ipmi_port), n.clone()))
        .collect();
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
        if let Some(known) = by_addr.get(&(f.addr.ip().to_string(), f.addr.port())) {
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
                f.addr,
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
        let base = hostname_for(&pattern, f.addr);
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
            ipmi_address: f.addr.ip().to_string(),
            ipmi_port: f.addr.port(),
            ipmi_username: f.creds.username.clone(),
            ipmi_password: f.creds.password.clone(),
            power_state: power,
            power_state_time: Some(now),
            create_time: now,
            update_time: now,
            ..BmNode::blank()
        });
    }
    let registered = new_nodes.len();
    sc.shared.store.insert_bm_nodes(new_nodes.clone()).await?;
    for n in &new_nodes {
        let line = format!(
            "registered {} ({}) at {}:{}: {}power {}",
            n.node_id,
            n.hostname,
            n.ipmi_address,
            n.ipmi_port,
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
        assert_eq!(hostname_for("bmc-{ip}", a), "bmc-10-0-0-5");
        let b: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(hostname_for("bmc-{ip}", b), "bmc-127-0-0-1-9100");
        assert_eq!(hostname_for("r1-{ip}-{port}", b), "r1-127-0-0-1-9100");
    }
}
