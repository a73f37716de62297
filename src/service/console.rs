//! Nodes' serial consoles over IPMI SOL. One relay per node at a time,
//! shared by rackboot's own capture (while a provisioning, inspection or
//! unprovisioning task runs) and by operators attached with
//! `rackboot console`; what the console prints is kept in the node's
//! console log (the store's `console_lines`, the last 1 MiB) line by line,
//! and sent raw to every attached viewer. The relay holds the BMC's one
//! console session ([`PowerController::with_console`]) and ends when its
//! last holder lets go, when the BMC ends SOL (another session took it) or
//! when the BMC stops answering.

use crate::foundation::console_text::{telling_tail, LineAssembler};
use crate::foundation::ipmi::client::{ConsoleEnd, ConsoleError};
use crate::foundation::ipmi::sol::ActivateError;
use crate::foundation::shared::Shared;
use crate::foundation::store::{BmNode, BmNodeFilter};
use crate::service::power::{Power, PowerController, PowerError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How often captured lines are written to the store.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How long a task waits for its console capture to open before it goes on.
pub const CAPTURE_WAIT: Duration = Duration::from_secs(3);
/// A line without its newline (a prompt) is logged after this long.
const PARTIAL_AFTER: Duration = Duration::from_secs(1);

/// Why a console could not be opened; the text says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    NotFound(String),
    /// Another session (not rackboot's) holds the console.
    #[error("another session already holds the serial console (SOL) of node {node_id}'s BMC at {bmc}: close it (e.g. ipmitool sol deactivate), or pass --force (force 1) to take it over")]
    Taken { node_id: String, bmc: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Bmc(String),
}

/// One node's live relay.
struct Live {
    input: mpsc::Sender<Vec<u8>>,
    output: broadcast::Sender<Vec<u8>>,
    /// Why the relay ended (`None` while it runs).
    ended: watch::Receiver<Option<String>>,
    lines: Arc<Mutex<Lines>>,
    /// Cancelled when the last holder drops this.
    stop: CancellationToken,
    node_id: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Captured text not yet written to the store.
struct Lines {
    assembler: LineAssembler,
    done: Vec<(i64, String)>,
    partial_since: Option<std::time::Instant>,
}

/// A hold on a node's console: while any exists, the relay runs.
pub struct Hold {
    _live: Arc<Live>,
}

/// An operator's view of a console.
pub struct Viewer {
    pub output: broadcast::Receiver<Vec<u8>>,
    pub input: mpsc::Sender<Vec<u8>>,
    /// Becomes `Some(why)` when the console ends.
    pub ended: watch::Receiver<Option<String>>,
    /// The BMC, for the banner.
    pub bmc: String,
    _hold: Hold,
}

/// rackboot's own capture of a node's console while a task runs: opened in
/// the background (a BMC that does not answer never delays the task), ended
/// when dropped.
pub struct Capture {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The console service (see the module doc).
pub struct Consoles {
    shared: Arc<Shared>,
    power: Arc<Power>,
    live: Mutex<HashMap<String, Weak<Live>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Consoles {
    pub fn new(shared: Arc<Shared>, power: Arc<Power>) -> Consoles {
        Consoles {
            shared,
            power,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self, node_id: &str) -> Option<Arc<Live>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(node_id)
            .and_then(Weak::upgrade)
            .filter(|l| l.ended.borrow().is_none())
    }

    /// Attaches an operator to `node_id`'s console (joining rackboot's own
    /// capture when it runs). With `force`, another session's SOL is
    /// deactivated first.
    pub async fn attach(self: &Arc<Self>, node_id: &str, force: bool) -> Result<Viewer, OpenError> {
        let live = match self.running(node_id) {
            Some(l) => l,
            None => self.open(node_id, force).await?,
        };
        Ok(Viewer {
            output: live.output.subscribe(),
            input: live.input.clone(),
            ended: live.ended.clone(),
            bmc: self.bmc_of(node_id).await,
            _hold: Hold { _live: live },
        })
    }

    async fn bmc_of(&self, node_id: &str) -> String {
        self.node(node_id)
            .await
            .map(|n| n.bmc_label())
            .unwrap_or_default()
    }

    async fn node(&self, node_id: &str) -> Result<BmNode, OpenError> {
        let (nodes, _) = self
            .shared
            .store
            .describe_bm_nodes(BmNodeFilter {
                node_ids: vec![node_id.to_string()],
                ..BmNodeFilter::default()
            })
            .await
            .map_err(|e| OpenError::NotFound(e.to_string()))?;
        nodes
            .into_iter()
            .next()
            .ok_or_else(|| OpenError::NotFound(format!("node {node_id} does not exist")))
    }

    /// Starts rackboot's capture of `node`'s console for as long as the
    /// returned value lives, and waits (at most [`CAPTURE_WAIT`]) until it
    /// is open, so the firmware's first lines after the next power-on are
    /// caught. A console that cannot be opened (no IPMI BMC, another
    /// session holds it, the BMC does not answer) is noted in the console
    /// log and the task goes on without it.
    pub async fn capture(self: &Arc<Self>, node: &BmNode) -> Capture {
        let (me, node_id) = (self.clone(), node.node_id.clone());
        let (opened_tx, opened_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let hold = match me.running(&node_id) {
                Some(l) => Hold { _live: l },
                None => match me.open(&node_id, false).await {
                    Ok(l) => Hold { _live: l },
                    Err(e) => {
                        tracing::info!(node_id = %node_id, "console not captured: {e}");
                        me.note(&node_id, &format!("console not captured: {e}"))
                            .await;
                        let _ = opened_tx.send(());
                        return;
                    }
                },
            };
            let _ = opened_tx.send(());
            // Held until the task is aborted (the Capture dropped).
            std::future::pending::<()>().await;
            drop(hold);
        });
        let _ = tokio::time::timeout(CAPTURE_WAIT, opened_rx).await;
        Capture { task }
    }

    /// Writes a rackboot line into a node's console log.
    async fn note(&self, node_id: &str, text: &str) {
        let _ = self
            .shared
            .store
            .append_console(
                node_id.to_string(),
                vec![(now_ms(), format!("[rackboot] {text}"))],
            )
            .await;
    }

    /// Writes what a node's relay has captured so far (the partial line
    /// too), so a failure message sees the latest lines.
    pub async fn flush(&self, node_id: &str) {
        if let Some(live) = self.running(node_id) {
            write_lines(&self.shared, &live.node_id, &live.lines, true).await;
        }
    }

    /// The console lines that explain a failure: of those printed since
    /// `since_secs`, at most `n` naming a panic, an error or a timeout,
    /// else the last ones.
    pub async fn telling_lines(&self, node_id: &str, since_secs: i64, n: usize) -> Vec<String> {
        self.flush(node_id).await;
        let lines = self
            .shared
            .store
            .console_log(node_id.to_string(), since_secs * 1000, 400)
            .await
            .unwrap_or_default();
        let text: Vec<String> = lines
            .into_iter()
            .filter(|l| !l.line.starts_with("[rackboot]"))
            .map(|l| l.line)
            .collect();
        telling_tail(&text, n)
    }

    async fn open(self: &Arc<Self>, node_id: &str, force: bool) -> Result<Arc<Live>, OpenError> {
        let node = self.node(node_id).await?;
        match node.driver() {
            None => {
                return Err(OpenError::Unsupported(format!(
                    "node {node_id} has no BMC: set its ipmi_address first"
                )))
            }
            Some(d) if d.is_redfish() => {
                return Err(OpenError::Unsupported(format!(
                    "node {node_id}'s BMC is Redfish ({}): its serial console is only reachable over IPMI (SOL); register the BMC's IPMI address to use it",
                    node.bmc_label()
                )))
            }
            Some(_) => {}
        }
        let target = self
            .power
            .controller
            .ipmi_target(&node)
            .map_err(|e| OpenError::Bmc(e.to_string()))?;
        let (input_tx, mut input_rx) = mpsc::channel::<Vec<u8>>(64);
        let (output_tx, _) = broadcast::channel::<Vec<u8>>(1024);
        let (ended_tx, ended_rx) = watch::channel(None);
        let lines = Arc::new(Mutex::new(Lines {
            assembler: LineAssembler::new(),
            done: Vec::new(),
            partial_since: None,
        }));
        let stop = CancellationToken::new();
        let live = Arc::new(Live {
            input: input_tx,
            output: output_tx.clone(),
            ended: ended_rx,
            lines: lines.clone(),
            stop: stop.clone(),
            node_id: node_id.to_string(),
        });
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), OpenError>>();
        let ready = Arc::new(Mutex::new(Some(ready_tx)));
        let bmc = node.bmc_label();
        let (me, id) = (self.clone(), node_id.to_string());
        tokio::spawn(async move {
            let signal = |r: Result<(), OpenError>| {
                if let Some(tx) = ready.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = tx.send(r);
                }
            };
            let flusher = {
                let (shared, id, lines, stop) =
                    (me.shared.clone(), id.clone(), lines.clone(), stop.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(FLUSH_EVERY) => {}
                            _ = stop.cancelled() => {}
                        }
                        write_lines(&shared, &id, &lines, false).await;
                        if stop.is_cancelled() {
                            break;
                        }
                    }
                })
            };
            let controller: &PowerController = &me.power.controller;
            let outcome = controller
                .with_console(&target, async |session| {
                    let console = match session.activate_sol(force).await {
                        Ok(c) => c,
                        Err(ConsoleError::Activate(e)) => return Ok(Err(e)),
                        Err(ConsoleError::Bmc(e)) => return Err(e),
                    };
                    signal(Ok(()));
                    me.note(&id, &format!("console attached (SOL, BMC {bmc})"))
                        .await;
                    let out_lines = lines.clone();
                    let end = console
                        .run(
                            &mut input_rx,
                            move |bytes| {
                                let _ = output_tx.send(bytes.to_vec());
                                let mut l = out_lines.lock().unwrap_or_else(|e| e.into_inner());
                                let now = now_ms();
                                let done = l.assembler.push(bytes);
                                if done.is_empty() {
                                    l.partial_since.get_or_insert_with(std::time::Instant::now);
                                } else {
                                    l.partial_since = Some(std::time::Instant::now());
                                }
                                l.done.extend(done.into_iter().map(|s| (now, s)));
                            },
                            stop.clone(),
                        )
                        .await;
                    Ok(Ok(end))
                })
                .await;
            let why = match outcome {
                Ok(Ok(ConsoleEnd::Stopped)) => "console closed".to_string(),
                Ok(Ok(ConsoleEnd::Deactivated)) => {
                    "console ended by the BMC: another session took it over or deactivated it"
                        .to_string()
                }
                Ok(Ok(ConsoleEnd::Lost(why))) => format!("console lost: {why}"),
                Ok(Err(ActivateError::AlreadyActive)) => {
                    let e = OpenError::Taken {
                        node_id: id.clone(),
                        bmc: bmc.clone(),
                    };
                    let text = e.to_string();
                    signal(Err(e));
                    text
                }
                Ok(Err(e)) => {
                    let text =
                        format!("cannot open the serial console of node {id} (BMC {bmc}): {e}");
                    signal(Err(OpenError::Bmc(text.clone())));
                    text
                }
                Err(PowerError::Busy) => {
                    let text = format!("the serial console of node {id}'s BMC ({bmc}) is being opened or closed by rackboot: try again in a few seconds");
                    signal(Err(OpenError::Bmc(text.clone())));
                    text
                }
                Err(e) => {
                    let text = format!(
                        "cannot reach the BMC of node {id} at {bmc} for its serial console: {e}"
                    );
                    signal(Err(OpenError::Bmc(text.clone())));
                    text
                }
            };
            stop.cancel();
            let _ = flusher.await;
            write_lines(&me.shared, &id, &lines, true).await;
            let _ = ended_tx.send(Some(why.clone()));
            if !why.starts_with("cannot")
                && !why.starts_with("another")
                && !why.starts_with("the serial")
            {
                me.note(&id, &why).await;
            }
        });
        match ready_rx.await {
            Ok(Ok(())) => {
                self.live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node_id.to_string(), Arc::downgrade(&live));
                Ok(live)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(OpenError::Bmc(format!(
                "the console of node {node_id} ended while opening"
            ))),
        }
    }
}

/// Writes a relay's finished lines (and, when `all` or it has waited long
/// enough, the partial line) to the node's console log.
async fn write_lines(shared: &Shared, node_id: &str, lines: &Mutex<Lines>, all: bool) {
    let batch = {
        let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
        let waited = l
            .partial_since
            .is_some_and(|t| t.elapsed() >= PARTIAL_AFTER);
        if all || waited {
            if let Some(p) = l.assembler.flush() {
                l.done.push((now_ms(), p));
            }
            l.partial_since = None;
        }
        std::mem::take(&mut l.done)
    };
    if batch.is_empty() {
        return;
    }
    if let Err(e) = shared
        .store
        .append_console(node_id.to_string(), batch)
        .await
    {
        tracing::warn!(node_id, "console lines not stored: {e}");
    }
}
