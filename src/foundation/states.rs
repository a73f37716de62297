//! The BMNode state machine: every state with a line on what it means (on
//! [`BmNodeStatus`]), and every allowed move in one table ([`TRANSITIONS`],
//! after Ironic's `states.py`). Code moves a node only through [`next`]:
//! the store applies a move in one transaction
//! (`Store::transition_bm_node`) and keeps the state left behind as
//! `pre_status`; the provisioning service decides which triggers happen.

/// A BMNode's lifecycle state; it moves only through [`TRANSITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmNodeStatus {
    /// Registered; nothing verified yet.
    New,
    /// BMC login and power read in progress.
    Verifying,
    /// BMC verified; can be provisioned.
    Ready,
    /// An OS is being installed.
    Provisioning,
    /// Installed and running its OS.
    Active,
    /// The last provision failed; see the job log and messages.
    ProvisionFailed,
    /// Booted into the ramdisk for hardware inventory.
    Inspecting,
    /// The last inspection failed.
    InspectFailed,
    /// Being cleaned up before removal.
    Deleting,
    /// Booted into the ramdisk to wipe its disks (UnprovisionBMNodes).
    Cleaning,
    /// The last wipe failed; see the job log and messages.
    CleanFailed,
}

impl BmNodeStatus {
    pub const ALL: [BmNodeStatus; 11] = [
        BmNodeStatus::New,
        BmNodeStatus::Verifying,
        BmNodeStatus::Ready,
        BmNodeStatus::Provisioning,
        BmNodeStatus::Active,
        BmNodeStatus::ProvisionFailed,
        BmNodeStatus::Inspecting,
        BmNodeStatus::InspectFailed,
        BmNodeStatus::Deleting,
        BmNodeStatus::Cleaning,
        BmNodeStatus::CleanFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BmNodeStatus::New => "new",
            BmNodeStatus::Verifying => "verifying",
            BmNodeStatus::Ready => "ready",
            BmNodeStatus::Provisioning => "provisioning",
            BmNodeStatus::Active => "active",
            BmNodeStatus::ProvisionFailed => "provision_failed",
            BmNodeStatus::Inspecting => "inspecting",
            BmNodeStatus::InspectFailed => "inspect_failed",
            BmNodeStatus::Deleting => "deleting",
            BmNodeStatus::Cleaning => "cleaning",
            BmNodeStatus::CleanFailed => "clean_failed",
        }
    }

    pub fn parse(s: &str) -> Option<BmNodeStatus> {
        BmNodeStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// States in which work is under way on the node: it may not be deleted
    /// or have its BMC/PXE identity changed until the work ends.
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            BmNodeStatus::Verifying
                | BmNodeStatus::Provisioning
                | BmNodeStatus::Inspecting
                | BmNodeStatus::Deleting
                | BmNodeStatus::Cleaning
        )
    }

    /// Every status name, for error messages.
    pub fn names() -> String {
        BmNodeStatus::ALL.map(|s| s.as_str()).join(", ")
    }
}

use BmNodeStatus as S;

/// What happens to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// ProvisionBMNodes on a node never verified: log in to its BMC first.
    Verify,
    /// The BMC answered the login and a power read.
    Verified,
    /// The BMC could not be used.
    VerifyFailed,
    /// ProvisionBMNodes: boot the node into its deploy.
    Provision,
    /// The OS is installed and the node runs it.
    Deployed,
    /// A provision step failed (or timed out).
    ProvisionFailed,
    /// AbortProvisionBMNodes, or IntrospectBMNodes' abort.
    Abort,
    /// IntrospectBMNodes: boot the ramdisk for an inventory.
    Inspect,
    /// The inventory arrived.
    Inspected,
    /// The inspection failed or timed out.
    InspectFailed,
    /// The daemon stopped while the node was mid-work (found at start-up).
    Interrupted,
    /// ProvisionBMNodes with `rebuild`: reinstall an active node.
    Rebuild,
    /// UnprovisionBMNodes: boot the ramdisk to wipe the disks.
    Clean,
    /// The wipe is done; the node is off and ready again.
    Cleaned,
    /// The wipe failed or timed out.
    CleanFailed,
}

/// (from, trigger, to). Anything not listed is refused with a wrong-state
/// error that names the current state.
pub const TRANSITIONS: &[(S, Trigger, S)] = &[
    (S::New, Trigger::Verify, S::Verifying),
    (S::Verifying, Trigger::Verified, S::Ready),
    (S::Verifying, Trigger::VerifyFailed, S::New),
    (S::Verifying, Trigger::Abort, S::New),
    (S::Verifying, Trigger::Interrupted, S::New),
    (S::Ready, Trigger::Provision, S::Provisioning),
    (S::ProvisionFailed, Trigger::Provision, S::Provisioning),
    (S::InspectFailed, Trigger::Provision, S::Provisioning),
    (S::Provisioning, Trigger::Deployed, S::Active),
    (
        S::Provisioning,
        Trigger::ProvisionFailed,
        S::ProvisionFailed,
    ),
    (S::Provisioning, Trigger::Abort, S::ProvisionFailed),
    (S::Provisioning, Trigger::Interrupted, S::ProvisionFailed),
    (S::Ready, Trigger::Inspect, S::Inspecting),
    (S::InspectFailed, Trigger::Inspect, S::Inspecting),
    (S::ProvisionFailed, Trigger::Inspect, S::Inspecting),
    (S::Inspecting, Trigger::Inspected, S::Ready),
    (S::Inspecting, Trigger::InspectFailed, S::InspectFailed),
    (S::Inspecting, Trigger::Abort, S::InspectFailed),
    (S::Inspecting, Trigger::Interrupted, S::InspectFailed),
    (S::Active, Trigger::Rebuild, S::Provisioning),
    (S::CleanFailed, Trigger::Provision, S::Provisioning),
    (S::CleanFailed, Trigger::Inspect, S::Inspecting),
    (S::Active, Trigger::Clean, S::Cleaning),
    (S::Ready, Trigger::Clean, S::Cleaning),
    (S::ProvisionFailed, Trigger::Clean, S::Cleaning),
    (S::InspectFailed, Trigger::Clean, S::Cleaning),
    (S::CleanFailed, Trigger::Clean, S::Cleaning),
    (S::Cleaning, Trigger::Cleaned, S::Ready),
    (S::Cleaning, Trigger::CleanFailed, S::CleanFailed),
    (S::Cleaning, Trigger::Abort, S::CleanFailed),
    (S::Cleaning, Trigger::Interrupted, S::CleanFailed),
];

/// The state table as a Mermaid state diagram (README's; a test keeps the
/// two equal).
pub fn mermaid() -> String {
    let mut out = String::from("```mermaid\nstateDiagram-v2\n    [*] --> new: RegisterBMNodes\n");
    for (from, trigger, to) in TRANSITIONS {
        out.push_str(&format!(
            "    {} --> {}: {trigger:?}\n",
            from.as_str(),
            to.as_str()
        ));
    }
    out.push_str("```\n");
    out
}

/// Where `trigger` takes a node in `from`, if it may happen.
pub fn next(from: S, trigger: Trigger) -> Option<S> {
    TRANSITIONS
        .iter()
        .find(|(f, t, _)| *f == from && *t == trigger)
        .map(|(_, _, to)| *to)
}

/// Whether ProvisionBMNodes may start on a node in `s` (a `new` node is
/// verified first).
pub fn can_provision(s: S) -> bool {
    s == S::New || next(s, Trigger::Provision).is_some()
}

/// Whether IntrospectBMNodes may start on a node in `s`.
pub fn can_inspect(s: S) -> bool {
    s == S::New || next(s, Trigger::Inspect).is_some()
}

/// Whether ProvisionBMNodes with `rebuild` may start on a node in `s`.
pub fn can_rebuild(s: S) -> bool {
    can_provision(s) || next(s, Trigger::Rebuild).is_some()
}

/// Whether UnprovisionBMNodes may start on a node in `s`.
pub fn can_clean(s: S) -> bool {
    next(s, Trigger::Clean).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_holds_the_state_diagram() {
        let readme = include_str!("../../README.md");
        let diagram = mermaid();
        assert!(
            readme.contains(&diagram),
            "README.md's state diagram is out of date; replace it with:\n\n{diagram}"
        );
    }

    #[test]
    fn every_state_has_a_way_out_and_busy_states_end() {
        // Each busy state can finish, fail and be interrupted; nothing else
        // is busy, and `active` is only left by a new provision's refusal.
        for s in S::ALL {
            let has = |t| next(s, t).is_some();
            if s.is_busy() && s != S::Deleting {
                assert!(has(Trigger::Interrupted), "{s:?} must end after a crash");
                assert!(has(Trigger::Abort), "{s:?} must be abortable");
            }
        }
        assert_eq!(next(S::Provisioning, Trigger::Deployed), Some(S::Active));
        assert_eq!(
            next(S::Active, Trigger::Provision),
            None,
            "an active node is never redeployed silently"
        );
        assert!(can_rebuild(S::Active) && !can_rebuild(S::Cleaning));
        assert!(can_clean(S::Active) && can_clean(S::CleanFailed) && !can_clean(S::New));
        assert_eq!(next(S::Cleaning, Trigger::Cleaned), Some(S::Ready));
        assert!(
            can_provision(S::New) && can_provision(S::Ready) && can_provision(S::ProvisionFailed)
        );
        assert!(
            !can_provision(S::Active)
                && !can_provision(S::Provisioning)
                && !can_provision(S::Deleting)
        );
        assert!(can_inspect(S::Ready) && !can_inspect(S::Active));
        // No duplicate (from, trigger) pairs: the table is a function.
        for (i, (f, t, _)) in TRANSITIONS.iter().enumerate() {
            assert!(!TRANSITIONS[i + 1..]
                .iter()
                .any(|(f2, t2, _)| f2 == f && t2 == t));
        }
    }
}
