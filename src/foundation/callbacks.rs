//! The deploy callback vocabulary: what a deploy ramdisk, an installer or
//! a freshly installed OS posts to `POST /callback/<node_id>/<token>/<event>`
//! (and discovery's `POST /discover/<mac>/inventory`), parsed from the raw
//! body into a [`Callback`]. Pure: no I/O; the HTTP boot server feeds it
//! bytes from the network, so it never panics on any input.

/// A callback a ramdisk or installer sent, as parsed from its body.
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    /// `percent=NN[&message=…]`, or `bytes=N&total=N` (image writes).
    Progress {
        percent: u8,
        message: String,
    },
    Done,
    Failed {
        message: String,
    },
    /// The installed OS's first boot (images with `first_boot_callback`).
    Booted,
    /// `message=…`: a line for the job's log (what the ramdisk did).
    Log {
        message: String,
    },
    /// A JSON object.
    Inventory(String),
}

pub fn form(body: &str) -> std::collections::HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses callback `event` with `body`; `Err` says what is wrong.
pub fn parse_callback(event: &str, body: &[u8]) -> Result<Callback, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect()
    };
    match event {
        "progress" => {
            let f = form(text.trim());
            let percent = if let Some(p) = f.get("percent") {
                p.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or("percent must be 0 to 100")?
            } else {
                let bytes: u64 = f
                    .get("bytes")
                    .and_then(|b| b.parse().ok())
                    .ok_or("give percent=NN, or bytes=N&total=N")?;
                let total: u64 = f
                    .get("total")
                    .and_then(|b| b.parse().ok())
                    .filter(|t| *t > 0)
                    .ok_or("total must be a positive number")?;
                (bytes.min(total) * 100 / total) as u8
            };
            Ok(Callback::Progress {
                percent,
                message: clean(f.get("message").map(String::as_str).unwrap_or("")),
            })
        }
        "done" => Ok(Callback::Done),
        "booted" => Ok(Callback::Booted),
        "log" => {
            let f = form(text.trim());
            let message = f.get("message").map(String::as_str).unwrap_or("").trim();
            if message.is_empty() {
                return Err("give message=…".into());
            }
            Ok(Callback::Log {
                message: clean(message),
            })
        }
        "failed" => {
            let f = form(text.trim());
            let message = f
                .get("message")
                .cloned()
                .unwrap_or_else(|| text.trim().to_string());
            Ok(Callback::Failed {
                message: clean(if message.is_empty() {
                    "no reason given"
                } else {
                    &message
                }),
            })
        }
        "inventory" => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| format!("the inventory is not JSON: {e}"))?;
            if !v.is_object() {
                return Err("the inventory must be a JSON object".into());
            }
            Ok(Callback::Inventory(v.to_string()))
        }
        _ => Err("unknown event: progress, done, failed, log, inventory or booted".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_callback("progress", b"percent=42&message=writing+the%20image"),
            Ok(Callback::Progress {
                percent: 42,
                message: "writing the image".into()
            })
        );
        assert_eq!(
            parse_callback("progress", b"bytes=512&total=2048"),
            Ok(Callback::Progress {
                percent: 25,
                message: String::new()
            })
        );
        assert!(parse_callback("progress", b"percent=101").is_err());
        assert!(parse_callback("progress", b"bytes=1&total=0").is_err());
        assert_eq!(parse_callback("done", b""), Ok(Callback::Done));
        assert_eq!(
            parse_callback("failed", b"message=sha256+mismatch%0a"),
            Ok(Callback::Failed {
                message: "sha256 mismatch ".into()
            })
        );
        assert!(parse_callback("inventory", b"[1,2]").is_err());
        assert!(parse_callback("inventory", b"{nope").is_err());
        assert!(parse_callback("reboot", b"").is_err());
        assert!(parse_callback("failed", &[0xff, 0xfe]).is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
