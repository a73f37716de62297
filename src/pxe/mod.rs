//! The PXE responder's decisions, apart from I/O. So far: what a network-
//! booting client is (firmware, architecture, iPXE) and which boot file it
//! gets. The DHCP server, HTTP boot server and their wiring into the daemon
//! are the rest of the PXE issue.

pub mod firmware;
