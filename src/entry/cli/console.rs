//! `rackboot console n-…`: the interactive side of ConnectBMNodeConsole.
//! The API connection is upgraded to the console's byte stream; the
//! terminal goes raw (when it is one), what the node prints is written to
//! stdout, what is typed is sent, and `~.` at the start of a line leaves,
//! as with ipmitool and ssh (`~~` sends one `~`, `~?` lists the escapes).

use super::client;
use serde_json::{Map, Value};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What typed input means once escapes are taken out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Typed {
    /// Bytes for the node.
    pub send: Vec<u8>,
    /// `~.`: leave.
    pub leave: bool,
    /// `~?`: show the escapes.
    pub help: bool,
}

/// Finds `~` escapes in typed input (only right after a line ends, or at
/// the very start).
#[derive(Debug)]
pub struct Escapes {
    line_start: bool,
    tilde: bool,
}

impl Default for Escapes {
    fn default() -> Self {
        Escapes {
            line_start: true,
            tilde: false,
        }
    }
}

impl Escapes {
    pub fn feed(&mut self, input: &[u8]) -> Typed {
        let mut out = Typed::default();
        for &b in input {
            if self.tilde {
                self.tilde = false;
                match b {
                    b'.' => {
                        out.leave = true;
                        return out;
                    }
                    b'~' => {
                        out.send.push(b'~');
                        self.line_start = false;
                        continue;
                    }
                    b'?' => {
                        out.help = true;
                        continue;
                    }
                    _ => out.send.push(b'~'),
                }
            } else if self.line_start && b == b'~' {
                self.tilde = true;
                continue;
            }
            out.send.push(b);
            self.line_start = b == b'\r' || b == b'\n';
        }
        out
    }
}

/// The terminal in raw mode until dropped (nothing when stdin is no terminal).
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enable() -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawTerminal(None);
        }
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// How the session went: `Ok(true)` when the user left with `~.`,
/// `Ok(false)` when the console ended on the daemon's side, `Err` with the
/// daemon's JSON answer when no console was opened.
pub async fn run(
    socket: &Path,
    request: Map<String, Value>,
) -> Result<Result<bool, Value>, client::ClientError> {
    let node = request
        .get("node_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let io = match client::call_upgrade(
        socket,
        &Value::Object(request),
        crate::transport::api::console_protocol(),
    )
    .await?
    {
        Ok(io) => io,
        Err(answer) => return Ok(Err(answer)),
    };
    eprint!(
        "[rackboot] console of {node}: type ~. at the start of a line to leave, ~? for help\r\n"
    );
    let raw = RawTerminal::enable();
    // Typed input comes from a thread of its own: a blocking read of a
    // terminal cannot be cancelled, and must not hold the runtime at exit.
    let (tx, mut typed) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin();
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut escapes = Escapes::default();
    let mut buf = vec![0u8; 8192];
    let mut typing = true;
    let left = loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            },
            t = typed.recv(), if typing => match t {
                None => typing = false,
                Some(bytes) => {
                    let t = escapes.feed(&bytes);
                    if t.help {
                        eprint!("\r\n[rackboot] ~. leave the console · ~~ send ~ · ~? this help\r\n");
                    }
                    if !t.send.is_empty() && wr.write_all(&t.send).await.is_err() {
                        break false;
                    }
                    if t.leave {
                        break true;
                    }
                }
            },
        }
    };
    let _ = wr.shutdown().await;
    drop(raw);
    if left {
        eprintln!("\r\n[rackboot] left the console of {node}");
    }
    Ok(Ok(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_dot_leaves_only_at_the_start_of_a_line() {
        let mut e = Escapes::default();
        let t = e.feed(b"a~.b\r");
        assert_eq!((t.send.as_slice(), t.leave), (&b"a~.b\r"[..], false));
        let t = e.feed(b"~~x~?");
        assert_eq!((t.send.as_slice(), t.help), (&b"~x~?"[..], false));
        let t = e.feed(b"\n~?~.ignored");
        assert_eq!(
            (t.send.as_slice(), t.help, t.leave),
            (&b"\n"[..], true, true)
        );
        // A tilde split across two reads.
        let mut e = Escapes::default();
        assert!(e.feed(b"~").send.is_empty());
        assert!(e.feed(b".").leave);
        let mut e = Escapes::default();
        e.feed(b"~");
        assert_eq!(e.feed(b"ls").send, b"~ls");
    }
}
