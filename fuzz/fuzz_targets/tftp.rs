//! TFTP: request parsing, option negotiation (its caps must hold), ACK and
//! ERROR recognition, and the path rules of the read-only server against a
//! real folder with a file, a subfolder and a symlink pointing out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::foundation::tftp::{
    is_error, negotiate, parse_ack, parse_request, resolve, Limits, Request, MAX_TIMEOUT,
};
use std::path::PathBuf;
use std::sync::OnceLock;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rackboot-fuzz-tftp-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("sub"));
        let _ = std::fs::write(dir.join("sub/a"), b"a");
        let _ = std::fs::write(dir.join("pxelinux.0"), b"p");
        let _ = std::os::unix::fs::symlink("/etc/hostname", dir.join("out"));
        dir.canonicalize().expect("fuzz root")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_ack(data);
    let _ = is_error(data);
    let limits = Limits {
        max_blksize: 1468,
        max_windowsize: 64,
    };
    if let Some(Request::Read(r)) = parse_request(data) {
        let n = negotiate(&r, u64::from(data.len() as u32) << 20, limits);
        assert!(n.blksize >= 8 && n.blksize <= 1468, "{n:?}");
        assert!(n.windowsize >= 1 && n.windowsize <= 64, "{n:?}");
        assert!(n.timeout >= 1 && n.timeout <= MAX_TIMEOUT, "{n:?}");
        if let Ok(p) = resolve(root(), &r.filename) {
            assert!(p.starts_with(root()), "{p:?} escapes the root");
        }
    }
});
