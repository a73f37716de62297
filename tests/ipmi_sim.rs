//! The IPMI client against a real BMC: OpenIPMI's ipmi_sim (lanplus,
//! cipher suite 3) on loopback, with a chassis_control program that keeps
//! power and boot device in files; every change is cross-checked with
//! ipmitool, a peer none of this code wrote.

use rackboot::ipmi::client::{probe, BmcError, Session, Target, Timing};
use rackboot::ipmi::commands::{self, BootDevice, BootSetting, ChassisAction};
use rackboot::ipmi::session::{Credentials, HandshakeError, Privilege};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHASSIS: &str = r#"#!/bin/bash
D=$(dirname "$0")
op=$1; shift
if [ "$op" = get ]; then
  for p in "$@"; do case $p in
    power) echo "power:$(cat $D/power 2>/dev/null || echo 0)";;
    boot) echo "boot:$(cat $D/boot 2>/dev/null || echo none)";;
  esac; done
elif [ "$op" = set ]; then
  while [ $# -ge 2 ]; do p=$1; v=$2; shift 2; case $p in
    power) echo "$v" > $D/power;;
    reset) echo 1 > $D/power;;
    boot) echo "$v" > $D/boot;;
    shutdown) echo 0 > $D/power;;
  esac; echo "$p $v" >> $D/ops.log; done
fi
exit 0
"#;

pub struct Sim {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Sim {
    pub fn start() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let chassis = dir.path().join("chassis.sh");
        std::fs::write(&chassis, CHASSIS).unwrap();
        std::fs::set_permissions(
            &chassis,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let auths = "none md2 md5 straight";
        let conf = format!(
            "name \"sim\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n\
             allowed_auths_callback {auths}\n allowed_auths_user {auths}\n allowed_auths_operator {auths}\n allowed_auths_admin {auths}\n\
             guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{}\"\n\
             user 1 true \"\" \"test\" user 10 {auths}\n user 2 true \"admin\" \"password\" admin 10 {auths}\n\
             user 3 true \"viewer\" \"viewerpw\" user 10 {auths}\n",
            chassis.display()
        );
        std::fs::write(dir.path().join("lan.conf"), conf).unwrap();
        std::fs::write(
            dir.path().join("sim.emu"),
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
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
        let sim = Sim { dir, port, child };
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
        SocketAddr::from(([127, 0, 0, 1], self.port))
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
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-P",
                "password",
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

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn target(sim: &Sim, user: &str, password: &str) -> Target {
    Target {
        addr: sim.addr(),
        creds: Credentials {
            user: user.into(),
            password: password.into(),
            bmc_key: None,
            privilege: Privilege::Administrator,
        },
        suite: None,
    }
}

const QUICK: Timing = Timing {
    timeout: Duration::from_millis(500),
    attempts: 2,
};

#[test]
fn power_and_boot_device_changes_are_seen_by_ipmitool() {
    let sim = Sim::start();
    let rt = rt();
    rt.block_on(async {
        let mut s = Session::open(&target(&sim, "admin", "password"), Timing::default())
            .await
            .unwrap();
        // ipmi_sim has no suite 17: the client fell back to 3.
        assert_eq!(s.suite().id(), 3);
        assert!(!commands::power_is_on(&mut s).await.unwrap());
        commands::chassis_control(&mut s, ChassisAction::PowerOn)
            .await
            .unwrap();
        assert!(commands::power_is_on(&mut s).await.unwrap());
        s.close().await;
    });
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("Chassis Power is on"));

    rt.block_on(async {
        let mut s = Session::open(&target(&sim, "admin", "password"), Timing::default())
            .await
            .unwrap();
        commands::set_boot_device(
            &mut s,
            BootSetting {
                device: BootDevice::Pxe,
                persistent: false,
                efi: false,
            },
        )
        .await
        .unwrap();
        s.close().await;
    });
    assert_eq!(sim.file("boot"), "pxe");
    assert!(sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Force PXE"));

    rt.block_on(async {
        let mut s = Session::open(&target(&sim, "admin", "password"), Timing::default())
            .await
            .unwrap();
        commands::set_boot_device(
            &mut s,
            BootSetting {
                device: BootDevice::Disk,
                persistent: true,
                efi: false,
            },
        )
        .await
        .unwrap();
        let back = commands::get_boot_device(&mut s).await.unwrap();
        assert_eq!(back.device, BootDevice::Disk);
        commands::chassis_control(&mut s, ChassisAction::PowerOff)
            .await
            .unwrap();
        let (_, manufacturer, _) = commands::device_id(&mut s).await.unwrap();
        assert_eq!(manufacturer, 0x1291 & 0xffffff); // from sim.emu's mc_add
        s.close().await;
    });
    assert_eq!(sim.file("boot"), "default");
    assert!(sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Force Boot from default Hard-Drive"));
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .contains("Chassis Power is off"));
}

#[test]
fn wrong_credentials_and_dead_ports_fail_with_their_own_error() {
    let sim = Sim::start();
    let rt = rt();
    rt.block_on(async {
        let e = Session::open(&target(&sim, "admin", "wrong"), QUICK)
            .await
            .err()
            .unwrap();
        assert_eq!(
            e,
            BmcError::Auth(HandshakeError::WrongPassword("admin".into())),
            "{e}"
        );
        let e = Session::open(&target(&sim, "nosuchuser", "password"), QUICK)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, BmcError::Auth(HandshakeError::UnknownUser(_))),
            "{e}"
        );
        // A session left at User privilege (ipmi_sim ignores per-user limits,
        // so ask for User ourselves) may read but not control the chassis.
        let mut t = target(&sim, "viewer", "viewerpw");
        t.creds.privilege = Privilege::User;
        let mut s = Session::open(&t, QUICK).await.unwrap();
        assert!(!commands::power_is_on(&mut s).await.unwrap());
        let e = commands::chassis_control(&mut s, ChassisAction::PowerOn)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            BmcError::Completion {
                command: "Chassis Control",
                code: 0xD4
            }
        );
        s.close().await;
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = target(&sim, "admin", "password");
        t.addr = dead.local_addr().unwrap();
        let started = Instant::now();
        let e = Session::open(&t, QUICK).await.err().unwrap();
        assert_eq!(e, BmcError::Unreachable(t.addr));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn sessions_are_closed_after_200_operations_and_on_drop() {
    let sim = Sim::start();
    let before = sim.active_sessions();
    let rt = rt();
    rt.block_on(async {
        for i in 0..200 {
            let mut s = Session::open(&target(&sim, "admin", "password"), Timing::default())
                .await
                .unwrap();
            commands::power_is_on(&mut s).await.unwrap();
            if i % 2 == 0 {
                s.close().await;
            } // else dropped open: closed from the background
            tokio::task::yield_now().await;
        }
        // Let background closes finish.
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    assert_eq!(sim.active_sessions(), before, "sessions leaked");
    let _ = Path::new(&sim.path());
}
