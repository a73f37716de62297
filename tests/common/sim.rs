//! A real BMC for tests: OpenIPMI's ipmi_sim on a free loopback UDP port,
//! with a chassis_control program that keeps power and boot device in
//! files, and ipmitool to cross-check what it did.
#![allow(dead_code)]

use rackboot::foundation::ipmi::client::{probe, Timing};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// ipmi_sim's chassis_control program. Power is a file, or, when the file
/// `vm` exists beside it, a real QEMU VM (TCG, no disk, no network) started
/// detached (ipmi_sim reads our output to EOF) and killed by pid file.
const CHASSIS: &str = r#"#!/bin/bash
D=$(dirname "$0")
PIDF=$D/vm.pid
alive() { [ -f $PIDF ] && kill -0 "$(cat $PIDF)" 2>/dev/null; }
power_of() { if [ -f $D/vm ]; then alive && echo 1 || echo 0; else cat $D/power 2>/dev/null || echo 0; fi; }
start() {
  echo 1 > $D/power
  if [ -f $D/vm ] && ! alive; then
    setsid qemu-system-x86_64 -accel tcg -m 32 -nographic -nodefaults -serial file:$D/serial.log       -pidfile $PIDF -daemonize </dev/null >>$D/qemu.out 2>&1
  fi
}
stop() {
  echo 0 > $D/power
  if alive; then kill "$(cat $PIDF)"; for i in $(seq 50); do alive || break; sleep 0.1; done; fi
  rm -f $PIDF
}
op=$1; shift
if [ "$op" = get ]; then
  for p in "$@"; do case $p in
    power) echo "power:$(power_of)";;
    boot) echo "boot:$(cat $D/boot 2>/dev/null || echo none)";;
  esac; done
elif [ "$op" = set ]; then
  while [ $# -ge 2 ]; do p=$1; v=$2; shift 2; case $p in
    power) if [ "$v" = 1 ]; then start; else stop; fi;;
    reset) stop; start;;
    boot) echo "$v" > $D/boot;;
    shutdown) stop;;
  esac; echo "$p $v" >> $D/ops.log; done
fi
exit 0
"#;

pub struct Sim {
    pub dir: tempfile::TempDir,
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    pub password: String,
    child: Option<Child>,
}

/// The FRU image every simulator serves (ipmitool `fru print`: Board Mfg
/// "Dell Inc.", Product Serial "CN7016").
pub const FRU_BYTES: &str = "0x01 0x00 0x00 0x01 0x08 0x00 0x00 0xf6 0x01 0x07 0x00 0x00 0x00 0x00 0xc9 0x44 0x65 0x6c 0x6c 0x20 0x49 0x6e 0x63 0x2e 0xd1 0x50 0x6f 0x77 0x65 0x72 0x45 0x64 0x67 0x65 0x20 0x52 0x36 0x34 0x30 0x20 0x4d 0x42 0xc7 0x42 0x53 0x4e 0x30 0x30 0x30 0x31 0xc7 0x50 0x4e 0x2d 0x30 0x30 0x30 0x31 0xc0 0xc1 0x00 0x00 0x00 0xf9 0x01 0x06 0x00 0xc9 0x44 0x65 0x6c 0x6c 0x20 0x49 0x6e 0x63 0x2e 0xce 0x50 0x6f 0x77 0x65 0x72 0x45 0x64 0x67 0x65 0x20 0x52 0x36 0x34 0x30 0xc4 0x52 0x36 0x34 0x30 0xc3 0x31 0x2e 0x30 0xc6 0x43 0x4e 0x37 0x30 0x31 0x36 0xc0 0xc0 0xc1 0x83";

impl Sim {
    pub fn start() -> Sim {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    /// Starts a simulator on `port` (to bring a BMC back on the same address).
    pub fn start_on(port: u16) -> Sim {
        Self::start_at([127, 0, 0, 1].into(), port, "password")
    }

    /// Starts a simulator at `ip`:`port` whose user admin has `password`.
    pub fn start_at(ip: std::net::Ipv4Addr, port: u16, password: &str) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let chassis = dir.path().join("chassis.sh");
        std::fs::write(&chassis, CHASSIS).unwrap();
        std::fs::set_permissions(
            &chassis,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let auths = "none md2 md5 straight";
        let conf = format!(
            "name \"sim\"\nset_working_mc 0x20\n  startlan 1\n    addr {ip} {port}\n    priv_limit admin\n\
             allowed_auths_callback {auths}\n allowed_auths_user {auths}\n allowed_auths_operator {auths}\n allowed_auths_admin {auths}\n\
             guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{}\"\n\
             user 1 true \"\" \"test\" user 10 {auths}\n user 2 true \"admin\" \"{password}\" admin 10 {auths}\n\
             user 3 true \"viewer\" \"viewerpw\" user 10 {auths}\n",
            chassis.display()
        );
        std::fs::write(dir.path().join("lan.conf"), conf).unwrap();
        std::fs::write(
            dir.path().join("sim.emu"),
            format!("mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_add_fru_data 0x20 0 112 data {FRU_BYTES}\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let child = Command::new("ipmi_sim")
            .arg("-n")
            .arg("-c")
            .arg(dir.path().join("lan.conf"))
            .arg("-f")
            .arg(dir.path().join("sim.emu"))
            .arg("-s")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ipmi_sim must be installed (tests/run.sh installs openipmi)");
        let sim = Sim {
            dir,
            ip,
            port,
            password: password.to_string(),
            child: Some(child),
        };
        let rt = rt();
        let deadline = Instant::now() + Duration::from_secs(20);
        while rt
            .block_on(probe(
                sim.addr(),
                Timing {
                    timeout: Duration::from_millis(200),
                    attempts: 1,
                },
            ))
            .is_err()
        {
            assert!(Instant::now() < deadline, "ipmi_sim did not answer");
        }
        sim
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn ipmitool(&self, args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                &self.ip.to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-P",
                &self.password,
            ])
            .args(args)
            .output()
            .expect("ipmitool must be installed");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Active sessions as the BMC reports them (ipmitool's own included).
    pub fn active_sessions(&self) -> u32 {
        let out = self.ipmitool(&["session", "info", "all"]);
        out.lines()
            .find(|l| l.starts_with("active sessions"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no session count in: {out}"))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Sim {
    /// Stops the simulator (its port then answers nothing).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A VM the chassis program started goes too.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("vm.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
    }

    /// Makes power mean a real QEMU VM from now on.
    pub fn drive_a_vm(&self) {
        std::fs::write(self.dir.path().join("vm"), "").unwrap();
    }

    /// The pid of the VM, if one runs.
    pub fn vm_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("vm.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            .ok()
            .map(|_| pid)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
