//! Power control of BMNodes over IPMI: the only place that decides how
//! BMCs are reached. Every operation opens a session within two budgets — a
//! global cap on open sessions and a per-BMC budget (`ipmi.sessions_per_bmc`,
//! with a short queue) — runs, and closes the session on every path. A BMC
//! that did not answer is left alone for `ipmi.unreachable_backoff` seconds.

use crate::foundation::config::{IpmiConfig, PrivilegeLevel};
use crate::foundation::ipmi::client::{BmcError, Session, Target, Timing};
use crate::foundation::ipmi::commands::{self, BootSetting, ChassisAction};
use crate::foundation::ipmi::crypto::CipherSuite;
use crate::foundation::ipmi::session::{Credentials, Privilege};
use crate::foundation::store::BmNode;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What to do to a node's power or boot device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    Status,
    On,
    /// `hard`: immediate power off; else ACPI soft off.
    Off {
        hard: bool,
    },
    /// Power cycle (power on when off: real BMCs refuse a cycle then).
    Cycle,
    /// Hard reset (power on when off).
    Reset,
    SetBoot(BootSetting),
    GetBoot,
}

/// The outcome of a [`PowerOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOutcome {
    /// Power state after the operation (true = on).
    Power(bool),
    Boot(BootSetting),
}

/// A failure, plus whether the BMC was reached at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Bmc(#[from] BmcError),
    /// The per-BMC queue is full.
    #[error("too many operations are waiting for this BMC")]
    Busy,
    /// Skipped: the BMC did not answer recently.
    #[error("the BMC did not answer recently; next try in {0} s")]
    BackingOff(u64),
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
}

struct BmcSlot {
    sessions: Semaphore,
    waiting: AtomicUsize,
    unreachable_until: Mutex<Option<Instant>>,
}

/// Runs power operations within the session budgets.
pub struct PowerController {
    settings: Mutex<IpmiConfig>,
    global: Semaphore,
    slots: Mutex<HashMap<SocketAddr, Arc<BmcSlot>>>,
}

impl PowerController {
    pub fn new(settings: IpmiConfig) -> PowerController {
        PowerController {
            global: Semaphore::new(settings.max_concurrent),
            settings: Mutex::new(settings),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Applies reloaded settings (timing, queue, backoff; budgets stay).
    pub fn reconfigure(&self, settings: IpmiConfig) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    fn settings(&self) -> IpmiConfig {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn slot(&self, addr: SocketAddr, sessions: usize) -> Arc<BmcSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(BmcSlot {
                    sessions: Semaphore::new(sessions),
                    waiting: AtomicUsize::new(0),
                    unreachable_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// The IPMI target of a node.
    pub fn target(&self, node: &BmNode) -> Result<Target, PowerError> {
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
    pub async fn run(&self, target: &Target, op: PowerOp) -> Result<PowerOutcome, PowerError> {
        self.with_session(target, async |s: &mut Session| perform(s, op).await)
            .await
    }

    /// Opens a session to `target` within the budgets, runs `work` in it and
    /// closes it on every path. An unreachable BMC is then left alone for
    /// `ipmi.unreachable_backoff` seconds.
    pub async fn with_session<T>(
        &self,
        target: &Target,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, BmcError>,
    ) -> Result<T, PowerError> {
        let settings = self.settings();
        let slot = self.slot(target.addr, settings.sessions_per_bmc);
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
            let timing = Timing {
                timeout: Duration::from_millis(settings.timeout_ms),
                attempts: settings.attempts,
            };
            let mut session = Session::open(target, timing).await?;
            let outcome = work(&mut session).await;
            session.close().await;
            Ok(outcome?)
        }
        .await;
        slot.waiting.fetch_sub(1, Ordering::SeqCst);
        let mut until = slot
            .unreachable_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *until = match &result {
            Err(PowerError::Bmc(BmcError::Unreachable(_))) if settings.unreachable_backoff > 0 => {
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
