//! rackboot: a bare-metal provisioning agent.
//!
//! One daemon (`rackboot serve`) owns a SQLite store and answers the seed-002
//! action API on a local Unix socket; every other subcommand of the binary is a
//! client of that API. The modules, from the edge inwards:
//!
//! - [`cli`]: the command-line client; its subcommands are generated from
//!   [`api::catalogue::ACTIONS`], one per action.
//! - [`daemon`]: wiring: state directory, config, tracing, signals, systemd
//!   notification, start-up recovery, the API server's lifetime.
//! - [`api`]: the action API: HTTP on a Unix socket, authentication, the
//!   action catalogue (one declaration per action), parameter checking and
//!   the handlers that turn requests into store calls.
//! - [`jobs`]: asynchronous work: job records, numbered log lines, recovery
//!   of jobs interrupted by a crash.
//! - [`usermsg`]: the fixed catalogue of user-visible messages (seed 004).
//! - [`store`]: SQLite on its own thread; migrations; every query.
//! - [`config`]: the TOML configuration, its defaults and its validation.
//! - [`validate`], [`ids`], [`auth`]: plain functions: field syntax, id and
//!   time formats, password hashing.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod ids;
pub mod inventory;
pub mod ipmi;
pub mod jobs;
pub mod lab;
pub mod power;
pub mod provision;
pub mod pxe;
pub mod ramdisk;
pub mod ssh;
pub mod store;
pub mod tftp;
pub mod usermsg;
pub mod validate;
