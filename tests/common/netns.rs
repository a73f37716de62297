//! Network namespaces for tests (root only; CI runs as root): created with
//! a unique name, removed on drop. Nothing here touches a real interface.
#![allow(dead_code)]

use std::process::Command;

pub struct Netns {
    pub name: String,
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 must be installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A new namespace with `lo` up. Panics (does not skip) when not root.
    pub fn new(tag: &str) -> Netns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and must run as root (CI does)"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("rbt-{tag}-{}-{n}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs curl in the namespace with `args`; (HTTP status, body).
    pub fn curl(&self, args: &[&str]) -> (u16, Vec<u8>) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "curl",
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .args(args)
            .output()
            .expect("curl must be installed");
        let mut body = out.stdout;
        let cut = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let code = String::from_utf8_lossy(&body[(cut + 1).min(body.len())..])
            .trim()
            .parse()
            .unwrap_or(0);
        body.truncate(cut);
        (code, body)
    }

    /// Runs `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `f` on a thread that has entered namespace `ns` (sockets it opens,
/// and threads it starts, live there).
pub fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace exists");
        let rc = unsafe {
            libc::setns(
                std::os::unix::io::AsRawFd::as_raw_fd(&file),
                libc::CLONE_NEWNET,
            )
        };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace panicked")
}
