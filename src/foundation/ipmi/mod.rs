//! IPMI over LAN (RMCP+ / lanplus). `crypto` (cipher suites 3 and 17),
//! `packet` (wire format) and `session` (the handshake and protected
//! exchange) are sans-I/O; `client` drives them over UDP with timeouts,
//! retransmission and a Close Session on every exit path; `commands` are the
//! typed chassis and application commands rackboot uses; `sol` is Serial
//! over LAN (sans-I/O) and `client::Console` drives it.

pub mod client;
pub mod commands;
pub mod crypto;
pub mod packet;
pub mod session;
pub mod sol;
