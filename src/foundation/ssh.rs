//! SSH collection from hosts that already run an OS: a pure-Rust client
//! (russh) with key authentication, trust-on-first-use host keys (a changed
//! key fails the collection), per-command and per-host timeouts, and the
//! daemon's own key pair (`rackboot ssh-key`).

use crate::foundation::inventory::{Outputs, COMMANDS};
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach hosts.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// Why a collection failed, for the job log and the user message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {0}")]
    Unreachable(SocketAddr),
    #[error("the host key of {addr} changed (was {expected}, now {presented})")]
    HostKeyChanged {
        addr: SocketAddr,
        expected: String,
        presented: String,
    },
    #[error("{0} refused the key of user {1}")]
    AuthRejected(SocketAddr, String),
    #[error("timed out")]
    Timeout,
    #[error("`{0}` did not finish within {1} s")]
    Stalled(String, u64),
    #[error("SSH error: {0}")]
    Protocol(String),
}

/// The SHA-256 fingerprint of an OpenSSH public key line ("" when unreadable).
pub fn fingerprint(openssh: &str) -> String {
    PublicKey::from_openssh(openssh)
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        .unwrap_or_default()
}

struct Tofu {
    expected: Option<String>,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Tofu {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let line = key.to_openssh().unwrap_or_default();
        // Compare algorithm and key material, not the comment.
        let material = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let ok = self
            .expected
            .as_deref()
            .is_none_or(|e| material(e) == material(&line));
        *self.presented.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
        Ok(ok)
    }
}

/// Loads the daemon's private key, or creates an ed25519 pair (private key
/// 0600, public key beside it with `.pub`) when there is none.
pub fn load_or_create_key(path: &Path) -> Result<PrivateKey, String> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .map_err(|e| format!("cannot read the SSH key {}: {e}", path.display()));
    }
    let seed: [u8; 32] = rand::random();
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(pair);
    key.set_comment("rackboot");
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| format!("cannot encode the SSH key: {e}"))?;
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        f.write_all(pem.as_bytes()).map_err(|e| e.to_string())?;
    }
    std::fs::write(path.with_extension("pub"), format!("{public}\n")).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Connects to `addr`, checks the host key against `expected` (trust on
/// first use when `None`), authenticates with `key` and runs every command
/// of [`COMMANDS`], each within `command_timeout`. Returns the outputs
/// (commands that failed are absent, with a note), and the host key seen.
pub async fn collect(
    addr: SocketAddr,
    settings: &SshSettings,
    key: Arc<PrivateKey>,
    expected: Option<String>,
) -> Result<(Outputs, Vec<String>, String), SshError> {
    let presented = Arc::new(Mutex::new(None));
    let handler = Tofu {
        expected: expected.clone(),
        presented: presented.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(settings.command_timeout * 2),
        ..Default::default()
    });
    let seen = || {
        presented
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    };
    let connect = tokio::time::timeout(
        settings.connect_timeout,
        client::connect(config, addr, handler),
    );
    let mut session = match connect.await {
        Err(_) => return Err(SshError::Unreachable(addr)),
        Ok(Err(russh::Error::IO(_))) | Ok(Err(russh::Error::ConnectionTimeout)) => {
            return Err(SshError::Unreachable(addr))
        }
        Ok(Err(e)) => {
            let now = seen();
            if let (Some(exp), false) = (&expected, now.is_empty()) {
                if fingerprint(exp) != fingerprint(&now) {
                    return Err(SshError::HostKeyChanged {
                        addr,
                        expected: fingerprint(exp),
                        presented: fingerprint(&now),
                    });
                }
            }
            return Err(SshError::Protocol(e.to_string()));
        }
        Ok(Ok(s)) => s,
    };
    let hash = session
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let auth = tokio::time::timeout(
        settings.connect_timeout,
        session.authenticate_publickey(&settings.user, PrivateKeyWithHashAlg::new(key, hash)),
    )
    .await
    .map_err(|_| SshError::Timeout)?
    .map_err(|e| SshError::Protocol(e.to_string()))?;
    if !auth.success() {
        return Err(SshError::AuthRejected(addr, settings.user.clone()));
    }
    // One shell runs every command, each between markers carrying its
    // exit status: one channel instead of one per command (each channel is
    // a new session and shell on the host).
    let script: String = COMMANDS
        .iter()
        .map(|(part, command)| {
            format!("echo '{BEGIN}{part}'; {command}; echo \"{END}{part} $?\"; ")
        })
        .collect();
    let (outputs, notes) = run_script(&session, &script, settings.command_timeout).await;
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    Ok((outputs?, notes, seen()))
}

const BEGIN: &str = "@@rackboot-begin ";
const END: &str = "@@rackboot-end ";

/// Runs the collection script; splits its output into parts. A part whose
/// end marker does not come within `command_timeout` of the last output
/// means the host stalls in that command.
async fn run_script(
    session: &client::Handle<Tofu>,
    script: &str,
    command_timeout: Duration,
) -> (Result<Outputs, SshError>, Vec<String>) {
    let mut notes = Vec::new();
    let mut channel = match session.channel_open_session().await {
        Ok(c) => c,
        Err(e) => return (Err(SshError::Protocol(e.to_string())), notes),
    };
    if let Err(e) = channel.exec(true, script).await {
        return (Err(SshError::Protocol(e.to_string())), notes);
    }
    let mut text = String::new();
    let mut raw = Vec::new();
    loop {
        match tokio::time::timeout(command_timeout, channel.wait()).await {
            Err(_) => {
                raw_to_text(&mut raw, &mut text);
                let stalled = current_part(&text).unwrap_or("?");
                let command = COMMANDS
                    .iter()
                    .find(|(p, _)| *p == stalled)
                    .map(|(_, c)| *c)
                    .unwrap_or(stalled);
                return (
                    Err(SshError::Stalled(
                        command.to_string(),
                        command_timeout.as_secs(),
                    )),
                    notes,
                );
            }
            Ok(None) => break,
            Ok(Some(ChannelMsg::Data { ref data })) if raw.len() < 8 * 1024 * 1024 => {
                raw.extend_from_slice(data)
            }
            Ok(Some(_)) => {}
        }
    }
    raw_to_text(&mut raw, &mut text);
    let mut outputs = Outputs::new();
    for (part, command) in COMMANDS {
        let begin = format!("{BEGIN}{part}\n");
        let Some(b) = text.find(&begin) else {
            notes.push(format!("`{command}` did not run"));
            continue;
        };
        let body_start = b + begin.len();
        let end_marker = format!("{END}{part} ");
        let Some(e) = text[body_start..].find(&end_marker).map(|e| body_start + e) else {
            notes.push(format!("`{command}` did not finish"));
            continue;
        };
        let status = text[e + end_marker.len()..]
            .lines()
            .next()
            .unwrap_or("")
            .trim();
        let body = &text[body_start..e];
        match status {
            "0" => {
                outputs.insert(part.to_string(), body.to_string());
            }
            "127" => notes.push(format!("`{command}`: command not found on the host")),
            other => notes.push(format!("`{command}` exited with status {other}")),
        }
    }
    (Ok(outputs), notes)
}

fn raw_to_text(raw: &mut Vec<u8>, text: &mut String) {
    text.push_str(&String::from_utf8_lossy(raw));
    raw.clear();
}

/// The part whose begin marker is the last one without an end marker.
fn current_part(text: &str) -> Option<&str> {
    let b = text.rfind(BEGIN)?;
    let part = text[b + BEGIN.len()..].lines().next()?;
    (!text[b..].contains(&format!("{END}{part} "))).then_some(part)
}
