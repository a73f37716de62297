//! The read-only TFTP server of the PXE responder. `proto` is the wire
//! format, option negotiation and path confinement (pure); `server` runs the
//! transfers over UDP: one task and one socket (TID) per transfer, windowed
//! sending (RFC 7440) with retransmission on timeout, duplicate ACKs ignored,
//! a cap on transfers in flight and on what a client may negotiate.
//!
//! [`crate::pxe::responder`] starts it on the provisioning interface's
//! address.

pub mod proto;
pub mod server;
