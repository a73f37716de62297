//! Cipher suite 17 end to end. No BMC on these machines speaks 17, so the
//! project's fake BMC (tests/common/fakebmc.rs, built on the same crypto
//! module) is checked against ipmitool — an independent implementation — in
//! both suites first; then rackboot's client, asking the BMC, gets suite 17.

mod common;

use common::fakebmc;
use common::sim::rt;
use rackboot::foundation::ipmi::client::{Session, Target, Timing};
use rackboot::foundation::ipmi::commands::{self, ChassisAction};
use rackboot::foundation::ipmi::session::{Credentials, Privilege};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;

fn ipmitool(port: u16, suite: &str, args: &[&str]) -> String {
    let out = Command::new("ipmitool")
        .args([
            "-I",
            "lanplus",
            "-C",
            suite,
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
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

#[test]
fn suite_17_interoperates_with_ipmitool_and_is_preferred() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fakebmc::spawn(fakebmc::addresses(1, Ipv4Addr::LOCALHOST, port, None));

    assert!(ipmitool(port, "17", &["chassis", "power", "status"]).contains("Chassis Power is off"));
    assert!(ipmitool(port, "17", &["chassis", "power", "on"]).contains("Up/On"));
    assert!(ipmitool(port, "3", &["chassis", "power", "status"]).contains("Chassis Power is on"));

    rt().block_on(async {
        let target = Target {
            addr: ([127, 0, 0, 1], port).into(),
            creds: Credentials {
                user: "admin".into(),
                password: "password".into(),
                bmc_key: None,
                privilege: Privilege::Administrator,
            },
            suite: None,
        };
        let mut s = Session::open(&target, Timing::default()).await.unwrap();
        assert_eq!(s.suite().id(), 17);
        assert!(commands::power_is_on(&mut s).await.unwrap());
        commands::chassis_control(&mut s, ChassisAction::PowerOff)
            .await
            .unwrap();
        s.close().await;
    });
    assert!(ipmitool(port, "17", &["chassis", "power", "status"]).contains("Chassis Power is off"));
}

#[test]
fn a_bmc_key_is_used_when_set_and_its_absence_is_named() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kg = b"0123456789abcdefghij".to_vec();
    fakebmc::spawn_with_key(
        fakebmc::addresses(1, Ipv4Addr::LOCALHOST, port, None),
        Some(kg.clone()),
    );
    // ipmitool with the same Kg (-k) validates the fake BMC's key handling.
    assert!(ipmitool(
        port,
        "3",
        &["-k", "0123456789abcdefghij", "chassis", "power", "status"]
    )
    .contains("Chassis Power is off"));

    rt().block_on(async {
        let mut target = Target {
            addr: ([127, 0, 0, 1], port).into(),
            creds: Credentials {
                user: "admin".into(),
                password: "password".into(),
                bmc_key: Some(kg.clone()),
                privilege: Privilege::Administrator,
            },
            suite: None,
        };
        let mut s = Session::open(&target, Timing::default()).await.unwrap();
        assert!(!commands::power_is_on(&mut s).await.unwrap());
        s.close().await;
        target.creds.bmc_key = None;
        let e = Session::open(
            &target,
            Timing {
                timeout: std::time::Duration::from_millis(300),
                attempts: 1,
            },
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "login refused: the session keys do not match: check the BMC key (Kg)"
        );
    });
}
