//! The daemon's configuration: a TOML file whose every key has a default
//! (an empty or missing file means "embedded defaults"). Unknown keys and
//! invalid values are refused with a message naming the key, the value and
//! what is allowed. `examples/rackboot.toml` documents every key.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything `rackboot serve` can be configured with.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub api: ApiConfig,
    pub messages: MessagesConfig,
    pub jobs: JobsConfig,
    pub metrics: MetricsConfig,
    pub ipmi: IpmiConfig,
    pub redfish: RedfishConfig,
    pub scan: ScanConfig,
    pub ssh: SshConfig,
    pub dhcp: DhcpConfig,
    pub tftp: TftpConfig,
    pub boot: BootConfig,
    pub http: HttpConfig,
    pub deploy: DeployConfig,
    pub provision: ProvisionConfig,
    /// The OS image catalogue: what `os_version` of a BMNode refers to.
    pub images: Vec<ImageConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpmiConfig {
    /// Milliseconds to wait for one reply before retransmitting.
    pub timeout_ms: u64,
    /// Tries per request (the first send included).
    pub attempts: u32,
    /// BMC sessions open at once over all BMCs.
    pub max_concurrent: usize,
    /// Sessions rackboot opens at once to one BMC (real BMCs allow 4–16).
    pub sessions_per_bmc: usize,
    /// Operations that may wait for one BMC's session budget; more fail at once.
    pub queue_per_bmc: usize,
    /// Seconds an unreachable BMC is left alone before the next try.
    pub unreachable_backoff: u64,
    /// Privilege level of sessions: operator or administrator.
    pub privilege: PrivilegeLevel,
    /// Seconds between power-state polls of every node; 0 turns polling off.
    pub power_sync_interval: u64,
    /// Failed polls in a row after which a node's BMC is marked unreachable.
    pub power_sync_failures: u32,
}

/// Redfish BMCs (the `[ipmi]` session budgets, queue and backoff apply to
/// them too).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedfishConfig {
    /// CA certificates (PEM) trusted for BMC certificates besides the
    /// system's roots; "" = only the system's.
    pub ca_file: String,
    /// Milliseconds to wait for one HTTP answer (connect, TLS, request).
    pub timeout_ms: u64,
    /// Seconds an asynchronous operation's task monitor is followed.
    pub task_timeout: u64,
}

impl Default for RedfishConfig {
    fn default() -> Self {
        RedfishConfig {
            ca_file: String::new(),
            timeout_ms: 10_000,
            task_timeout: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PrivilegeLevel {
    Operator,
    Administrator,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Credentials tried in order on each BMC a scan finds, when the scan
    /// names none.
    pub default_credentials: Vec<ScanCredentials>,
    /// Host name of a node a scan registers; `{ip}` is its BMC address with
    /// dashes (10-0-0-5), `{port}` its port.
    pub hostname_pattern: String,
    /// Addresses probed at once.
    pub concurrency: usize,
    /// Probes started per second at most.
    pub rate: u32,
    /// Milliseconds to wait for a probe's answer.
    pub probe_timeout_ms: u64,
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScanCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ScanCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScanCredentials({}, ******)", self.username)
    }
}

/// The PXE responder's DHCP side. With no `interface`, no PXE service
/// starts (never guess an interface).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DhcpConfig {
    /// The provisioning interface; DHCP and TFTP serve on it only.
    pub interface: String,
    /// `full` (the network's DHCP server) or `proxy` (ProxyDHCP beside a
    /// DHCP server the operator does not control: boot information only).
    pub mode: DhcpMode,
    /// First and last address handed out (full mode).
    pub range_start: String,
    pub range_end: String,
    pub netmask: String,
    /// Optional default gateway for the clients.
    pub router: String,
    /// Seconds a lease lasts.
    pub lease_time: u32,
    /// Answer unknown network-boot clients with the discovery boot.
    pub discovery: bool,
    /// Send minimal IPv6 router advertisements on the interface (iPXE waits
    /// ~13 s for one otherwise).
    pub router_advertisement: bool,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            interface: String::new(),
            mode: DhcpMode::Full,
            range_start: String::new(),
            range_end: String::new(),
            netmask: "255.255.255.0".into(),
            router: String::new(),
            lease_time: 3600,
            discovery: false,
            router_advertisement: true,
        }
    }
}

/// How the DHCP side answers.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// Hands out addresses from the range and boot information.
    Full,
    /// ProxyDHCP on ports 67 and 4011: boot information only, to network-boot
    /// clients only; addresses come from another server.
    Proxy,
}

/// The TFTP server (on the provisioning interface's address).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TftpConfig {
    pub enabled: bool,
    /// UDP port (69; another port is for tests).
    pub port: u16,
    pub max_blksize: u16,
    pub max_windowsize: u16,
    pub max_transfers: usize,
    /// Transfers at once from one client address.
    pub max_transfers_per_client: usize,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            enabled: true,
            port: 69,
            max_blksize: 1468,
            max_windowsize: 64,
            max_transfers: 64,
            max_transfers_per_client: 8,
        }
    }
}

/// Where boot files come from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// undionly.kpxe, ipxe.efi, snp.efi (Debian package `ipxe`).
    pub files_dir: String,
    /// A folder whose files replace the built-in `pxe-templates/` of the
    /// same name (e.g. `ipxe/deploy.ipxe`); empty: the built-in ones.
    pub templates_dir: String,
    /// The file each firmware gets (option 93): legacy BIOS (0), x86-64
    /// UEFI (7, 9; and over HTTP for 16), arm64 UEFI (11). Relative to
    /// `files_dir` over TFTP, `/files/…` over HTTP.
    pub bios_file: String,
    pub uefi_x64_file: String,
    pub uefi_arm64_file: String,
    /// Secure Boot: x86-64 UEFI clients get Debian's signed shim
    /// (`shimx64.efi`), which loads the signed GRUB netboot image
    /// (`grubx64.efi`) beside it; GRUB fetches its per-MAC config and the
    /// signed deploy kernel. Both files come from `files_dir` when there,
    /// else from the deploy ramdisk's folder (`rackboot ramdisk build`
    /// writes them beside `[deploy] kernel`).
    pub secure_boot_chain: bool,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            files_dir: "/usr/lib/ipxe".into(),
            templates_dir: String::new(),
            bios_file: "undionly.kpxe".into(),
            uefi_x64_file: "ipxe.efi".into(),
            uefi_arm64_file: "snp.efi".into(),
            secure_boot_chain: false,
        }
    }
}

/// The signed boot files of the Secure Boot chain, by the name clients ask
/// for.
pub const SECURE_BOOT_FILES: [&str; 2] = ["shimx64.efi", "grubx64.efi"];

impl Config {
    /// The file x86-64 UEFI clients get.
    pub fn uefi_x64_file(&self) -> &str {
        if self.boot.secure_boot_chain {
            SECURE_BOOT_FILES[0]
        } else {
            &self.boot.uefi_x64_file
        }
    }

    /// A TFTP file served from outside `boot.files_dir`: the Secure Boot
    /// chain's (see [`Config::secure_boot_file`]), and the deploy ramdisk
    /// and installer kernels and initrds under the names the HTTP server
    /// gives them (`deploy/kernel`, `images/<os_version>/initrd`), for boot
    /// loaders that speak TFTP only (Debian's signed GRUB netboot image).
    pub fn tftp_file(&self, name: &str) -> Option<PathBuf> {
        if let Some(p) = self.secure_boot_file(name) {
            return Some(p);
        }
        let local = |p: &str| {
            let ok = !p.is_empty() && !p.starts_with("http://") && !p.starts_with("https://");
            (ok && Path::new(p).is_file()).then(|| PathBuf::from(p))
        };
        match name {
            "deploy/kernel" => return local(&self.deploy.kernel),
            "deploy/initrd" => return local(&self.deploy.initrd),
            _ => {}
        }
        let (version, file) = name.strip_prefix("images/")?.split_once('/')?;
        let image = self
            .images
            .iter()
            .find(|i| image_path(&i.os_version) == format!("/images/{version}"))?;
        match file {
            "kernel" => local(&image.kernel),
            "initrd" => local(&image.initrd),
            _ => None,
        }
    }

    /// Where a boot file of the Secure Boot chain is served from when
    /// `files_dir` lacks it: beside the deploy kernel. `None` for other
    /// names, or with the chain off.
    pub fn secure_boot_file(&self, name: &str) -> Option<PathBuf> {
        if !self.boot.secure_boot_chain || !SECURE_BOOT_FILES.contains(&name) {
            return None;
        }
        if Path::new(&self.boot.files_dir).join(name).is_file() {
            return None;
        }
        let path = Path::new(&self.deploy.kernel).parent()?.join(name);
        path.is_file().then_some(path)
    }
}

/// The HTTP boot server's port (the URLs DHCP hands to iPXE and HTTP-boot
/// clients point there).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub port: u16,
    /// The IPv4 address the HTTP boot server listens on and names in the
    /// URLs it hands out; "" = the `[dhcp] interface`'s. Set without an
    /// interface, only HTTP runs (virtual-media deploys need no DHCP).
    pub address: String,
    /// Connections open at once (lowered to what the open-file limit
    /// allows); when full, the longest-idle connection is closed for a new one.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: 8080,
            address: String::new(),
            max_connections: 1024,
            max_connections_per_client: 32,
        }
    }
}

/// How the daemon reaches hosts that already run an OS (Node actions).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// User to log in as.
    pub user: String,
    /// Private key; empty: `<state_dir>/ssh/id_ed25519` (`rackboot ssh-key`
    /// creates it).
    pub key: String,
    /// SSH port of the hosts.
    pub port: u16,
    /// Seconds to connect and authenticate.
    pub connect_timeout: u64,
    /// Seconds one collection command may run.
    pub command_timeout: u64,
    /// Hosts collected at once.
    pub max_concurrent: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            user: "root".into(),
            key: String::new(),
            port: 22,
            connect_timeout: 5,
            command_timeout: 10,
            max_concurrent: 32,
        }
    }
}

impl Default for IpmiConfig {
    fn default() -> Self {
        IpmiConfig {
            timeout_ms: 1000,
            attempts: 3,
            max_concurrent: 64,
            sessions_per_bmc: 1,
            queue_per_bmc: 8,
            unreachable_backoff: 5,
            privilege: PrivilegeLevel::Administrator,
            power_sync_interval: 60,
            power_sync_failures: 3,
        }
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            default_credentials: Vec::new(),
            hostname_pattern: "bmc-{ip}".to_string(),
            concurrency: 128,
            rate: 2000,
            probe_timeout_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Where the database, the API socket and admin.password live. Empty:
    /// `/var/lib/rackboot` as root, else `$XDG_STATE_HOME/rackboot`.
    pub state_dir: String,
    /// Log verbosity; `RUST_LOG` overrides it.
    pub log_level: LogLevel,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: u64,
    /// `text` (under journald: each line with its syslog priority and no
    /// timestamp of its own) or `json` (one object per line).
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The API's Unix socket. Empty: `<state_dir>/api.sock`.
    pub socket: String,
    /// Permission bits of the socket, octal.
    pub socket_mode: String,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Requests served at once; more wait for a slot.
    pub max_concurrent_requests: usize,
    /// Connections open at once (lowered to what the open-file limit
    /// allows); when full, the longest-idle connection is closed for a new one.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Days a user message is kept (its `guaranteed_until`) before it is purged.
    pub retention_days: u32,
}

/// How long finished jobs are kept.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Days a finished job (its nodes and log lines) is kept before it is
    /// purged.
    pub retention_days: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig { retention_days: 90 }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `address:port` of `GET /metrics` (text exposition format); "" turns
    /// it off. Loopback by default: the numbers say what the rack holds.
    pub listen: String,
}

/// Where the metrics endpoint listens by default.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9740";

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: DEFAULT_METRICS_LISTEN.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// The name RegisterBMNodes' `os_version` refers to.
    pub os_version: String,
    /// `image` (a disk image written by the deploy ramdisk) or `installer`.
    #[serde(default = "default_method")]
    pub method: ImageMethod,
    /// A local file served over HTTP by rackboot.
    #[serde(default)]
    pub file: String,
    /// Or a URL (http/https): for an image, downloaded once into the image
    /// cache (it then needs `sha256` or `sha512`); for an installer, its
    /// repository.
    #[serde(default)]
    pub url: String,
    /// Hex SHA-256 of the image file (or download) as it is.
    #[serde(default)]
    pub sha256: String,
    /// Hex SHA-512, instead of or besides `sha256`.
    #[serde(default)]
    pub sha512: String,
    /// Installer method: the installer's kernel and initrd (absolute paths,
    /// served by rackboot, or http:// URLs), its extra kernel command line,
    /// and which install config it reads (`autoinstall`, `preseed`,
    /// `kickstart`).
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub initrd: String,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default)]
    pub template: String,
    /// Wait for the installed OS to call back on its first boot.
    #[serde(default)]
    pub first_boot_callback: bool,
}

/// The deploy ramdisk (`rackboot ramdisk build --out DIR` writes both
/// files) that writes images and reports inventories.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    pub kernel: String,
    pub initrd: String,
    /// Extra kernel command line of the ramdisk.
    pub cmdline: String,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            kernel: "/var/lib/rackboot/ramdisk/vmlinuz".into(),
            initrd: "/var/lib/rackboot/ramdisk/initrd.img".into(),
            cmdline: "console=ttyS0,115200".into(),
        }
    }
}

/// How provisioning and inspection run.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionConfig {
    /// Nodes worked on at once (the rest of a job waits its turn).
    pub max_concurrent: usize,
    /// Seconds from power-on until the node must have fetched its boot
    /// script or ramdisk (step2).
    pub boot_timeout: u64,
    /// Seconds the deploy (image write or installer) may take (step3),
    /// counted from the last sign of life it gave.
    pub deploy_timeout: u64,
    /// Seconds for the BMC to report power on after the final power cycle.
    pub power_on_timeout: u64,
    /// Seconds for the installed OS to call back on its first boot, when the
    /// image asks for it (`first_boot_callback`).
    pub first_boot_timeout: u64,
    /// Seconds an inspection may take in all.
    pub inspect_timeout: u64,
}

impl Default for ProvisionConfig {
    fn default() -> Self {
        ProvisionConfig {
            max_concurrent: 256,
            boot_timeout: 300,
            deploy_timeout: 1800,
            power_on_timeout: 60,
            first_boot_timeout: 600,
            inspect_timeout: 600,
        }
    }
}

/// Install configs an installer image may name in `template`.
pub const INSTALL_TEMPLATES: [&str; 3] = ["autoinstall", "preseed", "kickstart"];

/// Whether `s` can go into a kernel command line: no newline or other
/// control character (one would end or split the boot config's line).
pub fn kernel_cmdline_ok(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImageMethod {
    Image,
    Installer,
}

fn default_method() -> ImageMethod {
    ImageMethod::Image
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: String::new(),
            log_level: LogLevel::Info,
            shutdown_timeout: 5,
            log_format: LogFormat::Text,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: String::new(),
            socket_mode: "0660".to_string(),
            max_request_bytes: 1024 * 1024,
            max_concurrent_requests: 64,
            max_connections: 512,
        }
    }
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig { retention_days: 30 }
    }
}

/// A configuration that could not be loaded; the text names the file, the key,
/// the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {key} = {value}: {allowed}")]
    Invalid {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("{0}")]
    Template(String),
}

fn invalid(key: &str, value: impl ToString, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.daemon;
        if !(1..=300).contains(&d.shutdown_timeout) {
            return Err(invalid(
                "daemon.shutdown_timeout",
                d.shutdown_timeout,
                "allowed: 1 to 300 (seconds)",
            ));
        }
        if !d.state_dir.is_empty() && !Path::new(&d.state_dir).is_absolute() {
            return Err(invalid(
                "daemon.state_dir",
                format!("{:?}", d.state_dir),
                "allowed: an absolute path, or empty for the default",
            ));
        }
        let a = &self.api;
        if !a.socket.is_empty() && !Path::new(&a.socket).is_absolute() {
            return Err(invalid(
                "api.socket",
                format!("{:?}", a.socket),
                "allowed: an absolute path, or empty for <state_dir>/api.sock",
            ));
        }
        self.socket_mode()?;
        if !(1024..=256 * 1024 * 1024).contains(&a.max_request_bytes) {
            return Err(invalid(
                "api.max_request_bytes",
                a.max_request_bytes,
                "allowed: 1024 to 268435456",
            ));
        }
        if !(1..=4096).contains(&a.max_concurrent_requests) {
            return Err(invalid(
                "api.max_concurrent_requests",
                a.max_concurrent_requests,
                "allowed: 1 to 4096",
            ));
        }
        if !(1..=3650).contains(&self.messages.retention_days) {
            return Err(invalid(
                "messages.retention_days",
                self.messages.retention_days,
                "allowed: 1 to 3650 (days)",
            ));
        }
        if !(1..=3650).contains(&self.jobs.retention_days) {
            return Err(invalid(
                "jobs.retention_days",
                self.jobs.retention_days,
                "allowed: 1 to 3650 (days)",
            ));
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "metrics.listen",
                format!("{:?}", self.metrics.listen),
                &format!("allowed: an address:port such as \"{DEFAULT_METRICS_LISTEN}\", or \"\" to turn the metrics endpoint off"),
            ));
        }
        let i = &self.ipmi;
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(invalid(key, v, &format!("allowed: {lo} to {hi}")))
            }
        };
        range("ipmi.timeout_ms", i.timeout_ms, 50, 60_000)?;
        range("ipmi.attempts", i.attempts.into(), 1, 10)?;
        range("ipmi.max_concurrent", i.max_concurrent as u64, 1, 4096)?;
        range("ipmi.sessions_per_bmc", i.sessions_per_bmc as u64, 1, 16)?;
        range("ipmi.queue_per_bmc", i.queue_per_bmc as u64, 0, 1000)?;
        range("ipmi.unreachable_backoff", i.unreachable_backoff, 0, 3600)?;
        if i.power_sync_interval != 0 {
            range("ipmi.power_sync_interval", i.power_sync_interval, 1, 86_400)?;
        }
        range(
            "ipmi.power_sync_failures",
            i.power_sync_failures.into(),
            1,
            100,
        )?;
        let r = &self.redfish;
        range("redfish.timeout_ms", r.timeout_ms, 100, 600_000)?;
        range("redfish.task_timeout", r.task_timeout, 1, 86_400)?;
        if !r.ca_file.is_empty() && !Path::new(&r.ca_file).is_absolute() {
            return Err(invalid(
                "redfish.ca_file",
                format!("{:?}", r.ca_file),
                "allowed: an absolute path to PEM certificates, or empty",
            ));
        }
        if !r.ca_file.is_empty() {
            use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
            let count = CertificateDer::pem_file_iter(&r.ca_file)
                .map(|certs| certs.filter(|c| c.is_ok()).count())
                .unwrap_or(0);
            if count == 0 {
                return Err(invalid(
                    "redfish.ca_file",
                    format!("{:?}", r.ca_file),
                    "allowed: a readable file of PEM certificates (none could be read from it)",
                ));
            }
        }
        if !self.http.address.is_empty() && self.http.address.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(invalid(
                "http.address",
                format!("{:?}", self.http.address),
                "allowed: an IPv4 address of this host, or empty for the [dhcp] interface's",
            ));
        }
        let sc = &self.scan;
        range("scan.concurrency", sc.concurrency as u64, 1, 4096)?;
        range("scan.rate", sc.rate.into(), 1, 100_000)?;
        range("scan.probe_timeout_ms", sc.probe_timeout_ms, 10, 60_000)?;
        if !sc.hostname_pattern.contains("{ip}") {
            return Err(invalid(
                "scan.hostname_pattern",
                format!("{:?}", sc.hostname_pattern),
                "allowed: a pattern containing {ip} (so each BMC gets its own name)",
            ));
        }
        for (n, c) in sc.default_credentials.iter().enumerate() {
            if c.username.len() > 16 || c.password.len() > 20 {
                return Err(invalid(
                    &format!("scan.default_credentials[{n}]"),
                    format!("{:?}", c.username),
                    "allowed: a user name of at most 16 bytes and a password of at most 20",
                ));
            }
        }
        let ssh = &self.ssh;
        if ssh.user.is_empty() || ssh.user.contains(char::is_whitespace) {
            return Err(invalid(
                "ssh.user",
                format!("{:?}", ssh.user),
                "allowed: a user name",
            ));
        }
        if !ssh.key.is_empty() && !Path::new(&ssh.key).is_absolute() {
            return Err(invalid(
                "ssh.key",
                format!("{:?}", ssh.key),
                "allowed: an absolute path, or empty for <state_dir>/ssh/id_ed25519",
            ));
        }
        range("ssh.port", ssh.port.into(), 1, 65535)?;
        range("ssh.connect_timeout", ssh.connect_timeout, 1, 300)?;
        range("ssh.command_timeout", ssh.command_timeout, 1, 3600)?;
        range("ssh.max_concurrent", ssh.max_concurrent as u64, 1, 1024)?;
        let d = &self.dhcp;
        if !d.interface.is_empty() {
            if d.interface.len() > 15 || d.interface.contains(['/', ' ']) {
                return Err(invalid(
                    "dhcp.interface",
                    format!("{:?}", d.interface),
                    "allowed: an interface name (at most 15 characters)",
                ));
            }
            let ip = |key: &str, v: &str| {
                crate::foundation::validate::ipv4(v).map_err(|why| {
                    invalid(
                        key,
                        format!("{v:?}"),
                        &format!("allowed: an IPv4 address ({why})"),
                    )
                })
            };
            if d.mode == DhcpMode::Full && (d.range_start.is_empty() || d.range_end.is_empty()) {
                return Err(invalid(
                    "dhcp.range_start",
                    format!("{:?}", d.range_start),
                    "a full DHCP server needs dhcp.range_start and dhcp.range_end (the addresses it may hand out); or set dhcp.mode = \"proxy\" beside an existing DHCP server",
                ));
            }
            if d.mode == DhcpMode::Full || !d.range_start.is_empty() {
                let start = ip("dhcp.range_start", &d.range_start)?;
                let end = ip("dhcp.range_end", &d.range_end)?;
                if u32::from(end) < u32::from(start) {
                    return Err(invalid(
                        "dhcp.range_end",
                        &d.range_end,
                        "allowed: an address not before dhcp.range_start",
                    ));
                }
            }
            crate::foundation::validate::netmask(&d.netmask).map_err(|why| {
                invalid(
                    "dhcp.netmask",
                    format!("{:?}", d.netmask),
                    &format!("allowed: a netmask ({why})"),
                )
            })?;
            if !d.router.is_empty() {
                ip("dhcp.router", &d.router)?;
            }
            range("dhcp.lease_time", d.lease_time.into(), 60, 31_536_000)?;
        }
        for (key, file) in [
            ("boot.bios_file", &self.boot.bios_file),
            ("boot.uefi_x64_file", &self.boot.uefi_x64_file),
            ("boot.uefi_arm64_file", &self.boot.uefi_arm64_file),
        ] {
            if file.is_empty()
                || file.len() > 100
                || file.starts_with('/')
                || file.split('/').any(|part| part == "..")
                || file.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(invalid(
                    key,
                    format!("{file:?}"),
                    "allowed: a file name under boot.files_dir (relative, no `..`, no spaces, at most 100 bytes)",
                ));
            }
        }
        range("tftp.max_blksize", self.tftp.max_blksize.into(), 512, 65464)?;
        range(
            "tftp.max_windowsize",
            self.tftp.max_windowsize.into(),
            1,
            1024,
        )?;
        range(
            "tftp.max_transfers",
            self.tftp.max_transfers as u64,
            1,
            4096,
        )?;
        range(
            "tftp.max_transfers_per_client",
            self.tftp.max_transfers_per_client as u64,
            1,
            4096,
        )?;
        range(
            "api.max_connections",
            self.api.max_connections as u64,
            8,
            65536,
        )?;
        range(
            "http.max_connections",
            self.http.max_connections as u64,
            8,
            65536,
        )?;
        range(
            "http.max_connections_per_client",
            self.http.max_connections_per_client as u64,
            1,
            65536,
        )?;
        let mut seen = std::collections::HashSet::new();
        for (i, image) in self.images.iter().enumerate() {
            let key = |k: &str| format!("images[{i}].{k}");
            if image.os_version.trim().is_empty() {
                return Err(invalid(
                    &key("os_version"),
                    "\"\"",
                    "allowed: a non-empty name",
                ));
            }
            if !seen.insert(image.os_version.as_str()) {
                return Err(invalid(
                    &key("os_version"),
                    format!("{:?}", image.os_version),
                    "allowed: a name not used by another [[images]] entry",
                ));
            }
            if image.file.is_empty() == image.url.is_empty() {
                return Err(invalid(
                    &key("file"),
                    format!("{:?} (url = {:?})", image.file, image.url),
                    "allowed: exactly one of `file` (an absolute path) or `url` (http://…)",
                ));
            }
            if !image.file.is_empty() && !Path::new(&image.file).is_absolute() {
                return Err(invalid(
                    &key("file"),
                    format!("{:?}", image.file),
                    "allowed: an absolute path",
                ));
            }
            if !image.url.is_empty()
                && !image.url.starts_with("http://")
                && !image.url.starts_with("https://")
            {
                return Err(invalid(
                    &key("url"),
                    format!("{:?}", image.url),
                    "allowed: an http:// or https:// URL",
                ));
            }
            if !image.sha256.is_empty()
                && (image.sha256.len() != 64
                    || !image.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(invalid(
                    &key("sha256"),
                    format!("{:?}", image.sha256),
                    "allowed: 64 hex digits, or empty",
                ));
            }
            if !image.sha512.is_empty()
                && (image.sha512.len() != 128
                    || !image.sha512.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(invalid(
                    &key("sha512"),
                    format!("{:?}", image.sha512),
                    "allowed: 128 hex digits, or empty",
                ));
            }
            if image.method == ImageMethod::Image
                && !image.url.is_empty()
                && image.sha256.is_empty()
                && image.sha512.is_empty()
            {
                return Err(invalid(
                    &key("sha256"),
                    format!("\"\" (url = {:?})", image.url),
                    "allowed: the image's sha256 or sha512: a URL image is downloaded once into the image cache and checked against it before any node gets it",
                ));
            }
            let path_or_url = |k: &str, v: &str| {
                if v.is_empty()
                    || Path::new(v).is_absolute()
                    || v.starts_with("http://")
                    || v.starts_with("https://")
                {
                    Ok(())
                } else {
                    Err(invalid(
                        &key(k),
                        format!("{v:?}"),
                        "allowed: an absolute path (served by rackboot) or an http:// URL",
                    ))
                }
            };
            path_or_url("kernel", &image.kernel)?;
            path_or_url("initrd", &image.initrd)?;
            if !kernel_cmdline_ok(&image.cmdline) {
                return Err(invalid(
                    &key("cmdline"),
                    format!("{:?}", image.cmdline),
                    "allowed: one line without control characters",
                ));
            }
            if image.method == ImageMethod::Installer {
                if image.kernel.is_empty() || image.initrd.is_empty() {
                    return Err(invalid(
                        &key("kernel"),
                        format!("{:?} (initrd = {:?})", image.kernel, image.initrd),
                        "allowed: the installer's kernel and initrd (both required with method = \"installer\")",
                    ));
                }
                if !INSTALL_TEMPLATES.contains(&image.template.as_str()) {
                    return Err(invalid(
                        &key("template"),
                        format!("{:?}", image.template),
                        "allowed: autoinstall, preseed or kickstart (required with method = \"installer\")",
                    ));
                }
            } else if !image.template.is_empty() {
                return Err(invalid(
                    &key("template"),
                    format!("{:?}", image.template),
                    "allowed: empty (install configs are for method = \"installer\")",
                ));
            }
        }
        let pr = &self.provision;
        range(
            "provision.max_concurrent",
            pr.max_concurrent as u64,
            1,
            10_000,
        )?;
        range("provision.boot_timeout", pr.boot_timeout, 5, 86_400)?;
        range("provision.deploy_timeout", pr.deploy_timeout, 5, 86_400)?;
        range("provision.power_on_timeout", pr.power_on_timeout, 1, 3600)?;
        range(
            "provision.first_boot_timeout",
            pr.first_boot_timeout,
            5,
            86_400,
        )?;
        range("provision.inspect_timeout", pr.inspect_timeout, 5, 86_400)?;
        if !kernel_cmdline_ok(&self.deploy.cmdline) {
            return Err(invalid(
                "deploy.cmdline",
                format!("{:?}", self.deploy.cmdline),
                "allowed: one line without control characters",
            ));
        }
        for (k, v) in [
            ("deploy.kernel", &self.deploy.kernel),
            ("deploy.initrd", &self.deploy.initrd),
        ] {
            if !v.is_empty() && !Path::new(v).is_absolute() {
                return Err(invalid(k, format!("{v:?}"), "allowed: an absolute path"));
            }
        }
        if !self.boot.templates_dir.is_empty() && !Path::new(&self.boot.templates_dir).is_absolute()
        {
            return Err(invalid(
                "boot.templates_dir",
                format!("{:?}", self.boot.templates_dir),
                "allowed: an absolute path, or empty for the built-in templates",
            ));
        }
        Ok(())
    }

    /// The socket's permission bits.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        let s = &self.api.socket_mode;
        match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 && !s.is_empty() => Ok(mode),
            _ => Err(invalid(
                "api.socket_mode",
                format!("{s:?}"),
                "allowed: octal permission bits such as \"0660\"",
            )),
        }
    }

    /// Whether `os_version` names an entry of the image catalogue.
    pub fn knows_os_version(&self, os_version: &str) -> bool {
        self.images.iter().any(|i| i.os_version == os_version)
    }
}

/// The configuration file read when `--config` is not given, if it exists
/// (the .deb installs it as a conffile).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/rackboot/rackboot.toml";

/// The configuration file to read: `--config`, else [`DEFAULT_CONFIG_FILE`]
/// when it exists, else none (embedded defaults).
pub fn resolve_config_path(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
    }
}

impl Config {
    /// The configuration as TOML, every key present (defaults filled in),
    /// scan passwords replaced by `********`.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        for c in &mut shown.scan.default_credentials {
            c.password = "********".to_string();
        }
        toml::to_string(&shown)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

/// The state directory used when neither `--state-dir` nor `daemon.state_dir`
/// says otherwise: `/var/lib/rackboot` for root, else
/// `$XDG_STATE_HOME/rackboot`, else `~/.local/state/rackboot`.
pub fn default_state_dir() -> PathBuf {
    if nix_is_root() {
        return PathBuf::from("/var/lib/rackboot");
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("rackboot");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/state/rackboot")
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The state directory chosen by flag, then config, then default.
pub fn resolve_state_dir(flag: Option<&Path>, config: &Config) -> PathBuf {
    match flag {
        Some(p) => p.to_path_buf(),
        None if !config.daemon.state_dir.is_empty() => PathBuf::from(&config.daemon.state_dir),
        None => default_state_dir(),
    }
}

/// The API socket path for a state directory and config.
pub fn socket_path(state_dir: &Path, config: &Config) -> PathBuf {
    if config.api.socket.is_empty() {
        state_dir.join("api.sock")
    } else {
        PathBuf::from(&config.api.socket)
    }
}

/// The server path of an image's files.
pub fn image_path(os_version: &str) -> String {
    format!("/images/{}", percent_encode(os_version))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[api]\nsockett = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sockett"), "{err}");
        assert!(err.contains("socket"), "{err}");
        let err = Config::parse("[dhcpp]\n").unwrap_err().to_string();
        assert!(err.contains("dhcpp"), "{err}");
    }

    #[test]
    fn invalid_values_name_key_value_and_what_is_allowed() {
        let err = Config::parse("[daemon]\nlog_level = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loud") && err.contains("debug"), "{err}");
        let err = Config::parse("[messages]\nretention_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("messages.retention_days") && err.contains("1 to 3650"),
            "{err}"
        );
        let err = Config::parse("[api]\nsocket_mode = \"rw\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("api.socket_mode") && err.contains("\"rw\""),
            "{err}"
        );
        let err = Config::parse("[[images]]\nos_version = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("images[0].file"), "{err}");
        // A PXE interface in full mode without a range says what is missing
        // and the other way out.
        let err = Config::parse("[dhcp]\ninterface = \"rb-srv\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs dhcp.range_start and dhcp.range_end") && err.contains("proxy"),
            "{err}"
        );
        Config::parse("[dhcp]\ninterface = \"rb-srv\"\nmode = \"proxy\"\n").unwrap();
    }

    #[test]
    fn the_example_config_is_valid_and_equals_the_defaults_where_commented() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/rackboot.toml"
        ));
        let config = Config::parse(text).unwrap();
        assert_eq!(config.daemon, DaemonConfig::default());
        assert_eq!(config.api, ApiConfig::default());
        assert_eq!(config.messages, MessagesConfig::default());
        assert_eq!(config.ipmi, IpmiConfig::default());
        assert_eq!(config.scan, ScanConfig::default());
        assert_eq!(config.ssh, SshConfig::default());
        assert_eq!(config.dhcp, DhcpConfig::default());
        assert_eq!(config.tftp, TftpConfig::default());
        assert_eq!(config.boot, BootConfig::default());
        assert_eq!(config.http, HttpConfig::default());
    }
}
