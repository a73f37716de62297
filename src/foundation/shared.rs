//! What every service and transport of the daemon shares, and nothing
//! else: the store, the configuration and the boot templates in force
//! (each replaced as a whole on SIGHUP), the tracker of background work
//! (awaited at shutdown), the state directory, where the HTTP boot
//! server listens (the URLs handed to BMCs and ramdisks name it), and what
//! the health check reports (which network services listen where, when the
//! last power-sync round ended). Services own their own
//! parts (the power controller, the deploy registry) next to it, in
//! [`crate::service::app::App`].

use super::budget::FdBudget;
use super::config::Config;
use super::store::Store;
use super::templates::Templates;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use tokio_util::task::TaskTracker;

pub struct Shared {
    pub store: Store,
    /// Background work started by actions (jobs); awaited at shutdown.
    pub tasks: TaskTracker,
    /// The state directory (default places of keys and files).
    pub state_dir: PathBuf,
    /// Connections the listeners may hold, after the open-file limit at
    /// start (the daemon raises it first).
    pub fds: FdBudget,
    config: RwLock<Arc<Config>>,
    templates: RwLock<Arc<Templates>>,
    /// The HTTP boot server's address and port, once it listens.
    http: RwLock<Option<(String, u16)>>,
    /// Network services listening: name (api, dhcp, tftp, http, metrics) →
    /// where.
    listening: RwLock<BTreeMap<&'static str, String>>,
    /// When the last power-sync round ended (Unix seconds; 0: none yet).
    last_power_sync: AtomicI64,
    /// When the daemon started (Unix seconds).
    pub started_at: i64,
    /// The intake round in progress (ScanBMNodes `intake`), if any.
    pub intake: super::intake::Desk,
}

impl Shared {
    /// With the built-in templates (the daemon replaces them with the
    /// configured ones after checking them).
    pub fn new(store: Store, config: Config, state_dir: PathBuf) -> Shared {
        Shared {
            store,
            tasks: TaskTracker::new(),
            state_dir,
            fds: FdBudget::compute(&config, super::budget::nofile_limit()),
            config: RwLock::new(Arc::new(config)),
            templates: RwLock::new(Arc::new(
                Templates::load(None)
                    .expect("the built-in templates compile (a unit test checks them)"),
            )),
            http: RwLock::new(None),
            listening: RwLock::new(BTreeMap::new()),
            last_power_sync: AtomicI64::new(0),
            started_at: super::ids::now_secs(),
            intake: super::intake::Desk::default(),
        }
    }

    /// Where the HTTP boot server listens (`None`: it does not run).
    pub fn http_address(&self) -> Option<(String, u16)> {
        self.http.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Set by the HTTP boot server when it listens.
    pub fn set_http_address(&self, address: String, port: u16) {
        *self.http.write().unwrap_or_else(|e| e.into_inner()) = Some((address, port));
    }

    /// Records that network service `name` listens at `address`.
    pub fn set_listening(&self, name: &'static str, address: String) {
        self.listening
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, address);
    }

    /// The network services listening, by name.
    pub fn listening(&self) -> BTreeMap<&'static str, String> {
        self.listening
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the end of a power-sync round at `now` (Unix seconds).
    pub fn power_sync_done(&self, now: i64) {
        self.last_power_sync.store(now, Ordering::Relaxed);
    }

    /// When the last power-sync round ended (`None`: none yet).
    pub fn last_power_sync(&self) -> Option<i64> {
        Some(self.last_power_sync.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the configuration (SIGHUP, after a check).
    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// The templates in force.
    pub fn templates(&self) -> Arc<Templates> {
        self.templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the templates (start-up and SIGHUP, after a check).
    pub fn set_templates(&self, t: Templates) {
        *self.templates.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }
}
