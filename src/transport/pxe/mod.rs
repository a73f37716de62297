//! The PXE servers on the provisioning interface: DHCP (full server or
//! ProxyDHCP) and TFTP sockets (`responder`, `tftp`), the HTTP boot server
//! (`http`, with its sendfile fast path `sendfile`) and IPv6 router
//! advertisements (`ra`). They decide nothing themselves: DHCP answers come
//! from [`crate::foundation::dhcp`], TFTP's wire format from
//! [`crate::foundation::tftp`], what a node boots and where its callbacks go
//! from the provisioning service ([`crate::service::provision::Provisioner`]).

pub mod http;
pub mod ra;
pub mod responder;
pub mod sendfile;
pub mod tftp;
