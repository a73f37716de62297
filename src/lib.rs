//! rackboot: a bare-metal provisioning agent.
//!
//! One daemon (`rackboot serve`) owns a SQLite store, answers the seed-002
//! action API on a local Unix socket, answers network-booting machines
//! (DHCP, TFTP, HTTP) and drives BMCs; every other subcommand of the binary
//! is a client of that API.
//!
//! The code stands in four layers; an arrow only ever points down (or
//! sideways inside one layer, except between the two transports), and
//! `tests/architecture.rs` fails on any other import, naming the file:
//!
//! ```text
//! 1 entry       cli · daemon · lab                      (wiring, commands)
//!                 │
//! 2 transports  api (Unix socket) │ pxe (DHCP, TFTP, HTTP)   never each other
//!                 │
//! 3 services    app ─► provision · scan · collect ─► power · jobs · ramdisk
//!                 │
//! 4 foundations store · shared · dhcp · firmware · tftp · ipmi · templates
//!               inventory · callbacks · ssh · states · errors · usermsg
//!               config · validate · ids · auth
//! ```
//!
//! - [`entry`]: the command line, the daemon's wiring, the QEMU lab.
//! - [`transport`]: the action API and the PXE servers: parse, ask a
//!   service, answer.
//! - [`service`]: the work and its state machines; [`service::app::App`]
//!   owns one of each and is what the transports hold.
//! - [`foundation`]: the store, protocol cores, catalogues and plain
//!   helpers, which know nothing of the layers above.

pub mod entry;
pub mod foundation;
pub mod service;
pub mod transport;
