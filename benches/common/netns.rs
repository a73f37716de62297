//! Network namespaces for the benchmarks — created with a unique `rbb-`
//! name, deleted on drop (and on panic); nothing here touches a real
//! interface — and the stopping of the servers they run. Shared by the
//! benches through `#[path]`.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace of this process, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("rbb-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A veth from this namespace (`rb-srv`, address `srv_cidr`, the
    /// daemon's provisioning interface) to `cli` (`cli0`, `cli_cidr`), both up.
    pub fn veth_to(&self, cli: &Netns, srv_cidr: &str, cli_cidr: &str) {
        self.ip(&[
            "link", "add", "rb-srv", "type", "veth", "peer", "name", "cli0", "netns", &cli.0,
        ]);
        self.ip(&["addr", "add", srv_cidr, "dev", "rb-srv"]);
        self.ip(&["link", "set", "rb-srv", "up"]);
        cli.ip(&["addr", "add", cli_cidr, "dev", "cli0"]);
        cli.ip(&["link", "set", "cli0", "up"]);
    }

    /// `ip netns exec NS program…` (exec: the child's pid is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// Output of a short command in the namespace.
    pub fn output(&self, program: &str, args: &[&str]) -> String {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
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

/// Runs `f` on a thread inside namespace `ns` (sockets it opens, and
/// threads it starts, live there).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace exists");
        // SAFETY: a valid namespace file descriptor.
        let rc = unsafe {
            libc::setns(
                std::os::unix::io::AsRawFd::as_raw_fd(&file),
                libc::CLONE_NEWNET,
            )
        };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
}

/// A server process a bench started: SIGTERM, then SIGKILL after 5 s, when
/// stopped or dropped (also on a panic).
pub struct Server {
    pub name: &'static str,
    pub child: Child,
}

impl Server {
    pub fn new(name: &'static str, child: Child) -> Server {
        Server { name, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the process now (dropping does the same).
    pub fn stop(self) {}
}

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&mut self.child, self.name);
    }
}

/// Stops a server process of ours: SIGTERM, then SIGKILL after 5 s.
pub fn terminate(child: &mut Child, name: &str) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{name} did not stop in 5 s after SIGTERM: SIGKILL");
    let _ = child.kill();
    let _ = child.wait();
}
