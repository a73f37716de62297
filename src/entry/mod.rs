//! Layer 1, entry: the binary's command line (`cli`), the daemon's wiring
//! (`daemon`), its log (`logging`) and the QEMU lab (`lab`). Everything here may use every layer
//! below; nothing below uses it.

pub mod cli;
pub mod daemon;
pub mod lab;
pub mod logging;
