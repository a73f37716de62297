//! Power control of BMNodes over IPMI or Redfish: the only place that
//! decides how BMCs are reached. Every operation opens a session (RMCP+, or
//! a Redfish session) within two budgets — a global cap on open sessions and
//! a per-BMC budget (`ipmi.sessions_per_bmc`, with a short queue), the same
//! whatever the driver — runs, and closes the session on every path. A BMC
//! that did not answer is left alone for `ipmi.unreachable_backoff` seconds.

pub use super::ops::{PowerOp, PowerOutcome};
use crate::foundation::config::{IpmiConfig, PrivilegeLevel, RedfishConfig};
use crate::foundation::ipmi::client::{BmcError, Session, Target, Timing};
use crate::foundation::ipmi::commands::{self, ChassisAction};
use crate::foundation::ipmi::crypto::CipherSuite;
use crate::foundation::ipmi::session::{Credentials, Privilege};
use crate::foundation::redfish::client::{self as rf, RedfishError};
use crate::foundation::redfish::BmcUrl;
use crate::foundation::store::BmNode;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How a node's BMC is reached.
#[derive(Debug, Clone)]
pub enum BmcTarget {
    Ipmi(Target),
    Redfish(rf::Target),
}

/// A failure, plus whether the BMC was reached at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Bmc(#[from] BmcError),
    #[error(transparent)]
    Redfish(#[from] RedfishError),
    /// The per-BMC queue is full.
    #[error("too many operations are waiting for this BMC")]
    Busy,
    /// Skipped: the BMC did not answer recently.
    #[error("the BMC did not answer recently; next try in {0} s")]
    BackingOff(u64),
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
}

impl PowerError {
    /// A short name of the failure's kind (a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            e if e.is_unreachable() => "unreachable",
            PowerError::Bmc(_) | PowerError::Redfish(_) => "error",
            PowerError::Busy => "busy",
            PowerError::BackingOff(_) => "backing_off",
            PowerError::BadAddress(_) => "bad_address",
        }
    }

    /// The BMC did not answer (what starts the backoff).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PowerError::Bmc(BmcError::Unreachable(_))
                | PowerError::Redfish(RedfishError::Unreachable(_))
        )
    }
}

struct BmcSlot {
    sessions: Semaphore,
    /// The one console (SOL) session rackboot keeps to the BMC, beside
    /// its `sessions_per_bmc` operation sessions.
    console: Semaphore,
    waiting: AtomicUsize,
    unreachable_until: Mutex<Option<Instant>>,
}

/// Runs power operations within the session budgets.
pub struct PowerController {
    settings: Mutex<IpmiConfig>,
    redfish: Mutex<(RedfishConfig, rf::Tls)>,
    global: Semaphore,
    /// Per BMC (`ipmi/addr:port`, `redfish/host:port`: every system behind
    /// one Redfish service shares its budget).
    slots: Mutex<HashMap<String, Arc<BmcSlot>>>,
    /// Nodes whose unverified certificate was already logged.
    unverified_logged: Mutex<HashSet<String>>,
}

impl PowerController {
    pub fn new(settings: IpmiConfig, redfish: &RedfishConfig) -> PowerController {
        PowerController {
            global: Semaphore::new(settings.max_concurrent),
            settings: Mutex::new(settings),
            redfish: Mutex::new((redfish.clone(), tls_for(redfish))),
            slots: Mutex::new(HashMap::new()),
            unverified_logged: Mutex::new(HashSet::new()),
        }
    }

    /// Applies reloaded settings (timing, queue, backoff, Redfish CA;
    /// budgets stay).
    pub fn reconfigure(&self, settings: IpmiConfig, redfish: &RedfishConfig) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
        let mut r = self.redfish.lock().unwrap_or_else(|e| e.into_inner());
        if r.0.ca_file != redfish.ca_file {
            r.1 = tls_for(redfish);
        }
        r.0 = redfish.clone();
    }

    /// The Redfish TLS settings and timing in force.
    pub fn redfish_settings(&self) -> (rf::Tls, rf::Timing) {
        let r = self.redfish.lock().unwrap_or_else(|e| e.into_inner());
        (
            r.1.clone(),
            rf::Timing {
                timeout: Duration::from_millis(r.0.timeout_ms),
                task_timeout: Duration::from_secs(r.0.task_timeout),
            },
        )
    }

    fn settings(&self) -> IpmiConfig {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn slot(&self, key: String, sessions: usize) -> Arc<BmcSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(BmcSlot {
                    sessions: Semaphore::new(sessions),
                    console: Semaphore::new(1),
                    waiting: AtomicUsize::new(0),
                    unreachable_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// How to reach `node`'s BMC. A node whose certificate is not verified
    /// (`bmc_verify_tls` 0) is logged once.
    pub fn target(&self, node: &BmNode) -> Result<BmcTarget, PowerError> {
        match node.driver() {
            Some(d) if d.is_redfish() => {
                let url = BmcUrl::parse(&node.bmc_address)
                    .map_err(|_| PowerError::BadAddress(node.bmc_address.clone()))?;
                if !node.bmc_verify_tls && url.tls {
                    let mut logged = self
                        .unverified_logged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if logged.insert(node.node_id.clone()) {
                        tracing::warn!(node_id = %node.node_id, bmc = %node.bmc_address, "the BMC's TLS certificate is not verified (bmc_verify_tls 0)");
                    }
                }
                Ok(BmcTarget::Redfish(rf::Target {
                    url,
                    user: node.ipmi_username.clone(),
                    password: node.ipmi_password.clone(),
                    verify_tls: node.bmc_verify_tls,
                }))
            }
            _ => self.ipmi_target(node).map(BmcTarget::Ipmi),
        }
    }

    /// The IPMI target of a node.
    pub fn ipmi_target(&self, node: &BmNode) -> Result<Target, PowerError> {
        let ip: IpAddr = node
            .ipmi_address
            .parse()
            .map_err(|_| PowerError::BadAddress(node.ipmi_address.clone()))?;
        let privilege = self.privilege();
        Ok(Target {
            addr: SocketAddr::new(ip, node.ipmi_port),
            creds: Credentials {
                user: node.ipmi_username.clone(),
                password: node.ipmi_password.clone(),
                bmc_key: hex_key(&node.ipmi_bmc_key),
                privilege,
            },
            suite: CipherSuite::from_id(node.ipmi_cipher_suite),
        })
    }

    /// Runs `op` against `target` within the budgets.
    pub async fn run(&self, target: &BmcTarget, op: PowerOp) -> Result<PowerOutcome, PowerError> {
        let timer = crate::foundation::metrics::Timer::start();
        let result = self.run_untimed(target, op).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        timer.observe(
            &crate::foundation::metrics::metrics().bmc_operations,
            &[op.name(), outcome],
        );
        result
    }

    async fn run_untimed(
        &self,
        target: &BmcTarget,
        op: PowerOp,
    ) -> Result<PowerOutcome, PowerError> {
        match target {
            BmcTarget::Ipmi(t) => {
                self.with_session(t, async |s: &mut Session| perform(s, op).await)
                    .await
            }
            BmcTarget::Redfish(t) => {
                self.with_redfish(t, async |s: &mut rf::Session| {
                    super::redfish::perform(s, op).await
                })
                .await
            }
        }
    }

    /// Opens an IPMI session to `target` within the budgets, runs `work` in
    /// it and closes it on every path. An unreachable BMC is then left alone
    /// for `ipmi.unreachable_backoff` seconds.
    pub async fn with_session<T>(
        &self,
        target: &Target,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, BmcError>,
    ) -> Result<T, PowerError> {
        let settings = self.settings();
        let timing = Timing {
            timeout: Duration::from_millis(settings.timeout_ms),
            attempts: settings.attempts,
        };
        self.budgeted(format!("ipmi/{}", target.addr), async {
            let mut session = Session::open(target, timing).await?;
            let outcome = work(&mut session).await;
            session.close().await;
            Ok(outcome?)
        })
        .await
    }

    /// Opens the console session to `target`: one per BMC, held for as long
    /// as `work` runs (a console lasts), beside the BMC's operation sessions
    /// and outside the global cap of short operations. `Busy` when this
    /// BMC's console is already open.
    pub async fn with_console<T>(
        &self,
        target: &Target,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, BmcError>,
    ) -> Result<T, PowerError> {
        let settings = self.settings();
        let slot = self.slot(format!("ipmi/{}", target.addr), settings.sessions_per_bmc);
        let Ok(_console) = slot.console.try_acquire() else {
            return Err(PowerError::Busy);
        };
        let timing = Timing {
            timeout: Duration::from_millis(settings.timeout_ms),
            attempts: settings.attempts,
        };
        let mut session = Session::open(target, timing).await?;
        let outcome = work(&mut session).await;
        session.close().await;
        Ok(outcome?)
    }

    /// Opens a Redfish session to `target` within the same budgets, runs
    /// `work` and deletes the session on every path (a dropped session is
    /// deleted in the background).
    pub async fn with_redfish<T>(
        &self,
        target: &rf::Target,
        work: impl AsyncFnOnce(&mut rf::Session) -> Result<T, RedfishError>,
    ) -> Result<T, PowerError> {
        let (tls, timing) = self.redfish_settings();
        let key = format!("redfish/{}", target.url.authority().to_ascii_lowercase());
        self.budgeted(key, async {
            let mut session = rf::Session::open(target, &tls, timing).await?;
            let outcome = work(&mut session).await;
            session.close().await;
            Ok(outcome?)
        })
        .await
    }

    /// Runs `work` (one session's worth) within the BMC `key`'s budget, the
    /// global cap and the backoff.
    async fn budgeted<T>(
        &self,
        key: String,
        work: impl std::future::Future<Output = Result<T, PowerError>>,
    ) -> Result<T, PowerError> {
        let settings = self.settings();
        let slot = self.slot(key, settings.sessions_per_bmc);
        if let Some(until) = *slot
            .unreachable_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            let now = Instant::now();
            if until > now {
                return Err(PowerError::BackingOff((until - now).as_secs() + 1));
            }
        }
        if slot.waiting.fetch_add(1, Ordering::SeqCst)
            >= settings.queue_per_bmc + settings.sessions_per_bmc
        {
            slot.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(PowerError::Busy);
        }
        let result = async {
            let _bmc = slot
                .sessions
                .acquire()
                .await
                .map_err(|_| PowerError::Busy)?;
            let _global = self.global.acquire().await.map_err(|_| PowerError::Busy)?;
            work.await
        }
        .await;
        slot.waiting.fetch_sub(1, Ordering::SeqCst);
        let mut until = slot
            .unreachable_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *until = match &result {
            Err(e) if e.is_unreachable() && settings.unreachable_backoff > 0 => {
                Some(Instant::now() + Duration::from_secs(settings.unreachable_backoff))
            }
            _ => None,
        };
        result
    }

    /// The session settings in force (for callers that build targets).
    pub fn privilege(&self) -> Privilege {
        match self.settings().privilege {
            PrivilegeLevel::Operator => Privilege::Operator,
            PrivilegeLevel::Administrator => Privilege::Administrator,
        }
    }
}

/// The Redfish TLS settings of `cfg`; a CA file that cannot be read (the
/// config check catches that at start) leaves the system's roots only.
fn tls_for(cfg: &RedfishConfig) -> rf::Tls {
    rf::Tls::new(&cfg.ca_file).unwrap_or_else(|e| {
        tracing::error!("{e}: BMC certificates are checked against the system's roots only");
        rf::Tls::new("").expect("ring supports the default TLS versions")
    })
}

/// Decodes a stored hex BMC key ("" = none).
fn hex_key(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

async fn perform(s: &mut Session, op: PowerOp) -> Result<PowerOutcome, BmcError> {
    match op {
        PowerOp::Status => Ok(PowerOutcome::Power(commands::power_is_on(s).await?)),
        PowerOp::On => {
            commands::chassis_control(s, ChassisAction::PowerOn).await?;
            Ok(PowerOutcome::Power(true))
        }
        PowerOp::Off { hard } => {
            let action = if hard {
                ChassisAction::PowerOff
            } else {
                ChassisAction::SoftOff
            };
            commands::chassis_control(s, action).await?;
            // A soft off is a request to the OS: report what the BMC says now.
            Ok(PowerOutcome::Power(if hard {
                false
            } else {
                commands::power_is_on(s).await?
            }))
        }
        PowerOp::Cycle | PowerOp::Reset => {
            let action = if commands::power_is_on(s).await? {
                if op == PowerOp::Cycle {
                    ChassisAction::PowerCycle
                } else {
                    ChassisAction::HardReset
                }
            } else {
                ChassisAction::PowerOn
            };
            commands::chassis_control(s, action).await?;
            Ok(PowerOutcome::Power(true))
        }
        PowerOp::SetBoot(setting) => {
            commands::set_boot_device(s, setting).await?;
            Ok(PowerOutcome::Boot(
                commands::get_boot_device(s).await.unwrap_or(setting),
            ))
        }
        PowerOp::GetBoot => Ok(PowerOutcome::Boot(commands::get_boot_device(s).await?)),
    }
}
