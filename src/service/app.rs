//! The daemon's services, one of each, over the shared foundations: what
//! the transports (the action API, the PXE servers) hold and reach work
//! through. Built once by the daemon's wiring; a config reload reaches
//! every service from here.

use crate::foundation::config::Config;
use crate::foundation::shared::Shared;
use crate::foundation::store::Store;
use crate::service::collect::Collector;
use crate::service::console::Consoles;
use crate::service::images::Images;
use crate::service::logins::Logins;
use crate::service::power::Power;
use crate::service::provision::Provisioner;
use crate::service::scan::Scanner;
use std::path::PathBuf;
use std::sync::Arc;

pub struct App {
    pub shared: Arc<Shared>,
    /// The store (the same handle as `shared.store`).
    pub store: Store,
    pub logins: Logins,
    pub power: Arc<Power>,
    pub provision: Arc<Provisioner>,
    pub scan: Arc<Scanner>,
    pub collect: Collector,
    pub consoles: Arc<Consoles>,
}

impl App {
    pub fn new(store: Store, config: Config, state_dir: PathBuf) -> App {
        let shared = Arc::new(Shared::new(store.clone(), config, state_dir));
        let power = Arc::new(Power::new(shared.clone()));
        let images = Arc::new(Images::new(&shared.state_dir));
        let consoles = Arc::new(Consoles::new(shared.clone(), power.clone()));
        App {
            logins: Logins::new(store.clone()),
            provision: Arc::new(Provisioner::new(
                shared.clone(),
                power.clone(),
                images,
                consoles.clone(),
            )),
            consoles,
            scan: Arc::new(Scanner::new(shared.clone(), power.clone())),
            collect: Collector::new(shared.clone()),
            power,
            store,
            shared,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config()
    }

    /// Applies a reloaded configuration everywhere.
    pub fn set_config(&self, config: Config) {
        self.power
            .controller
            .reconfigure(config.ipmi.clone(), &config.redfish);
        self.shared.set_config(config);
    }
}
