//! Serial console text: turns the bytes a console prints (terminal escape
//! sequences, carriage returns, partial lines) into plain lines for the
//! console log, and picks the lines of a log that matter in a failure
//! message (a kernel panic, a DHCP failure, the ramdisk's error).

/// Longest line kept; the rest of a longer line is cut.
pub const MAX_LINE: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` … final byte.
    Csi,
    /// Inside `ESC ]` … BEL or ESC \.
    Osc,
}

/// Assembles console bytes into lines.
#[derive(Debug)]
pub struct LineAssembler {
    current: Vec<u8>,
    escape: Escape,
    after_cr: bool,
}

impl Default for LineAssembler {
    fn default() -> Self {
        LineAssembler::new()
    }
}

impl LineAssembler {
    pub fn new() -> LineAssembler {
        LineAssembler {
            current: Vec::new(),
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// Takes bytes; returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            match self.escape {
                Escape::Start => {
                    self.escape = match b {
                        b'[' => Escape::Csi,
                        b']' => Escape::Osc,
                        _ => Escape::None,
                    };
                    continue;
                }
                Escape::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::Osc => {
                    if b == 0x07 || b == b'\\' {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::None => {}
            }
            if self.after_cr && b != b'\n' && b != b'\r' {
                // A carriage return not followed by a newline: the line is
                // rewritten (a progress counter, a spinner).
                self.current.clear();
            }
            self.after_cr = false;
            match b {
                0x1b => self.escape = Escape::Start,
                b'\r' => self.after_cr = true,
                b'\n' => lines.push(self.take()),
                b'\t' => self.keep(b' '),
                0x08 => {
                    self.current.pop();
                }
                b if b < 0x20 || b == 0x7f => {}
                b => self.keep(b),
            }
        }
        lines
    }

    fn keep(&mut self, b: u8) {
        if self.current.len() < MAX_LINE {
            self.current.push(b);
        }
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.current)
            .trim_end()
            .to_string();
        self.current.clear();
        line
    }

    /// The line in progress (a prompt waiting for input), ended here; `None`
    /// when there is none.
    pub fn flush(&mut self) -> Option<String> {
        if self.current.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        Some(self.take())
    }
}

/// What in a console line points to why a boot failed.
const TELLING: &[&str] = &[
    "kernel panic",
    "panic",
    "oops",
    "call trace",
    "error",
    "failed",
    "failure",
    "no dhcp",
    "no configuration methods succeeded",
    "no such file",
    "not found",
    "timed out",
    "timeout",
    "unable to",
    "cannot",
    "can't",
    "denied",
    "refused",
    "verification",
    "secure boot",
    "rackboot",
];

/// Up to `n` lines of a console log that explain a failure: the last lines
/// that name a panic, an error or a timeout, else the last lines printed.
/// Blank lines never count.
pub fn telling_tail(lines: &[String], n: usize) -> Vec<String> {
    let printed: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    let mut picked: Vec<&String> = printed
        .iter()
        .rev()
        .filter(|l| {
            let low = l.to_ascii_lowercase();
            TELLING.iter().any(|t| low.contains(t))
        })
        .take(n)
        .copied()
        .collect();
    if picked.is_empty() {
        picked = printed.iter().rev().take(n).copied().collect();
    }
    picked.reverse();
    picked.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_carriage_returns_and_partial_lines_become_plain_lines() {
        let mut a = LineAssembler::new();
        let mut got = a.push(b"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16)\r\n");
        got.extend(
            a.push(b"iPXE 1.0 -- \x1b]0;title\x07Open Source\r\nProgress 10%\rProgress 99%\r\n"),
        );
        got.extend(a.push(b"tab\there, back\x08space\r\r\nlog"));
        got.extend(a.push(b"in: "));
        assert_eq!(
            got,
            vec![
                "SeaBIOS (version 1.16)",
                "iPXE 1.0 -- Open Source",
                "Progress 99%",
                "tab here, bacspace",
            ]
        );
        assert_eq!(a.flush().as_deref(), Some("login:"));
        assert_eq!(a.flush(), None);
        let long = vec![b'x'; MAX_LINE * 2];
        a.push(&long);
        assert_eq!(a.push(b"\n")[0].len(), MAX_LINE);
    }

    #[test]
    fn the_telling_tail_prefers_errors_and_panics_to_the_last_lines() {
        let log: Vec<String> = [
            "Booting from ROM...",
            "iPXE initialising devices...ok",
            "Configuring (net0 52:54:00:99:20:99)...... No configuration methods succeeded (http://ipxe.org/040ee119)",
            "No more network devices",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            telling_tail(&log, 2),
            vec!["Configuring (net0 52:54:00:99:20:99)...... No configuration methods succeeded (http://ipxe.org/040ee119)"]
        );
        let quiet: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(telling_tail(&quiet, 2), vec!["b", "c"]);
        assert!(telling_tail(&[], 3).is_empty());
    }
}
