//! The common vocabulary of BMC operations, whatever the driver: what to
//! do to a node's power or boot device ([`PowerOp`]) and what came of it
//! ([`PowerOutcome`]). The IPMI driver (in `controller`) and the Redfish
//! driver (`redfish`) both carry them out.

use crate::foundation::ipmi::commands::BootSetting;

/// What to do to a node's power or boot device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    Status,
    On,
    /// `hard`: immediate power off; else ACPI soft off.
    Off {
        hard: bool,
    },
    /// Power cycle (power on when off: real BMCs refuse a cycle then).
    Cycle,
    /// Hard reset (power on when off).
    Reset,
    SetBoot(BootSetting),
    GetBoot,
}

impl PowerOp {
    /// A short name (a metrics label).
    pub fn name(&self) -> &'static str {
        match self {
            PowerOp::Status => "status",
            PowerOp::On => "on",
            PowerOp::Off { hard: true } => "off_hard",
            PowerOp::Off { hard: false } => "off_soft",
            PowerOp::Cycle => "cycle",
            PowerOp::Reset => "reset",
            PowerOp::SetBoot(_) => "set_boot",
            PowerOp::GetBoot => "get_boot",
        }
    }
}

/// The outcome of a [`PowerOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOutcome {
    /// Power state after the operation (true = on).
    Power(bool),
    Boot(BootSetting),
}
