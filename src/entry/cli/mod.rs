//! The command-line interface. `rackboot serve` runs the daemon; every other
//! subcommand is an API client: one subcommand per action of
//! [`crate::transport::api::catalogue::ACTIONS`] (kebab-case, flags from the action's
//! declared parameters), plus `call` (any JSON as is), `user`
//! (add|passwd|delete|list, mapped onto the user actions), `config
//! check|show` (the configuration `serve` would run with), `completions
//! SHELL` and `manpages DIR`. `--help` lists the subcommands in groups
//! ([`group_of`]).
//!
//! Exit status: 0 success, 1 the API answered a non-zero `ret_code` (its
//! message on stderr), 2 bad usage, 3 the daemon could not be reached,
//! 78 ([`daemon::EXIT_CONFIG`]) an invalid configuration.

pub mod client;
pub mod console;
pub mod output;

use crate::entry::daemon::{self, ServeOptions, ADMIN_PASSWORD_FILE, EXIT_CONFIG};
use crate::foundation::config;
use crate::transport::api::catalogue::{find_action, Action, ACTIONS};
use crate::transport::api::params::Ty;
use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status when the API answered with a non-zero ret_code.
pub const EXIT_API_ERROR: i32 = 1;
/// Exit status for bad usage (bad flags, unreadable --file).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when the daemon cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Where the packaged unit's daemon listens (systemd's RuntimeDirectory);
/// the CLI's default socket when it exists.
pub const RUNTIME_SOCKET: &str = "/run/rackboot/api.sock";

fn kebab(name: &str) -> String {
    name.replace('_', "-")
}

/// The `--long` names of every 0/1 parameter: switches on the command line.
fn switch_names() -> std::collections::BTreeSet<String> {
    ACTIONS
        .iter()
        .flat_map(|a| a.params.iter())
        .filter(|p| p.ty == Ty::Flag)
        .map(|p| format!("--{}", kebab(p.name)))
        .collect()
}

/// Keeps the older `--force 1` / `--force 0` spelling of a switch working:
/// rewritten to `--force=1` / `--force=0` before parsing.
fn normalise_switches(args: Vec<OsString>) -> Vec<OsString> {
    let names = switch_names();
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    while let Some(arg) = it.next() {
        let is_switch = arg.to_str().is_some_and(|a| names.contains(a));
        match it.peek().and_then(|n| n.to_str()) {
            Some(v @ ("0" | "1")) if is_switch => {
                let mut joined = arg.clone();
                joined.push(format!("={v}"));
                out.push(joined);
                it.next();
            }
            _ => out.push(arg),
        }
    }
    out
}

/// The `--help` group of a top-level subcommand.
pub fn group_of(command: &str) -> &'static str {
    const SETUP: &[&str] = &[
        "serve",
        "config",
        "health",
        "db",
        "completions",
        "manpages",
        "lab",
        "ramdisk",
        "call",
        "help",
    ];
    if SETUP.contains(&command) {
        "Daemon and setup"
    } else if command == "user"
        || command.ends_with("-user")
        || command.ends_with("-users")
        || command.contains("user-password")
    {
        "Users"
    } else if command.starts_with("console") {
        "Bare-metal nodes"
    } else if command.contains("message") {
        "Messages"
    } else if command.contains("provision")
        || command.contains("introspect")
        || command.contains("boot-events")
    {
        "Provisioning"
    } else if command.contains("bm-node") {
        "Bare-metal nodes"
    } else if command.contains("node") || command == "ssh-key" {
        "Hosts over SSH"
    } else if command.contains("status") || command.contains("log") || command.contains("job") {
        "Jobs"
    } else {
        "Other"
    }
}

const GROUPS: &[&str] = &[
    "Daemon and setup",
    "Bare-metal nodes",
    "Provisioning",
    "Jobs",
    "Hosts over SSH",
    "Users",
    "Messages",
    "Other",
];

/// The subcommands of `cmd`, grouped, for the top-level `--help`.
fn grouped_subcommands(cmd: &Command) -> String {
    let mut groups: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    let mut entries: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| {
            (
                c.get_name().to_string(),
                c.get_about().map(|a| a.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    entries.push((
        "help".into(),
        "Print this message or the help of the given subcommand(s)".into(),
    ));
    let width = entries.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, about) in entries {
        let g = group_of(&name);
        let i = GROUPS.iter().position(|x| *x == g).unwrap_or(GROUPS.len());
        groups.entry(i).or_default().push((name, about));
    }
    let mut out = String::new();
    for (i, cmds) in groups {
        out.push_str(&format!("{}:\n", GROUPS.get(i).copied().unwrap_or("Other")));
        for (name, about) in cmds {
            out.push_str(&format!("  {name:<width$}  {about}\n"));
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

fn action_command(action: &'static Action) -> Command {
    let mut cmd = Command::new(action.command)
        .about(action.about)
        .long_about(format!("{}\n\nAPI action: {}", action.about, action.name));
    for param in action.params {
        if param.ty == Ty::Objects {
            continue; // only through --file
        }
        let mut arg = Arg::new(param.name).help(param.help);
        if action.positional == Some(param.name) {
            arg = arg.value_name(param.name.to_uppercase());
        } else {
            arg = arg.long(kebab(param.name)).value_name("VALUE");
        }
        arg = match param.ty {
            Ty::Str => arg.num_args(1),
            Ty::Int => arg.num_args(1).value_parser(clap::value_parser!(i64)),
            // A switch: `--force` sends 1, `--force=0` sends 0 (and the
            // older `--force 1` still works, see normalise_switches).
            Ty::Flag => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("1")
                .value_name("0|1")
                .value_parser(clap::value_parser!(i64).range(0..=1)),
            Ty::List => arg
                .num_args(1..)
                .value_delimiter(',')
                .action(ArgAction::Append),
            Ty::Objects => arg,
            Ty::Object => arg.num_args(1).value_name("JSON"),
        };
        cmd = cmd.arg(arg);
    }
    cmd = cmd.arg(
        Arg::new("file")
            .long("file")
            .value_name("FILE")
            .help("read parameters from a JSON file (an object of parameters; a list is taken as the action's object list, e.g. bm_nodes); flags override it"),
    );
    if action.name == "GetStatus" || action.job || action.name.ends_with("BMNodesStatus") {
        cmd = cmd.arg(
            Arg::new("wait")
                .long("wait")
                .action(ArgAction::SetTrue)
                .help(
                    "follow the job with a progress bar until it ends; exit 1 unless it succeeded",
                ),
        );
    }
    cmd
}

/// The whole command tree.
pub fn command() -> Command {
    let mut cmd = Command::new("rackboot")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Bare-metal provisioning agent: `rackboot serve` runs the daemon; the other subcommands call its API")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(Arg::new("socket").long("socket").global(true).env("RACKBOOT_SOCKET").value_name("PATH").help("the API socket (default: <state-dir>/api.sock when --state-dir is given, else /run/rackboot/api.sock when it exists, else <state-dir>/api.sock)"))
        .arg(Arg::new("state_dir").long("state-dir").global(true).env("RACKBOOT_STATE_DIR").value_name("DIR").help("the state directory (default: /var/lib/rackboot as root, else $XDG_STATE_HOME/rackboot)"))
        .arg(Arg::new("user").long("user").global(true).env("RACKBOOT_USER").value_name("USER").help("API user (default: admin, with <state-dir>/admin.password)"))
        .arg(Arg::new("password").long("password").global(true).env("RACKBOOT_PASSWORD").hide_env_values(true).value_name("PASSWORD").help("API password (of admin unless --user)"))
        .arg(Arg::new("json").long("json").global(true).action(ArgAction::SetTrue).help("print the raw JSON response (with --wait: the job's final status)"))
        .subcommand(
            Command::new("serve")
                .about("Run the daemon")
                .arg(Arg::new("config").long("config").value_name("FILE").help(config_help())),
        )
        .subcommand(
            Command::new("config")
                .about("Check or show the configuration `serve` would run with")
                .subcommand_required(true)
                .subcommand(
                    Command::new("check")
                        .about("Load and validate the configuration (keys, values, boot templates); exit 78 naming what is wrong")
                        .arg(Arg::new("config").long("config").value_name("FILE").help(config_help())),
                )
                .subcommand(
                    Command::new("show")
                        .about("Print the effective configuration as TOML, every default filled in (passwords hidden)")
                        .arg(Arg::new("config").long("config").value_name("FILE").help(config_help())),
                ),
        )
        .subcommand(
            Command::new("db")
                .about("Back up or check the database file (works with the daemon running or stopped)")
                .subcommand_required(true)
                .subcommand(
                    Command::new("backup")
                        .about("Write a consistent, checked copy of <state-dir>/rackboot.db to FILE (mode 0600; never over an existing file)")
                        .arg(Arg::new("file").required(true).value_name("FILE")),
                )
                .subcommand(
                    Command::new("check")
                        .about("SQLite's integrity and foreign-key checks of <state-dir>/rackboot.db; exit 1 naming the problems"),
                ),
        )
        .subcommand(
            Command::new("completions")
                .about("Print the shell completion script for SHELL")
                .arg(Arg::new("shell").required(true).value_name("SHELL").value_parser(clap::value_parser!(clap_complete::Shell))),
        )
        .subcommand(
            Command::new("manpages")
                .about("Write the man pages (rackboot.1 and one per subcommand) into DIR")
                .arg(Arg::new("dir").required(true).value_name("DIR")),
        )
        .subcommand(
            Command::new("lab")
                .about("A provisioning lab on this machine: QEMU VMs behind virtual BMCs, provisioned by rackboot (root)")
                .subcommand_required(true)
                .subcommand(
                    Command::new("up")
                        .about("Create the lab, provision its VMs, show progress and what happened")
                        .arg(Arg::new("nodes").long("nodes").value_name("N").default_value("2").value_parser(clap::value_parser!(u32)).help("VMs (1 to 16)"))
                        .arg(Arg::new("dir").long("dir").value_name("DIR").default_value("/var/lib/rackboot-lab").help("the lab's files"))
                        .arg(Arg::new("netns").long("netns").value_name("NAME").default_value("rackboot-lab").help("the network namespace"))
                        .arg(Arg::new("no_provision").long("no-provision").action(ArgAction::SetTrue).help("start VMs, BMCs and rackboot only"))
                        .arg(Arg::new("boot_timeout").long("boot-timeout").value_name("SECS").default_value("120").value_parser(clap::value_parser!(u64)).help("provision.boot_timeout of the lab's rackboot"))
                        .arg(Arg::new("hardware").long("hardware").value_name("SPEC").action(ArgAction::Append).help("a VM's hardware, e.g. nic=e1000e,disk=ahci,firmware=uefi,disks=2 (repeat: VM i takes the i-th, cycling; nic: virtio e1000 e1000e vmxnet3 rtl8139; disk: virtio-blk virtio-scsi ahci nvme megasas lsi; firmware: bios uefi secureboot; bmc: lan, inband (an in-band KCS interface to the BMC); default nic=virtio,disk=virtio-blk,firmware=bios,bmc=lan)"))
                        .arg(Arg::new("agent").long("agent").value_name("FILE").help("the rackboot-agent for the ramdisk (default: beside this program)"))
                        .arg(Arg::new("secure_boot_chain").long("secure-boot-chain").value_name("WHEN").value_parser(["auto", "on", "off"]).default_value("auto").help("[boot] secure_boot_chain of the lab's rackboot (auto: on when a VM has firmware=secureboot)")),
                )
                .subcommand(
                    Command::new("down")
                        .about("Stop and remove everything `lab up` created")
                        .arg(Arg::new("dir").long("dir").value_name("DIR").default_value("/var/lib/rackboot-lab")),
                )
                .subcommand(
                    Command::new("serial-relay")
                        .hide(true)
                        .about("(internal) Relay a lab VM's serial port to its BMC's SOL across VM restarts, on 127.0.0.1")
                        .arg(Arg::new("bmc_port").long("bmc-port").required(true).value_parser(clap::value_parser!(u16)))
                        .arg(Arg::new("vm_port").long("vm-port").required(true).value_parser(clap::value_parser!(u16))),
                ),
        )
        .subcommand(
            Command::new("ramdisk")
                .about("The deploy ramdisk")
                .subcommand_required(true)
                .subcommand(
                    Command::new("build")
                        .about("Build vmlinuz and initrd.img from Debian's generic kernel with server drivers, busybox-static and rackboot-agent, plus the signed Secure Boot chain (shimx64.efi, grubx64.efi); needs apt and dpkg")
                        .arg(Arg::new("out").long("out").value_name("DIR").default_value(crate::service::ramdisk::DEFAULT_OUT).help("where vmlinuz and initrd.img go ([deploy] kernel/initrd)"))
                        .arg(Arg::new("kernel_package").long("kernel-package").value_name("PKG").help("the linux-image package (default: what linux-image-amd64 points at)"))
                        .arg(Arg::new("agent").long("agent").value_name("FILE").help("the statically linked rackboot-agent (default: beside this program, else /usr/lib/rackboot/rackboot-agent)"))
                        .arg(Arg::new("cache").long("cache").value_name("DIR").help("where the .debs are kept (default: OUT/cache)")),
                ),
        )
        .subcommand(
            Command::new("call")
                .about("Send one JSON request as is (credentials are added when missing)")
                .arg(Arg::new("request").required(true).value_name("JSON")),
        )
        .subcommand(
            Command::new("user")
                .about("Manage API users")
                .subcommand_required(true)
                .subcommand(Command::new("list").about("List users (DescribeUsers)"))
                .subcommand(
                    Command::new("add")
                        .about("Add a user (AddUser); prints a generated password unless --new-password")
                        .arg(Arg::new("user_id").required(true).value_name("NAME"))
                        .arg(Arg::new("new_password").long("new-password").value_name("PASSWORD")),
                )
                .subcommand(
                    Command::new("passwd")
                        .about("Set a user's password (ModifyUserPassword); prints a generated one unless --new-password")
                        .arg(Arg::new("user_id").required(true).value_name("NAME"))
                        .arg(Arg::new("new_password").long("new-password").value_name("PASSWORD")),
                )
                .subcommand(
                    Command::new("delete")
                        .about("Delete a user (DeleteUser)")
                        .arg(Arg::new("user_id").required(true).value_name("NAME")),
                ),
        );
    for action in ACTIONS {
        cmd = cmd.subcommand(action_command(action));
    }
    let grouped = grouped_subcommands(&cmd);
    cmd.before_help(grouped).help_template(
        "{about-with-newline}\n{usage-heading} {usage}\n\n{before-help}Options:\n{options}{after-help}",
    )
}

fn config_help() -> String {
    format!(
        "TOML configuration file (default: {} when it exists, else the embedded defaults; every key: examples/rackboot.toml)",
        config::DEFAULT_CONFIG_FILE
    )
}

/// Writes `rackboot.1` and `rackboot-<sub>.1` (nested: `rackboot-<sub>-<sub>.1`)
/// into `dir`; returns how many.
pub fn write_man_pages(dir: &Path) -> std::io::Result<usize> {
    fn walk(cmd: &Command, name: String, dir: &Path, n: &mut usize) -> std::io::Result<()> {
        let page = cmd
            .clone()
            .name(name.clone())
            .bin_name(name.replace('-', " "));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), buf)?;
        *n += 1;
        for sub in cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        {
            walk(sub, format!("{name}-{}", sub.get_name()), dir, n)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = command();
    cmd.build();
    let mut n = 0;
    walk(&cmd, "rackboot".into(), dir, &mut n)?;
    Ok(n)
}

/// `rackboot config check|show`.
fn config_command(verb: &str, args: &ArgMatches) -> i32 {
    let flag = args.get_one::<String>("config").map(PathBuf::from);
    match daemon::check_config(flag.as_deref()) {
        Err(e) => {
            eprintln!("rackboot: {e}");
            EXIT_CONFIG
        }
        Ok((path, config)) => {
            let source = match &path {
                Some(p) => p.display().to_string(),
                None => format!(
                    "embedded defaults ({} does not exist)",
                    config::DEFAULT_CONFIG_FILE
                ),
            };
            if verb == "check" {
                println!("configuration OK: {source}");
            } else {
                println!("# effective configuration: {source}");
                print!("{}", config.to_toml_redacted());
            }
            0
        }
    }
}

/// `rackboot db backup FILE` and `rackboot db check`, on the state
/// directory's database file.
fn db_command(verb: &str, args: &ArgMatches, state_dir: Option<&std::path::Path>) -> i32 {
    // The state directory `serve` would use (its config file's state_dir too).
    let config = daemon::check_config(None)
        .map(|(_, c)| c)
        .unwrap_or_default();
    let dir = config::resolve_state_dir(state_dir, &config);
    let db = dir.join(daemon::DATABASE_FILE);
    if verb == "backup" {
        let dest = PathBuf::from(args.get_one::<String>("file").expect("required"));
        return match crate::foundation::store::backup(&db, &dest) {
            Ok(r) => {
                println!(
                    "backed up {} to {}: {} bytes, schema {}, {} BMNodes, {} jobs; checked: ok",
                    db.display(),
                    dest.display(),
                    r.bytes,
                    r.schema_version,
                    r.bm_nodes,
                    r.jobs
                );
                println!("restore: stop the daemon, copy the file to {} (mode 0600, owned by the daemon's user), start it", db.display());
                0
            }
            Err(e) => {
                eprintln!("rackboot: db backup: {e}");
                1
            }
        };
    }
    match crate::foundation::store::check_file(&db) {
        Ok(p) if p.is_empty() => {
            println!("{}: ok", db.display());
            0
        }
        Ok(p) => {
            eprintln!(
                "rackboot: db check: {} has {} problem(s):",
                db.display(),
                p.len()
            );
            for line in p {
                eprintln!("  {line}");
            }
            eprintln!("restore the last backup (`rackboot db backup` makes one) or the copy made before the last schema upgrade");
            1
        }
        Err(e) => {
            eprintln!("rackboot: db check: {e}");
            1
        }
    }
}

/// Entry point of the binary; returns the exit status.
pub fn main() -> i32 {
    let args = normalise_switches(std::env::args_os().collect());
    let matches = match command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let state_dir = matches.get_one::<String>("state_dir").map(PathBuf::from);
    let (name, sub) = matches.subcommand().expect("subcommand_required");
    if name == "serve" {
        return daemon::run(ServeOptions {
            config: sub.get_one::<String>("config").map(PathBuf::from),
            state_dir,
        });
    }
    if name == "config" {
        let (verb, args) = sub.subcommand().expect("subcommand_required");
        return config_command(verb, args);
    }
    if name == "db" {
        let (verb, args) = sub.subcommand().expect("subcommand_required");
        return db_command(verb, args, state_dir.as_deref());
    }
    if name == "completions" {
        let shell = *sub
            .get_one::<clap_complete::Shell>("shell")
            .expect("required");
        clap_complete::generate(shell, &mut command(), "rackboot", &mut std::io::stdout());
        return 0;
    }
    if name == "manpages" {
        let dir = PathBuf::from(sub.get_one::<String>("dir").expect("required"));
        return match write_man_pages(&dir) {
            Ok(n) => {
                println!("{n} man pages written to {}", dir.display());
                0
            }
            Err(e) => {
                eprintln!(
                    "rackboot: manpages: cannot write into {}: {e}",
                    dir.display()
                );
                1
            }
        };
    }
    if name == "lab" {
        let (verb, args) = sub.subcommand().expect("subcommand_required");
        if verb == "serial-relay" {
            let port = |k: &str| *args.get_one::<u16>(k).expect("required");
            return match crate::entry::lab::serial_relay(port("bmc_port"), port("vm_port")) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("rackboot lab serial-relay: {e}");
                    1
                }
            };
        }
        let dir = PathBuf::from(args.get_one::<String>("dir").expect("has a default"));
        let result = if verb == "up" {
            let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rackboot"));
            crate::entry::lab::up(&crate::entry::lab::LabOptions {
                nodes: *args.get_one::<u32>("nodes").expect("has a default"),
                netns: args
                    .get_one::<String>("netns")
                    .expect("has a default")
                    .clone(),
                provision: !args.get_flag("no_provision"),
                boot_timeout: *args.get_one::<u64>("boot_timeout").expect("has a default"),
                hardware: match args
                    .get_many::<String>("hardware")
                    .map(|specs| {
                        specs
                            .map(|s| crate::entry::lab::Hardware::parse(s))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()
                {
                    Ok(h) => h.unwrap_or_default(),
                    Err(e) => {
                        eprintln!("rackboot lab up: --hardware: {e}");
                        return 2;
                    }
                },
                agent: args.get_one::<String>("agent").map(PathBuf::from),
                secure_boot_chain: match args
                    .get_one::<String>("secure_boot_chain")
                    .map(String::as_str)
                {
                    Some("on") => Some(true),
                    Some("off") => Some(false),
                    _ => None,
                },
                dir,
                binary,
            })
        } else {
            crate::entry::lab::down(&dir)
        };
        return match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("rackboot lab {verb}: {e}");
                1
            }
        };
    }
    if name == "ramdisk" {
        let (_, args) = sub.subcommand().expect("subcommand_required");
        let out = PathBuf::from(args.get_one::<String>("out").expect("has a default"));
        let cache = args
            .get_one::<String>("cache")
            .map(PathBuf::from)
            .unwrap_or_else(|| out.join("cache"));
        let package = args.get_one::<String>("kernel_package").map(String::as_str);
        let agent = match crate::service::ramdisk::find_agent(
            args.get_one::<String>("agent").map(Path::new),
        ) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("rackboot: ramdisk build: {e}");
                return 1;
            }
        };
        return match crate::service::ramdisk::build(&out, package, &cache, &agent) {
            Ok(b) => {
                println!(
                    "kernel: {}\ninitrd: {} ({:.1} MiB: {} modules, {} firmware files, agent {})\nsecure boot chain: {} {}\n(from {}; set [deploy] kernel and initrd to these)",
                    b.kernel.display(),
                    b.initrd.display(),
                    b.initrd_bytes as f64 / 1048576.0,
                    b.modules,
                    b.firmware_files,
                    agent.display(),
                    b.shim.display(),
                    b.grub.display(),
                    b.package
                );
                0
            }
            Err(e) => {
                eprintln!("rackboot: ramdisk build: {e}");
                1
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rackboot: cannot start: {e}");
            return EXIT_USAGE;
        }
    };
    runtime.block_on(run_client(&matches, name, sub, state_dir))
}

struct Session {
    socket: PathBuf,
    user: Option<String>,
    password: Option<String>,
    json: bool,
}

impl Session {
    fn new(matches: &ArgMatches, state_dir: Option<PathBuf>) -> Session {
        // --socket / RACKBOOT_SOCKET; else the given state directory's;
        // else the packaged daemon's in /run when it is there; else the
        // default state directory's.
        let socket = match (matches.get_one::<String>("socket"), &state_dir) {
            (Some(s), _) => PathBuf::from(s),
            (None, Some(dir)) => dir.join("api.sock"),
            (None, None) if Path::new(RUNTIME_SOCKET).exists() => PathBuf::from(RUNTIME_SOCKET),
            (None, None) => config::default_state_dir().join("api.sock"),
        };
        let state_dir = state_dir.unwrap_or_else(config::default_state_dir);
        let mut user = matches.get_one::<String>("user").cloned();
        let mut password = matches.get_one::<String>("password").cloned();
        if password.is_some() && user.is_none() {
            // RACKBOOT_PASSWORD alone is admin's, as admin is the default user.
            user = Some("admin".to_string());
        }
        if password.is_none() {
            if let Ok(text) = std::fs::read_to_string(state_dir.join(ADMIN_PASSWORD_FILE)) {
                if user.as_deref().unwrap_or("admin") == "admin" {
                    user = Some("admin".to_string());
                    password = Some(text.trim().to_string());
                }
            }
        }
        Session {
            socket,
            user,
            password,
            json: matches.get_flag("json"),
        }
    }

    /// Adds credentials unless the request carries its own.
    fn authorise(&self, request: &mut Map<String, Value>) {
        if !request.contains_key("USER_ID") {
            if let Some(u) = &self.user {
                request.insert("USER_ID".into(), u.clone().into());
            }
        }
        if !request.contains_key("PASSWORD") {
            if let Some(p) = &self.password {
                request.insert("PASSWORD".into(), p.clone().into());
            }
        }
    }

    async fn send(&self, mut request: Map<String, Value>) -> Result<Value, i32> {
        self.authorise(&mut request);
        client::call(&self.socket, &Value::Object(request))
            .await
            .map_err(|e| {
                eprintln!("rackboot: {e}");
                EXIT_UNREACHABLE
            })
    }

    /// Prints `response` (JSON or human; `one`: the detail view of a single
    /// item) and maps its ret_code to an exit status.
    fn report(&self, response: &Value, action: Option<&Action>, one: bool) -> i32 {
        let code = response
            .get("ret_code")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(response).unwrap_or_default()
            );
        } else if code == 0 {
            print!(
                "{}",
                output::human(
                    response,
                    action.and_then(|a| a.table.as_ref()),
                    output::terminal_width(),
                    one
                )
            );
        }
        if code != 0 {
            let message = response
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)");
            eprintln!("rackboot: {message} (ret_code {code})");
            return EXIT_API_ERROR;
        }
        0
    }
}

fn usage(message: String) -> i32 {
    eprintln!("rackboot: {message}");
    EXIT_USAGE
}

/// Builds an action's request from its flags and optional --file.
fn request_for(action: &Action, sub: &ArgMatches) -> Result<Map<String, Value>, String> {
    let mut req = Map::new();
    if let Some(path) = sub.get_one::<String>("file") {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read --file {path}: {e}"))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("--file {path} is not JSON: {e}"))?;
        match value {
            Value::Object(m) => req.extend(m),
            Value::Array(items) => {
                let Some(list) = action.params.iter().find(|p| p.ty == Ty::Objects) else {
                    return Err(format!(
                        "--file {path} holds a list, but {} takes no list of objects",
                        action.name
                    ));
                };
                req.insert(list.name.into(), Value::Array(items));
            }
            _ => return Err(format!("--file {path} must hold a JSON object or list")),
        }
    }
    for param in action.params {
        if param.ty == Ty::Objects {
            continue;
        }
        let value = match param.ty {
            Ty::Str => sub
                .get_one::<String>(param.name)
                .map(|s| Value::from(s.clone())),
            Ty::Int | Ty::Flag => sub.get_one::<i64>(param.name).map(|n| Value::from(*n)),
            Ty::List => sub.get_many::<String>(param.name).map(|vals| {
                Value::Array(vals.map(|s| Value::from(s.trim().to_string())).collect())
            }),
            Ty::Objects => None,
            Ty::Object => match sub.get_one::<String>(param.name) {
                None => None,
                Some(text) => match serde_json::from_str::<Value>(text) {
                    Ok(v @ Value::Object(_)) => Some(v),
                    _ => {
                        return Err(format!(
                            "--{} takes a JSON object, e.g. '{{\"serial\": \"S1\"}}'",
                            kebab(param.name)
                        ))
                    }
                },
            },
        };
        if let Some(v) = value {
            req.insert(param.name.into(), v);
        }
    }
    req.insert("action".into(), action.name.into());
    req.entry("request_type")
        .or_insert_with(|| action.request_type.into());
    Ok(req)
}

async fn run_client(
    matches: &ArgMatches,
    name: &str,
    sub: &ArgMatches,
    state_dir: Option<PathBuf>,
) -> i32 {
    let session = Session::new(matches, state_dir);
    match name {
        "call" => {
            let text = sub
                .get_one::<String>("request")
                .map(String::as_str)
                .unwrap_or("");
            let req = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return usage("call takes one JSON object".into()),
                Err(e) => return usage(format!("call: the request is not JSON: {e}")),
            };
            let action = req
                .get("action")
                .and_then(Value::as_str)
                .and_then(find_action);
            match session.send(req).await {
                Ok(resp) => session.report(&resp, action, false),
                Err(code) => code,
            }
        }
        "user" => {
            let (verb, args) = sub.subcommand().expect("subcommand_required");
            let (action_name, keys): (&str, &[&str]) = match verb {
                "list" => ("DescribeUsers", &[]),
                "add" => ("AddUser", &["user_id", "new_password"]),
                "passwd" => ("ModifyUserPassword", &["user_id", "new_password"]),
                _ => ("DeleteUser", &["user_id"]),
            };
            let action = find_action(action_name).expect("user actions are declared");
            let mut req = Map::new();
            req.insert("action".into(), action_name.into());
            req.insert("request_type".into(), "User".into());
            for key in keys {
                if let Some(v) = args.get_one::<String>(key) {
                    req.insert((*key).into(), v.clone().into());
                }
            }
            match session.send(req).await {
                Ok(resp) => session.report(&resp, Some(action), false),
                Err(code) => code,
            }
        }
        command => {
            let Some(action) = ACTIONS.iter().find(|a| a.command == command) else {
                return usage(format!("unknown command {command}"));
            };
            let req = match request_for(action, sub) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            if action.name == "ConnectBMNodeConsole" {
                let mut req = req;
                session.authorise(&mut req);
                return match console::run(&session.socket, req).await {
                    Ok(Ok(true)) => 0,
                    Ok(Ok(false)) => 1,
                    Ok(Err(answer)) => session.report(&answer, Some(action), false),
                    Err(e) => {
                        eprintln!("rackboot: {e}");
                        EXIT_UNREACHABLE
                    }
                };
            }
            let wait = sub
                .try_get_one::<bool>("wait")
                .ok()
                .flatten()
                .copied()
                .unwrap_or(false);
            // Exactly one id asked of a describe action: its detail view.
            let one = action.table.is_some()
                && action
                    .positional
                    .and_then(|p| req.get(p))
                    .and_then(Value::as_array)
                    .is_some_and(|ids| ids.len() == 1);
            let resp = match session.send(req.clone()).await {
                Ok(r) => r,
                Err(code) => return code,
            };
            let ok = resp.get("ret_code").and_then(Value::as_i64) == Some(0);
            if wait && session.json && ok {
                // --wait --json prints the final status only (one document).
                return follow_job(&session, &resp).await;
            }
            let status = session.report(&resp, Some(action), one);
            if status != 0 || !wait {
                return status;
            }
            follow_job(&session, &resp).await
        }
    }
}

/// `--wait`: polls GetStatus for the job in `first` until it ends. On a
/// terminal, progress bars redrawn in place on stderr; otherwise one line
/// per change (the job's or a node's status or progress). At the end, each
/// failed node's ret_code and message; with `--json`, the final status on
/// stdout. 0 when the job succeeded, 1 otherwise.
async fn follow_job(session: &Session, first: &Value) -> i32 {
    let job_action = first
        .get("job_action")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let job_id = first
        .get("job_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // A job-starting action answers with the id only: start from step0.
    let mut last = first.clone();
    if last.get("status").is_none() {
        last["status"] = "step0".into();
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut drawn = 0usize;
    // What was last printed, per job ("") and node, when not on a terminal.
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    loop {
        let status = last.get("status").and_then(Value::as_str).unwrap_or("");
        let progress = last.get("progress").and_then(Value::as_str).unwrap_or("0%");
        let nodes = last
            .get("node_progress")
            .and_then(Value::as_object)
            .filter(|n| {
                n.len() > 1
                    || job_action == "ProvisionBMNodes"
                    || job_action == "IntrospectBMNodes"
                    || job_action == "UnprovisionBMNodes"
            });
        let node_state = |n: &Value| {
            (
                n.get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                n.get("progress")
                    .and_then(Value::as_str)
                    .unwrap_or("0%")
                    .to_string(),
            )
        };
        if !tty {
            let mut changes = vec![(String::new(), (status.to_string(), progress.to_string()))];
            for (id, n) in nodes.into_iter().flatten() {
                changes.push((id.clone(), node_state(n)));
            }
            for (id, state) in changes {
                if seen.get(&id) != Some(&state) {
                    if id.is_empty() {
                        eprintln!("{job_id} {} {}", state.0, state.1);
                    } else {
                        eprintln!("{job_id} {id} {} {}", state.0, state.1);
                    }
                    seen.insert(id, state);
                }
            }
        } else if let Some(nodes) = nodes {
            // A bar per node, redrawn in place.
            let mut lines = vec![format!("{} {job_id} {status}", progress_bar(progress))];
            for (id, n) in nodes {
                let (s, p) = node_state(n);
                lines.push(format!("  {id} {} {s}", progress_bar(&p)));
            }
            if drawn > 0 {
                eprint!("\x1b[{drawn}A");
            }
            for l in &lines {
                eprintln!("\r{l}\x1b[K");
            }
            drawn = lines.len();
        } else {
            eprint!("\r{} {job_id} {status:<12}", progress_bar(progress));
        }
        if status == "successful" || status == "failed" {
            if tty && nodes.is_none() {
                eprintln!();
            }
            if status == "failed" {
                eprintln!("rackboot: job {job_id} ({job_action}) failed");
                let failed = last
                    .get("node_progress")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .filter(|(_, n)| {
                        n.get("status").and_then(Value::as_str) == Some("failed")
                            || n.get("ret_code").and_then(Value::as_i64).unwrap_or(0) != 0
                    });
                for (id, n) in failed {
                    eprintln!(
                        "  {id}: ret_code {}: {}",
                        n.get("ret_code").and_then(Value::as_i64).unwrap_or(-1),
                        n.get("message")
                            .and_then(Value::as_str)
                            .filter(|m| !m.is_empty())
                            .unwrap_or("(no message)")
                    );
                }
            }
            if session.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&last).unwrap_or_default()
                );
            }
            return if status == "successful" {
                0
            } else {
                EXIT_API_ERROR
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut req = Map::new();
        req.insert("action".into(), "GetStatus".into());
        req.insert("job_action".into(), job_action.clone().into());
        req.insert("job_id".into(), job_id.clone().into());
        last = match session.send(req).await {
            Ok(r) if r.get("ret_code").and_then(Value::as_i64) == Some(0) => r,
            Ok(r) => {
                if tty && drawn == 0 {
                    eprintln!();
                }
                return session.report(&r, None, false);
            }
            Err(code) => return code,
        };
    }
}

/// `[#########...........]  45%` from "45%".
pub fn progress_bar(progress: &str) -> String {
    let pct: usize = progress.trim_end_matches('%').parse().unwrap_or(0).min(100);
    let filled = pct / 5;
    format!(
        "[{}{}] {pct:>3}%",
        "#".repeat(filled),
        ".".repeat(20 - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn flags_become_typed_parameters() {
        let m = command()
            .try_get_matches_from([
                "rackboot",
                "describe-bm-nodes",
                "--status",
                "new",
                "--limit",
                "5",
                "n-aaaaaaaa,n-bbbbbbbb",
            ])
            .unwrap();
        let (_, sub) = m.subcommand().unwrap();
        let req = request_for(find_action("DescribeBMNodes").unwrap(), sub).unwrap();
        assert_eq!(req["status"], "new");
        assert_eq!(req["limit"], 5);
        assert_eq!(
            req["node_ids"],
            serde_json::json!(["n-aaaaaaaa", "n-bbbbbbbb"])
        );
        assert_eq!(req["action"], "DescribeBMNodes");
    }

    #[test]
    fn progress_bar_fills_by_fives() {
        assert_eq!(progress_bar("45%"), "[#########...........]  45%");
        assert_eq!(progress_bar("junk"), "[....................]   0%");
    }
}
