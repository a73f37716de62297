//! Redfish, the second BMC protocol (HTTPS + JSON). `address` parses BMC
//! URLs in Metal3's convention (also `ipmi://`) and says which driver a
//! node uses; `wire` reads and builds what goes over the wire without I/O
//! (systems, reset plans, boot overrides, virtual media, tasks, errors,
//! inventory); `client` is the I/O: one connection and one Redfish session
//! per operation batch, always deleted, TLS with rustls.

pub mod address;
pub mod client;
pub mod wire;

pub use address::{BmcUrl, Driver};
