//! The PXE responder's decisions, apart from I/O. So far: what a network-
//! booting client is and which boot file it gets (`firmware`), and the
//! full-mode DHCP answers over a lease table and the registered nodes
//! (`dhcp`). The sockets (IP_PKTINFO / SO_BINDTODEVICE), lease persistence,
//! proxy mode, the HTTP boot server and the wiring into the daemon are the
//! rest of the PXE issue.

pub mod dhcp;
pub mod firmware;
