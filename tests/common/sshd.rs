//! Real OpenSSH servers for tests: `sshd -D` on a loopback address of its
//! own, with its own host key, an authorized_keys file the test fills, and
//! optionally a restricted PATH (a host without some command) or a command
//! that stalls. Each is a separate process, ended by PID.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub ip: Ipv4Addr,
    pub port: u16,
    netns: Option<String>,
    child: Option<Child>,
}

/// How the host behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    None,
    /// `lsblk` is not installed.
    NoLsblk,
    /// `lscpu` never returns.
    StallsOnLscpu,
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen must be installed (tests/run.sh installs openssh-server)")
        .success();
    assert!(ok, "ssh-keygen failed");
}

impl Sshd {
    pub fn start(ip: Ipv4Addr, port: u16, authorized: &str, quirk: Quirk) -> Sshd {
        Self::start_in(None, ip, port, authorized, quirk)
    }

    /// An sshd inside network namespace `netns` (when given).
    pub fn start_in(
        netns: Option<&str>,
        ip: Ipv4Addr,
        port: u16,
        authorized: &str,
        quirk: Quirk,
    ) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
        let mut s = Sshd {
            dir,
            ip,
            port,
            netns: netns.map(str::to_string),
            child: None,
        };
        s.write_config(quirk);
        s.spawn();
        s
    }

    fn write_config(&self, quirk: Quirk) {
        let d = self.dir.path();
        let mut config = format!(
            "ListenAddress {ip}:{port}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPubkeyAuthentication yes\nLogLevel ERROR\nMaxStartups 100\n",
            ip = self.ip,
            port = self.port,
            d = d.display()
        );
        if quirk != Quirk::None {
            let bin = d.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in [
                "lscpu", "lsblk", "find", "ip", "cat", "uname", "hostname", "sleep",
            ] {
                if quirk == Quirk::NoLsblk && tool == "lsblk" {
                    continue;
                }
                if quirk == Quirk::StallsOnLscpu && tool == "lscpu" {
                    let stall = bin.join("lscpu");
                    // Records its pid so that stop() can end it: a stalled
                    // command outlives the SSH session otherwise.
                    std::fs::write(
                        &stall,
                        format!(
                            "#!/bin/sh\necho $$ >> {}/stall.pids\nexec sleep 600\n",
                            d.display()
                        ),
                    )
                    .unwrap();
                    std::fs::set_permissions(
                        &stall,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )
                    .unwrap();
                    continue;
                }
                let target = String::from_utf8(
                    Command::new("sh")
                        .arg("-c")
                        .arg(format!("command -v {tool}"))
                        .output()
                        .unwrap()
                        .stdout,
                )
                .unwrap();
                let _ = std::os::unix::fs::symlink(target.trim(), bin.join(tool));
            }
            let wrapper = d.join("wrapper.sh");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nPATH={}\nexport PATH\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
                    bin.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(
                &wrapper,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
            config.push_str(&format!("ForceCommand {}\n", wrapper.display()));
        }
        std::fs::write(d.join("sshd_config"), config).unwrap();
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all("/run/sshd").unwrap(); // privilege separation directory
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/sbin/sshd"]);
                c
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        let child = cmd
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd must be installed (tests/run.sh installs openssh-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = |s: &Sshd| match &s.netns {
            None => std::net::TcpStream::connect((s.ip, s.port)).is_ok(),
            Some(ns) => Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ns,
                    "bash",
                    "-c",
                    &format!("exec 3<>/dev/tcp/{}/{}", s.ip, s.port),
                ])
                .stderr(Stdio::null())
                .status()
                .map(|st| st.success())
                .unwrap_or(false),
        };
        while !listening(self) {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts with a new host key (a reinstalled or impersonated host).
    pub fn new_host_key(&mut self) {
        self.stop();
        keygen(&self.dir.path().join("host_key"));
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pids = std::fs::read_to_string(self.dir.path().join("stall.pids")).unwrap_or_default();
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port free on every one of `ips`.
pub fn common_port(ips: &[Ipv4Addr]) -> u16 {
    'search: loop {
        let port = std::net::TcpListener::bind((ips[0], 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for ip in ips {
            if std::net::TcpListener::bind((*ip, port)).is_err() {
                continue 'search;
            }
        }
        return port;
    }
}
