//! The PXE responder. Decisions apart from I/O: what a network-booting
//! client is and which boot file it gets (`firmware`), the full-mode DHCP
//! answers over a lease table and the registered nodes (`dhcp`). The
//! sockets: `responder`. Still to come (PXE issue): ProxyDHCP, the HTTP boot
//! server's kernels and images, install templates, the boot timeline, a
//! per-MAC rate limit.

pub mod dhcp;
pub mod firmware;
pub mod http;
pub mod ra;
pub mod responder;
pub mod sendfile;
pub mod templates;
