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
//! The HTTP boot server tells a running provision what its node did through
//! [`Registry::notify`] (boot script served, ramdisk fetched, callbacks); a
//! node nobody provisions is not listened to.

pub mod inventory;
mod run;
pub mod states;

pub use run::{fail_interrupted_nodes, start, Kind};

use crate::pxe::http::Callback;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Something a node under provision did, as the HTTP boot server saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployEvent {
    /// Its iPXE script (deploy, install or inspect) was served.
    BootScript,
    /// It fetched a file: `kernel`, `initrd` or `image`.
    Fetched(&'static str),
    /// It called back.
    Callback(Callback),
}

/// What a provision task listens to.
pub struct Watch {
    pub events: mpsc::UnboundedReceiver<DeployEvent>,
    pub cancel: CancellationToken,
}

struct Entry {
    events: mpsc::UnboundedSender<DeployEvent>,
    cancel: CancellationToken,
    /// The deploy has ended (step4 on): a network boot gets the local disk.
    deployed: bool,
}

/// The nodes being provisioned or inspected right now, by node id.
#[derive(Default)]
pub struct Registry {
    nodes: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    /// Starts listening for `node_id` (replacing an older listener).
    pub fn watch(&self, node_id: &str) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        self.lock().insert(
            node_id.to_string(),
            Entry {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
