//! Layer 2, transports: the action API on the Unix socket (`api`), the
//! PXE servers on the provisioning interface (`pxe`) and the Prometheus
//! endpoint (`metrics`). They parse what
//! arrives, ask the services (layer 3) to act and encode the answer; the
//! three never use each other.

pub mod api;
pub mod metrics;
pub mod pxe;
