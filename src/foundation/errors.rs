//! The error catalogue of the action API: each kind of failure has a fixed,
//! documented non-zero `ret_code`; the `message` says what was wrong (naming
//! the field, node or user) and what to do.

use crate::foundation::store::StoreError;

/// The documented `ret_code` values (0 is success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetCode {
    /// A parameter has a wrong type or an invalid value, or the body is not a JSON object.
    BadParameter = 1100,
    /// A required parameter is missing.
    MissingParameter = 1101,
    /// `action` names no action.
    UnknownAction = 1102,
    /// The request body is larger than `api.max_request_bytes`.
    TooLarge = 1103,
    /// USER_ID/PASSWORD missing or wrong.
    AuthFailed = 1200,
    /// Not checked now (password checks all busy, or a backoff after
    /// failed logins): retry after the time the message gives.
    Busy = 1300,
    /// A node, job, message or user does not exist.
    NotFound = 2100,
    /// The resource is in a state that does not allow the action.
    WrongState = 2300,
    /// The request collides with existing data (duplicate MAC, hostname…).
    Conflict = 2400,
    /// The node's BMC does not answer.
    BmcUnreachable = 3100,
    /// The node's Redfish BMC failed the TLS check (its certificate).
    BmcTlsFailed = 3150,
    /// The node's BMC refused the login (user or password).
    BmcAuthFailed = 3200,
    /// The BMC session lacks the privilege for the operation.
    BmcPrivilege = 3300,
    /// The BMC has no free session (or too many operations wait for it).
    BmcNoSession = 3400,
    /// The BMC refused the command or answered nonsense.
    BmcCommandFailed = 3500,
    /// A Node's SSH port does not answer.
    NodeUnreachable = 3600,
    /// A Node refused the daemon's SSH key.
    NodeAuthRejected = 3610,
    /// A Node presented another host key than at first contact.
    NodeHostKeyChanged = 3620,
    /// Collecting a Node stalled, timed out or broke off.
    NodeCollectFailed = 3630,
    /// Provision step0: the node, its image or the ramdisk are not ready.
    ProvisionInvalid = 3700,
    /// Provision step2: the node never network-booted.
    ProvisionNoNetboot = 3710,
    /// Provision step3: the deploy reported a failure.
    ProvisionDeployFailed = 3720,
    /// A provision or inspection step timed out.
    ProvisionTimeout = 3730,
    /// The work was aborted on request.
    ProvisionAborted = 3740,
    /// The daemon stopped while the node was being worked on.
    ProvisionInterrupted = 3750,
    /// Provision step3: no disk matches the node's root-device hints.
    ProvisionNoDisk = 3760,
    /// A fault inside rackboot; the daemon log has the details.
    Internal = 5000,
    /// The disk holding the database is full; nothing was changed.
    DiskFull = 5100,
}

impl RetCode {
    pub const ALL: [RetCode; 28] = [
        RetCode::BadParameter,
        RetCode::MissingParameter,
        RetCode::UnknownAction,
        RetCode::TooLarge,
        RetCode::AuthFailed,
        RetCode::Busy,
        RetCode::NotFound,
        RetCode::WrongState,
        RetCode::Conflict,
        RetCode::BmcUnreachable,
        RetCode::BmcTlsFailed,
        RetCode::BmcAuthFailed,
        RetCode::BmcPrivilege,
        RetCode::BmcNoSession,
        RetCode::BmcCommandFailed,
        RetCode::NodeUnreachable,
        RetCode::NodeAuthRejected,
        RetCode::NodeHostKeyChanged,
        RetCode::NodeCollectFailed,
        RetCode::ProvisionInvalid,
        RetCode::ProvisionNoNetboot,
        RetCode::ProvisionDeployFailed,
        RetCode::ProvisionTimeout,
        RetCode::ProvisionAborted,
        RetCode::ProvisionInterrupted,
        RetCode::ProvisionNoDisk,
        RetCode::Internal,
        RetCode::DiskFull,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    /// A short name for docs and logs.
    pub fn name(self) -> &'static str {
        match self {
            RetCode::BadParameter => "bad parameter",
            RetCode::MissingParameter => "missing parameter",
            RetCode::UnknownAction => "unknown action",
            RetCode::TooLarge => "request too large",
            RetCode::AuthFailed => "authentication failed",
            RetCode::Busy => "busy, retry",
            RetCode::NotFound => "not found",
            RetCode::WrongState => "wrong state",
            RetCode::Conflict => "conflict",
            RetCode::BmcUnreachable => "BMC unreachable",
            RetCode::BmcTlsFailed => "BMC certificate refused",
            RetCode::BmcAuthFailed => "BMC login refused",
            RetCode::BmcPrivilege => "BMC privilege insufficient",
            RetCode::BmcNoSession => "BMC session refused",
            RetCode::BmcCommandFailed => "BMC command failed",
            RetCode::NodeUnreachable => "node unreachable over SSH",
            RetCode::NodeAuthRejected => "node refused the SSH key",
            RetCode::NodeHostKeyChanged => "node host key changed",
            RetCode::NodeCollectFailed => "node collection failed",
            RetCode::ProvisionInvalid => "provision refused (step0)",
            RetCode::ProvisionNoNetboot => "node did not network-boot",
            RetCode::ProvisionDeployFailed => "deploy failed",
            RetCode::ProvisionTimeout => "provision step timed out",
            RetCode::ProvisionAborted => "aborted",
            RetCode::ProvisionInterrupted => "interrupted by a daemon stop",
            RetCode::ProvisionNoDisk => "no disk matches the root-device hints",
            RetCode::Internal => "internal error",
            RetCode::DiskFull => "disk full",
        }
    }
}

/// A failed action: its code and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: RetCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: RetCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(RetCode::BadParameter, message)
    }
    /// A bad value of `field`: "`field`: why".
    pub fn field(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(RetCode::BadParameter, format!("{field}: {why}"))
    }
    pub fn missing(field: &str, hint: &str) -> Self {
        Self::new(
            RetCode::MissingParameter,
            format!("missing required parameter `{field}`{hint}"),
        )
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(RetCode::NotFound, message)
    }
    pub fn internal() -> Self {
        Self::new(
            RetCode::Internal,
            "internal error in rackboot: nothing was changed; see the daemon log (journalctl -u rackboot) for details",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::new(RetCode::Conflict, m),
            StoreError::NotFound(m) => ApiError::new(RetCode::NotFound, m),
            StoreError::WrongState(m) => ApiError::new(RetCode::WrongState, m),
            StoreError::Invalid(m) => ApiError::new(RetCode::BadParameter, m),
            StoreError::DiskFull(path) => {
                tracing::error!(database = %path.display(), "store call failed: database or disk is full");
                let dir = path.parent().unwrap_or(&path);
                ApiError::new(
                    RetCode::DiskFull,
                    format!(
                        "the disk holding {} is full (database or disk is full): nothing was changed; free space in {} (see `df -h {}`) and retry",
                        path.display(),
                        dir.display(),
                        dir.display()
                    ),
                )
            }
            other => {
                tracing::error!(error = %other, "store call failed");
                ApiError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_documents_every_ret_code() {
        let readme = include_str!("../../README.md");
        let missing: Vec<i64> = RetCode::ALL
            .iter()
            .map(|c| c.code())
            .filter(|c| !readme.contains(&format!("| {c} |")))
            .collect();
        assert!(
            missing.is_empty(),
            "README's error-code table lacks {missing:?}"
        );
    }

    #[test]
    fn a_full_disk_is_answered_with_its_code_and_the_database_path() {
        let path = std::path::PathBuf::from("/var/lib/rackboot/rackboot.db");
        let api = ApiError::from(StoreError::DiskFull(path));
        assert_eq!(api.code, RetCode::DiskFull);
        assert!(
            api.message.contains("is full")
                && api.message.contains("/var/lib/rackboot/rackboot.db")
                && api.message.contains("nothing was changed"),
            "{}",
            api.message
        );
    }
}
