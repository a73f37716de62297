//! TFTP wire format and option negotiation (RFC 1350, 2347, 2348, 2349,
//! 7440), and the path rules of the read-only server. Plain functions; no
//! I/O; no panic on any input.

use std::path::{Component, Path, PathBuf};

pub const RRQ: u16 = 1;
pub const WRQ: u16 = 2;
pub const DATA: u16 = 3;
pub const ACK: u16 = 4;
pub const ERROR: u16 = 5;
pub const OACK: u16 = 6;

/// TFTP error codes (RFC 1350 §5, 2347).
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const OPTION_REFUSED: u16 = 8;
}

/// A read request as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub filename: String,
    pub mode: String,
    /// Options in the order sent, names lower-cased.
    pub options: Vec<(String, String)>,
}

/// What a datagram on the server's well-known port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read(ReadRequest),
    /// A write request (refused: the server is read-only).
    Write,
}

fn strings(body: &[u8]) -> Option<Vec<String>> {
    if body.last() != Some(&0) {
        return None;
    }
    body[..body.len() - 1]
        .split(|b| *b == 0)
        .map(|s| std::str::from_utf8(s).ok().map(str::to_string))
        .collect()
}

/// Parses an RRQ or WRQ; `None` for anything else or anything malformed.
pub fn parse_request(d: &[u8]) -> Option<Request> {
    if d.len() < 4 {
        return None;
    }
    match u16::from_be_bytes([d[0], d[1]]) {
        WRQ => Some(Request::Write),
        RRQ => {
            let parts = strings(&d[2..])?;
            if parts.len() < 2 || parts.len() % 2 != 0 || parts[0].is_empty() {
                return None;
            }
            let options = parts[2..]
                .chunks(2)
                .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].clone()))
                .collect();
            Some(Request::Read(ReadRequest {
                filename: parts[0].clone(),
                mode: parts[1].to_ascii_lowercase(),
                options,
            }))
        }
        _ => None,
    }
}

/// The block number of an ACK, `None` for anything else.
pub fn parse_ack(d: &[u8]) -> Option<u16> {
    (d.len() >= 4 && u16::from_be_bytes([d[0], d[1]]) == ACK)
        .then(|| u16::from_be_bytes([d[2], d[3]]))
}

/// Whether the datagram is an ERROR (the client gives up).
pub fn is_error(d: &[u8]) -> bool {
    d.len() >= 4 && u16::from_be_bytes([d[0], d[1]]) == ERROR
}

pub fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + payload.len());
    p.extend_from_slice(&DATA.to_be_bytes());
    p.extend_from_slice(&block.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

pub fn error(code: u16, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + message.len());
    p.extend_from_slice(&ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.push(0);
    p
}

pub fn oack(options: &[(String, String)]) -> Vec<u8> {
    let mut p = OACK.to_be_bytes().to_vec();
    for (k, v) in options {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

/// The longest per-packet timeout a client may negotiate, seconds (RFC
/// 2349 allows 255): a larger request is not acknowledged, and the transfer
/// keeps the server's own timeout. A stalled client cannot hold a transfer
/// slot for minutes.
pub const MAX_TIMEOUT: u8 = 5;

/// Server-side caps on what a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_blksize: u16,
    pub max_windowsize: u16,
}

/// The parameters of one transfer after negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    /// Seconds to wait for an ACK before retransmitting.
    pub timeout: u8,
    /// Options to acknowledge (empty: no OACK, RFC 1350 behaviour).
    pub oack: Vec<(String, String)>,
}

/// Negotiates blksize (capped), tsize (answered with `size`), timeout and
/// windowsize (capped). Unknown or malformed options are ignored, as RFC
/// 2347 allows.
pub fn negotiate(req: &ReadRequest, size: u64, limits: Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: 512,
        windowsize: 1,
        timeout: 1,
        oack: Vec::new(),
    };
    for (name, value) in &req.options {
        let num: Option<u64> = value.trim().parse().ok();
        match (name.as_str(), num) {
            ("blksize", Some(v)) if v >= 8 => {
                n.blksize = v.min(65464).min(u64::from(limits.max_blksize)) as u16;
                n.oack.push((name.clone(), n.blksize.to_string()));
            }
            ("tsize", Some(_)) => n.oack.push((name.clone(), size.to_string())),
            ("timeout", Some(v)) if (1..=u64::from(MAX_TIMEOUT)).contains(&v) => {
                n.timeout = v as u8;
                n.oack.push((name.clone(), v.to_string()));
            }
            ("windowsize", Some(v)) if v >= 1 => {
                n.windowsize = v.min(65535).min(u64::from(limits.max_windowsize)) as u16;
                n.oack.push((name.clone(), n.windowsize.to_string()));
            }
            _ => {}
        }
    }
    n
}

/// Why a path was refused; the text never names a server path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotFound,
    Forbidden,
}

/// Maps a requested file name to a path inside `root` (already
/// canonical). A leading `/` is taken relative to the root (PXE firmware
/// often asks for `/pxelinux.0`); `..` components are refused (a name that
/// merely contains two dots, like `my..file`, is fine); backslashes are
/// separators (Windows-style clients); the result, symlinks resolved, must
/// stay inside the root — except through a symlink that root owns and that
/// points into `/usr` or `/boot`, which the distribution put there (Debian's
/// `ipxe` package links `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`).
pub fn resolve(root: &Path, name: &str) -> Result<PathBuf, PathError> {
    if name.contains('\0') || name.len() > 1024 {
        return Err(PathError::Forbidden);
    }
    let mut path = root.to_path_buf();
    for part in name.split(['/', '\\']) {
        match Path::new(part).components().next() {
            None => {}
            Some(Component::CurDir) => {}
            Some(Component::Normal(p)) if Path::new(part).components().count() == 1 => path.push(p),
            _ => return Err(PathError::Forbidden), // `..`, or anything odd
        }
    }
    let real = path.canonicalize().map_err(|_| PathError::NotFound)?;
    if !real.starts_with(root) && !system_link(root, &path, &real) {
        return Err(PathError::Forbidden);
    }
    if !real.is_file() {
        return Err(PathError::NotFound);
    }
    Ok(real)
}

/// Whether `path` (under `root`) leaves it only through symlinks owned by
/// root, to a file in `/usr` or `/boot`.
fn system_link(root: &Path, path: &Path, real: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !(real.starts_with("/usr") || real.starts_with("/boot")) {
        return false;
    }
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    let mut at = root.to_path_buf();
    for part in rest.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() && m.uid() != 0 => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut p = RRQ.to_be_bytes().to_vec();
        for s in parts {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p
    }

    #[test]
    fn requests_and_options_parse() {
        let r = parse_request(&rrq(&[
            "pxelinux.0",
            "octet",
            "BLKSIZE",
            "1468",
            "tsize",
            "0",
        ]))
        .unwrap();
        let Request::Read(r) = r else { panic!() };
        assert_eq!(r.filename, "pxelinux.0");
        assert_eq!(
            r.options,
            vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "0".into())
            ]
        );
        assert_eq!(parse_request(&rrq(&["f"])), None);
        assert_eq!(parse_request(&[0, 1, b'a', 0, b'o']), None);
        assert_eq!(parse_request(&[0, 2, 0, 0]), Some(Request::Write));
    }

    #[test]
    fn negotiation_caps_what_the_client_asks() {
        let Some(Request::Read(r)) = parse_request(&rrq(&[
            "f",
            "octet",
            "blksize",
            "65464",
            "windowsize",
            "65535",
            "tsize",
            "0",
            "timeout",
            "3",
            "bogus",
            "1",
        ])) else {
            panic!()
        };
        let n = negotiate(
            &r,
            12345,
            Limits {
                max_blksize: 1468,
                max_windowsize: 16,
            },
        );
        assert_eq!((n.blksize, n.windowsize, n.timeout), (1468, 16, 3));
        // A long timeout is not acknowledged (RFC 2349: the OACK must echo
        // the value): the server keeps its own.
        let Some(Request::Read(slow)) =
            parse_request(&rrq(&["f", "octet", "timeout", "255", "tsize", "0"]))
        else {
            panic!()
        };
        let capped = negotiate(
            &slow,
            1,
            Limits {
                max_blksize: 1468,
                max_windowsize: 16,
            },
        );
        assert_eq!(capped.timeout, 1);
        assert!(
            !capped.oack.iter().any(|(k, _)| k == "timeout"),
            "{capped:?}"
        );
        assert!(n.oack.contains(&("tsize".into(), "12345".into())));
        assert!(!n.oack.iter().any(|(k, _)| k == "bogus"));
        let Some(Request::Read(plain)) = parse_request(&rrq(&["f", "octet"])) else {
            panic!()
        };
        let n = negotiate(
            &plain,
            1,
            Limits {
                max_blksize: 1468,
                max_windowsize: 16,
            },
        );
        assert!(n.oack.is_empty() && n.blksize == 512);
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a"), "a").unwrap();
        std::fs::write(root.join("my..file"), "b").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("out")).unwrap();
        assert!(resolve(&root, "sub/a").is_ok());
        assert!(resolve(&root, "/sub/a").is_ok());
        assert!(resolve(&root, "sub\\a").is_ok());
        assert!(resolve(&root, "my..file").is_ok());
        assert_eq!(resolve(&root, "../etc/passwd"), Err(PathError::Forbidden));
        assert_eq!(resolve(&root, "sub/../../x"), Err(PathError::Forbidden));
        assert_eq!(resolve(&root, "out"), Err(PathError::Forbidden));
        assert_eq!(resolve(&root, "/etc/passwd"), Err(PathError::NotFound));
        assert_eq!(resolve(&root, "sub"), Err(PathError::NotFound));
        // A link into /usr (as Debian's ipxe package makes them) is followed
        // when root owns it, and refused when anyone else does.
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("system")).unwrap();
        let by_root = nix::unistd::geteuid().is_root();
        assert_eq!(resolve(&root, "system").is_ok(), by_root);
        if by_root {
            let link = root.join("system");
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &link,
                Some(nix::unistd::Uid::from_raw(65534)),
                None,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .unwrap();
            assert_eq!(resolve(&root, "system"), Err(PathError::Forbidden));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 99;
        for len in 0..200 {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = parse_request(&d);
            let _ = parse_ack(&d);
        }
        // Truncations and byte flips of a valid request with every option,
        // through parsing, negotiation and path resolution.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let good = rrq(&[
            "pxelinux.0",
            "octet",
            "blksize",
            "65464",
            "windowsize",
            "65535",
            "tsize",
            "0",
            "timeout",
            "3",
        ]);
        let limits = Limits {
            max_blksize: 1468,
            max_windowsize: 64,
        };
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|cut| good[..cut].to_vec()).collect();
        for _ in 0..5000 {
            let mut p = good.clone();
            for _ in 0..3 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (x as usize >> 8) % p.len();
                p[i] = (x >> 16) as u8;
            }
            cases.push(p);
        }
        for p in cases {
            if let Some(Request::Read(r)) = parse_request(&p) {
                let n = negotiate(&r, 1 << 40, limits);
                assert!(
                    n.blksize <= 1468 && n.windowsize <= 64 && n.timeout <= MAX_TIMEOUT,
                    "{r:?} → {n:?}"
                );
                let _ = resolve(&root, &r.filename);
            }
        }
    }
}
