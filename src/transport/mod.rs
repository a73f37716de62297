//! Layer 2, transports: the action API on the Unix socket (`api`) and the
//! PXE servers on the provisioning interface (`pxe`). They parse what
//! arrives, ask the services (layer 3) to act and encode the answer; the
//! two never use each other.

pub mod api;
pub mod pxe;
