//! Wiring of `rackboot serve`: config and state directory (locked: one
//! daemon per state directory, before anything is opened or changed), the
//! open-file limit (raised to the hard one), tracing, the store, the first-start admin user, start-up recovery, the API socket,
//! systemd notification (READY/STOPPING/RELOADING), signals (SIGTERM and
//! SIGINT stop, SIGHUP reloads) and periodic upkeep. No protocol or business
//! logic lives here.

use crate::foundation::auth;
use crate::foundation::config::{self, Config};
use crate::foundation::store::Store;
use crate::service::app::App;
use crate::service::jobs;
use crate::transport::api::server;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Flags of `rackboot serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// The name of the file holding the first-start admin password.
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";
/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "rackboot.db";
/// The lock file of the state directory: held (flock) by the daemon that
/// serves it, holding its pid.
pub const LOCK_FILE: &str = "rackboot.lock";

use crate::entry::logging::{self, FilterHandle};

/// Exit status of `rackboot serve` and `rackboot config check` when the
/// configuration is invalid (sysexits' EX_CONFIG). The unit's
/// `RestartPreventExitStatus=` names it: restarting cannot fix a bad file.
pub const EXIT_CONFIG: i32 = 78;

/// Loads and checks the configuration `serve` would run with: the file of
/// `--config`, else [`config::DEFAULT_CONFIG_FILE`] when it exists, else the
/// embedded defaults; every key validated, the boot templates rendered for
/// every mode and image, the socket mode parsed. Returns the file read
/// (None: embedded defaults) and the configuration.
pub fn check_config(flag: Option<&Path>) -> Result<(Option<PathBuf>, Config), String> {
    let path = config::resolve_config_path(flag);
    let config = match &path {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config.socket_mode().map_err(|e| e.to_string())?;
    load_templates(&config)?;
    Ok((path, config))
}

/// The API socket `serve` listens on: `api.socket`, else
/// `$RUNTIME_DIRECTORY/api.sock` under systemd's `RuntimeDirectory=`
/// (`/run/rackboot/api.sock` with the packaged unit), else
/// `<state-dir>/api.sock`.
fn api_socket(state_dir: &Path, config: &Config) -> PathBuf {
    match std::env::var_os("RUNTIME_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd may list several directories, colon-separated: the first.
        Some(dirs) if config.api.socket.is_empty() => {
            let dirs = dirs.to_string_lossy().into_owned();
            PathBuf::from(dirs.split(':').next().unwrap_or_default()).join("api.sock")
        }
        _ => config::socket_path(state_dir, config),
    }
}

/// glibc keeps freed heap in per-thread arenas (up to 8 per core), so a
/// daemon that answered a few 8 MB responses would sit on ~80 MB it no
/// longer uses. Two arenas bound the spread; [`crate::transport::api::server`] gives
/// memory back after large responses. A fixed mmap threshold keeps large
/// blocks (argon2's 19 MiB per password check) out of the heap: glibc's
/// sliding threshold would otherwise move them into arenas after the first
/// free, where a burst of logins leaves them.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}

/// The state directory's lock, held until the process ends.
struct StateLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock of `dir` (flock on [`LOCK_FILE`]) and writes our
/// pid there; when another daemon holds it, says which (its pid) and
/// changes nothing.
fn lock_state_dir(dir: &Path) -> Result<StateLock, String> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = text.trim();
            let who = if pid.is_empty() {
                "another rackboot daemon".to_string()
            } else {
                format!("another rackboot daemon (pid {pid})")
            };
            return Err(format!(
                "{who} is already serving the state directory {}: stop it first, or pass another --state-dir; nothing was changed",
                dir.display()
            ));
        }
        return Err(format!("cannot lock {}: {err}", path.display()));
    }
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(StateLock { _file: file })
}

/// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
pub fn run(opts: ServeOptions) -> i32 {
    tune_allocator();
    // Before any thread: every thread inherits the limit.
    let nofile = crate::foundation::budget::raise_nofile_limit();
    let (path, config) = match check_config(opts.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rackboot: {e}");
            eprintln!("rackboot: not started (exit status {EXIT_CONFIG}: configuration error; `rackboot config check` tells the same without starting)");
            return EXIT_CONFIG;
        }
    };
    // SIGHUP re-reads the file actually read, the default one included.
    let opts = ServeOptions {
        config: path,
        ..opts
    };
    let filter = logging::init(&config);
    match nofile {
        Ok((before, after)) if before != after => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit to its hard limit"
            )
        }
        Ok((_, after)) => tracing::info!(limit = after, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rackboot")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(serve(opts, config, filter));
    // Blocking work still running (an image being decompressed, a password
    // hash) would otherwise hold the exit for as long as it takes: the
    // whole stop is bounded by 2 × daemon.shutdown_timeout (requests, then
    // jobs) + the final checkpoint + this (see the unit's TimeoutStopSec).
    runtime.shutdown_timeout(BLOCKING_GRACE);
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rackboot: {e}");
            1
        }
    }
}

/// How long blocking work may hold the exit after the daemon stopped.
pub const BLOCKING_GRACE: Duration = Duration::from_secs(5);

fn prepare_state_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| {
            format!(
                "cannot create the state directory {}: {e} (pass --state-dir to use another)",
                dir.display()
            )
        })
}

/// Creates user `admin` with a random password written to
/// `<state-dir>/admin.password` (0600) when there is no user at all.
async fn bootstrap_admin(store: &Store, state_dir: &Path) -> Result<(), String> {
    let users = store.list_users().await.map_err(|e| e.to_string())?;
    if !users.is_empty() {
        return Ok(());
    }
    let password = auth::generate_password();
    let path = state_dir.join(ADMIN_PASSWORD_FILE);
    write_secret(&path, &format!("{password}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| e.to_string())??;
    store
        .insert_user("admin", hash)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(path = %path.display(), "created user admin; its password is in this file (mode 0600)");
    Ok(())
}

/// Writes `content` to `path` with mode 0600 via a temporary file and rename.
fn write_secret(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

async fn serve(opts: ServeOptions, config: Config, filter: FilterHandle) -> Result<(), String> {
    // Handlers first: a SIGTERM that arrives as soon as READY is sent must
    // already mean "stop cleanly", not the default instant death.
    let signals_in = Signals::install()?;
    let state_dir = config::resolve_state_dir(opts.state_dir.as_deref(), &config);
    prepare_state_dir(&state_dir)?;
    // Before anything in the directory is opened or changed.
    let _lock = lock_state_dir(&state_dir)?;
    let db_path = state_dir.join(DATABASE_FILE);
    let store = Store::open(&db_path).map_err(|e| e.to_string())?;
    tracing::info!(state_dir = %state_dir.display(), database = %db_path.display(), "store open");
    bootstrap_admin(&store, &state_dir).await?;

    let interrupted = jobs::fail_interrupted(&store, config.messages.retention_days)
        .await
        .map_err(|e| e.to_string())?;
    for job in &interrupted {
        tracing::warn!(job_id = %job.job_id, job_action = %job.job_action, "job was running when the daemon stopped; marked failed");
    }
    purge_messages(&store).await;

    let templates = load_templates(&config)?;
    let socket_path = api_socket(&state_dir, &config);
    let mode = config.socket_mode().map_err(|e| e.to_string())?;
    let listener = server::bind(&socket_path, mode)
        .map_err(|e| format!("cannot listen on {}: {e}", socket_path.display()))?;
    let app = Arc::new(App::new(store.clone(), config, state_dir.clone()));
    app.shared.set_templates(templates);
    purge_jobs(&app).await;
    let fds = app.shared.fds;
    tracing::info!(
        open_files = fds.nofile,
        api_connections = fds.api_connections,
        http_connections = fds.http_connections,
        "connection budgets"
    );
    let stranded = app
        .provision
        .fail_interrupted_nodes()
        .await
        .map_err(|e| e.to_string())?;
    if !stranded.is_empty() {
        tracing::warn!(
            nodes = stranded.len(),
            "nodes left mid-provision by a daemon stop were marked failed"
        );
    }
    let shutdown = CancellationToken::new();

    if let Err(e) = crate::transport::pxe::responder::start(app.clone(), shutdown.clone()).await {
        let _ = std::fs::remove_file(&socket_path);
        return Err(e);
    }
    tracing::info!(socket = %socket_path.display(), "API listening");
    app.shared
        .set_listening("api", socket_path.display().to_string());
    start_metrics(&app, &shutdown).await;
    let listening = app.shared.listening();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %opts.config.as_ref().map_or("(embedded defaults)".to_string(), |p| p.display().to_string()),
        state_dir = %state_dir.display(),
        services = %listening.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        "rackboot started"
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let systemd = tokio::spawn(systemd_status(app.clone(), shutdown.clone()));

    let server = tokio::spawn(server::serve(listener, app.clone(), shutdown.clone()));
    let upkeep = tokio::spawn(upkeep(app.clone(), shutdown.clone()));
    let power_sync = tokio::spawn(power_sync(app.clone(), shutdown.clone()));
    signals(
        signals_in,
        app.clone(),
        opts.config.clone(),
        filter,
        shutdown.clone(),
    )
    .await;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping: no new requests; waiting for in-flight ones");
    let grace = Duration::from_secs(app.config().daemon.shutdown_timeout);
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!("API server failed: {e}"),
        Ok(Err(e)) => tracing::error!("API server task failed: {e}"),
        Err(_) => tracing::warn!(
            seconds = grace.as_secs(),
            "in-flight requests did not finish in time; stopping anyway"
        ),
    }
    upkeep.abort();
    power_sync.abort();
    systemd.abort();
    // Jobs get what is left of the grace period; any still running are
    // marked failed at the next start.
    app.shared.tasks.close();
    if tokio::time::timeout(grace, app.shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            jobs = app.shared.tasks.len(),
            "jobs still running at shutdown; they will be marked failed at the next start"
        );
    }
    let _ = std::fs::remove_file(&socket_path);
    if let Err(e) = store.checkpoint().await {
        tracing::warn!("final checkpoint failed: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The signals the daemon handles, installed before anything else.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, String> {
        let err = |e: std::io::Error| format!("cannot install signal handlers: {e}");
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
            hup: signal(SignalKind::hangup()).map_err(err)?,
        })
    }
}

/// Waits for SIGTERM/SIGINT (then cancels `shutdown`), reloading on SIGHUP.
async fn signals(
    signals: Signals,
    app: Arc<App>,
    config_path: Option<PathBuf>,
    filter: FilterHandle,
    shutdown: CancellationToken,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => reload(&app, config_path.as_deref(), &filter),
            _ = shutdown.cancelled() => break,
        }
    }
    shutdown.cancel();
}

/// The templates of `config` (built-in, or replaced from
/// `boot.templates_dir`), each rendered for every mode and image.
fn load_templates(config: &Config) -> Result<crate::foundation::templates::Templates, String> {
    let dir =
        (!config.boot.templates_dir.is_empty()).then(|| Path::new(&config.boot.templates_dir));
    let t = crate::foundation::templates::Templates::load(dir)?;
    t.check(config)?;
    if !t.replaced.is_empty() {
        tracing::info!(templates = ?t.replaced, "templates replaced from boot.templates_dir");
    }
    Ok(t)
}

/// SIGHUP: re-reads the config file; applies what can change live, names
/// what needs a restart; keeps the old config when the new one is invalid.
fn reload(app: &App, path: Option<&Path>, filter: &FilterHandle) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    let Some(path) = path else {
        tracing::info!("SIGHUP: running on embedded defaults (no --config); nothing to reload");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        return;
    };
    match Config::load(path).and_then(|new| {
        load_templates(&new)
            .map(|t| (new, t))
            .map_err(crate::foundation::config::ConfigError::Template)
    }) {
        Err(e) => tracing::error!("SIGHUP: keeping the current configuration: {e}"),
        Ok((new, templates)) => {
            app.shared.set_templates(templates);
            let old = app.config();
            let changes = config_changes(&old, &new);
            if changes.is_empty() {
                tracing::info!("SIGHUP: configuration unchanged");
            }
            for (key, live) in &changes {
                if *live {
                    tracing::info!(key = %key, "SIGHUP: applied");
                } else {
                    tracing::warn!(key = %key, "SIGHUP: changed, but takes effect only after a restart");
                }
            }
            if old.daemon.log_level != new.daemon.log_level {
                let _ = filter.modify(|f| *f = logging::filter_for(&new));
            }
            app.set_config(new);
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// The keys that differ, each with whether it applies without a restart.
fn config_changes(old: &Config, new: &Config) -> Vec<(&'static str, bool)> {
    let mut out = Vec::new();
    let mut check = |key: &'static str, differs: bool, live: bool| {
        if differs {
            out.push((key, live));
        }
    };
    check(
        "daemon.state_dir",
        old.daemon.state_dir != new.daemon.state_dir,
        false,
    );
    check(
        "daemon.log_level",
        old.daemon.log_level != new.daemon.log_level,
        true,
    );
    check(
        "daemon.shutdown_timeout",
        old.daemon.shutdown_timeout != new.daemon.shutdown_timeout,
        true,
    );
    check(
        "daemon.log_format",
        old.daemon.log_format != new.daemon.log_format,
        false,
    );
    check(
        "jobs.retention_days",
        old.jobs.retention_days != new.jobs.retention_days,
        true,
    );
    check(
        "metrics.listen",
        old.metrics.listen != new.metrics.listen,
        false,
    );
    check("api.socket", old.api.socket != new.api.socket, false);
    check(
        "api.socket_mode",
        old.api.socket_mode != new.api.socket_mode,
        false,
    );
    check(
        "api.max_request_bytes",
        old.api.max_request_bytes != new.api.max_request_bytes,
        true,
    );
    check(
        "api.max_concurrent_requests",
        old.api.max_concurrent_requests != new.api.max_concurrent_requests,
        false,
    );
    check(
        "messages.retention_days",
        old.messages.retention_days != new.messages.retention_days,
        true,
    );
    check("images", old.images != new.images, true);
    check("ipmi", old.ipmi != new.ipmi, true);
    check("redfish", old.redfish != new.redfish, true);
    check("scan", old.scan != new.scan, true);
    check("ssh", old.ssh != new.ssh, true);
    check("dhcp", old.dhcp != new.dhcp, false);
    check("tftp", old.tftp != new.tftp, false);
    check(
        "boot.templates_dir",
        old.boot.templates_dir != new.boot.templates_dir,
        true,
    );
    let boot_rest = |b: &crate::foundation::config::BootConfig| {
        (
            b.files_dir.clone(),
            b.bios_file.clone(),
            b.uefi_x64_file.clone(),
            b.uefi_arm64_file.clone(),
            b.secure_boot_chain,
        )
    };
    check("boot", boot_rest(&old.boot) != boot_rest(&new.boot), false);
    check("deploy", old.deploy != new.deploy, true);
    check("provision", old.provision != new.provision, true);
    check("http", old.http != new.http, false);
    out
}

async fn purge_messages(store: &Store) {
    match store
        .purge_messages(crate::foundation::ids::now_secs())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "purged expired user messages"),
        Err(e) => tracing::warn!("purging expired messages failed: {e}"),
    }
}

/// Deletes jobs that ended more than `jobs.retention_days` ago (with their
/// nodes' results, step times and log lines).
async fn purge_jobs(app: &App) {
    let days = i64::from(app.config().jobs.retention_days);
    let before = crate::foundation::ids::now_secs() - days * 86_400;
    match app.store.purge_jobs(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, days, "purged finished jobs past their retention"),
        Err(e) => tracing::warn!("purging old jobs failed: {e}"),
    }
}

/// Polls every node's power state every `ipmi.power_sync_interval` seconds
/// (re-read each round, so SIGHUP changes apply; 0 pauses polling).
async fn power_sync(app: Arc<App>, shutdown: CancellationToken) {
    loop {
        let interval = app.config().ipmi.power_sync_interval;
        let wait = Duration::from_secs(if interval == 0 { 60 } else { interval });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        if app.config().ipmi.power_sync_interval == 0 {
            continue;
        }
        let started = std::time::Instant::now();
        let (ok, failed) = tokio::select! {
            r = app.power.sync_round() => r,
            _ = shutdown.cancelled() => return,
        };
        app.shared
            .power_sync_done(crate::foundation::ids::now_secs());
        // Routine: at DEBUG (failed BMCs are logged at WARN when marked).
        tracing::debug!(
            ok,
            failed,
            ms = started.elapsed().as_millis() as u64,
            "power sync round"
        );
    }
}

/// The metrics endpoint on `[metrics] listen`, when set and free (a taken
/// port is a warning: the rest of the daemon runs; GetHealth shows it).
async fn start_metrics(app: &Arc<App>, shutdown: &CancellationToken) {
    let listen = app.config().metrics.listen.clone();
    if listen.is_empty() {
        return;
    }
    match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => {
            let at = listener
                .local_addr()
                .map_or(listen.clone(), |a| a.to_string());
            app.shared.set_listening("metrics", at.clone());
            tracing::info!(address = %at, "metrics at http://{at}/metrics");
            tokio::spawn(crate::transport::metrics::serve(
                listener,
                app.clone(),
                shutdown.clone(),
            ));
        }
        Err(e) => tracing::warn!(
            "no metrics: cannot listen on {listen} (metrics.listen): {e}; set another address:port or \"\" to turn them off"
        ),
    }
}

/// Tells systemd how things stand (`STATUS=`: "42 nodes, 1 job running,
/// PXE on br0") every 10 s, and pings its watchdog (`WATCHDOG=1`, when the
/// unit sets `WatchdogSec=`) at half its period — from the async runtime,
/// after the store answered: a hung runtime or store stops the pings.
async fn systemd_status(app: Arc<App>, shutdown: CancellationToken) {
    // Not under systemd: nobody to tell, no store counts every 10 s.
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
    let every = if watchdog {
        Duration::from_micros(usec / 2).min(Duration::from_secs(10))
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let health = crate::service::health::health(&app.shared, false).await;
        let status = health.status_line(&app.config().dhcp.interface);
        let mut states = vec![sd_notify::NotifyState::Status(&status)];
        if watchdog && health.ok() {
            states.push(sd_notify::NotifyState::Watchdog);
        }
        let _ = sd_notify::notify(false, &states);
    }
}

/// Upkeep: purge expired user messages hourly; fold the WAL into the
/// database every 30 s (the DHCP thread's connection never checkpoints, so
/// that no disk sync delays an answer).
async fn upkeep(app: Arc<App>, shutdown: CancellationToken) {
    let store = app.store.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let mut fold = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    fold.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                purge_messages(&store).await;
                purge_jobs(&app).await;
            }
            _ = fold.tick() => {
                if let Err(e) = store.checkpoint_passive().await {
                    tracing::debug!("checkpoint: {e}");
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_names_live_and_restart_keys() {
        let old = Config::default();
        let mut new = Config::default();
        new.messages.retention_days = 7;
        new.api.socket = "/run/x.sock".into();
        let changes = config_changes(&old, &new);
        assert!(changes.contains(&("messages.retention_days", true)));
        assert!(changes.contains(&("api.socket", false)));
        assert_eq!(changes.len(), 2);
    }
}
