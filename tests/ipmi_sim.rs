//! The IPMI client against a real BMC: OpenIPMI's ipmi_sim (lanplus,
//! cipher suite 3) on loopback, with a chassis_control program that keeps
//! power and boot device in files; every change is cross-checked with
//! ipmitool, a peer none of this code wrote.

mod common;

use common::sim::{rt, Sim};
use rackboot::foundation::ipmi::client::{BmcError, Session, Target, Timing};
use rackboot::foundation::ipmi::commands::{self, BootDevice, BootSetting, ChassisAction};
use rackboot::foundation::ipmi::session::{Credentials, HandshakeError, Privilege};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

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
        let fru = commands::read_fru(&mut s)
            .await
            .unwrap()
            .expect("the simulator has a FRU");
        assert_eq!((fru.brand(), fru.serial()), ("Dell Inc.", "CN7016"));
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
fn sessions_are_closed_after_1000_operations_and_on_drop() {
    let sim = Sim::start();
    let before = sim.active_sessions();
    let rt = rt();
    rt.block_on(async {
        for i in 0..1000 {
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
}
