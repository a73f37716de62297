//! The Redfish driver through the daemon's API against the project's FAKE
//! Redfish BMCs (tests/common/fakeredfish.rs), for what sushy-tools cannot
//! emulate (tests/redfish_sushy.rs drives the real emulator): sessions that
//! can be counted (never leaked, on errors either), ETag/If-Match, task
//! monitors, TLS with a CA, a wrong name, an expired and a self-signed
//! certificate, refusals carrying the BMC's own message, scans finding
//! Redfish (and a host answering IPMI too registered once).

mod common;

use common::fakeredfish::{self, Cert, Farm, Options};
use common::Daemon;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn run_job(d: &Daemon, request: Value) -> Value {
    let r = d.ok(request);
    let (id, action) = (r["job_id"].clone(), r["job_action"].clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "job_action": action, "job_id": id}));
        if s["status"] == "successful" || s["status"] == "failed" {
            return s;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn describe(d: &Daemon, id: &Value) -> Value {
    d.ok(json!({"action": "DescribeBMNodes", "node_ids": [id]}))["node_set"][0].clone()
}

/// Waits until `f` holds (the inventory is read in the background).
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh number for each PXE MAC.
fn mac_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn node(name: &str, address: &str) -> Value {
    json!({
        "hostname": name, "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "bmc_address": address, "ipmi_username": fakeredfish::USER, "ipmi_password": fakeredfish::PASSWORD,
        "pxe_network_mac_addr": format!("52:54:00:ee:{:02x}:{:02x}", (mac_seq() >> 8) as u8, mac_seq() as u8),
    })
}

fn ca_config(farm: &Farm, dir: &std::path::Path) -> String {
    let ca = dir.join("bmc-ca.pem");
    std::fs::write(&ca, &farm.ca_pem).unwrap();
    format!("[redfish]\nca_file = \"{}\"\n", ca.display())
}

#[test]
fn power_boot_inventory_sessions_etags_and_tasks() {
    let farm = fakeredfish::start(1, Options::default());
    let bmc = farm.bmcs[0].clone();
    let cadir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(Some(&ca_config(&farm, cadir.path())), |_| {});
    let url = format!("redfish://127.0.0.1:{}", bmc.addr.port());
    let r = d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [node("rf01", &url)]}));
    let id = r["node_ids"][0].clone();

    // Registration reads the out-of-band inventory in the background.
    wait_for("the BMC inventory", || {
        !describe(&d, &id)["bmc_inventory_time"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    });
    let n = describe(&d, &id);
    assert_eq!(n["bmc_driver"], "redfish", "{n}");
    assert_eq!(
        n["bmc_address"],
        format!("redfish://127.0.0.1:{}", bmc.addr.port())
    );
    assert_eq!(n["bmc_verify_tls"], 1);
    assert_eq!(n["ipmi"]["ipmi_network_address"], "");
    assert_eq!(n["ipmi"]["ipmi_password"], "******");
    let inv = &n["bmc_inventory"];
    assert_eq!(inv["manufacturer"], "Fake Redfish", "{n}");
    assert_eq!(inv["model"], "FR-1");
    assert_eq!(inv["bios_version"], "1.2.3");
    assert_eq!(inv["processors"]["count"], 2);
    assert_eq!(inv["memory_gib"], 8.0);
    assert_eq!(inv["nics"][0]["speed_mbps"], 10000);
    assert_eq!(inv["drives"][0]["model"], "FakeSSD");
    assert_eq!(inv["drives"][0]["capacity_bytes"], 480_103_981_056u64);
    assert_eq!(
        n["general"]["serial_number"],
        format!("FR{}", bmc.addr.port())
    );
    assert_eq!(
        bmc.open_sessions(),
        0,
        "the inventory's session was deleted"
    );

    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{s}");
    assert!(bmc.with(|st| st.power_on));
    // The reset answered 202 with a task monitor, followed to its end.
    assert!(bmc.with(|st| st.tasks.values().all(|left| *left == 0) && !st.tasks.is_empty()));

    // No PowerCycle advertised: a cycle is off, then on.
    let s = run_job(
        &d,
        json!({"action": "RestartBMNodes", "node_ids": [id], "force": 0}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    let s = run_job(
        &d,
        json!({"action": "RestartBMNodes", "node_ids": [id], "force": 1}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(
        bmc.with(|st| st.resets.clone()),
        ["On", "ForceOff", "On", "ForceRestart"]
    );

    // Boot override with the mode, If-Match with the system's ETag.
    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "pxe", "efi": 1}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(
        bmc.with(|st| (
            st.boot_target.clone(),
            st.boot_enabled.clone(),
            st.boot_mode.clone()
        )),
        ("Pxe".into(), "Once".into(), "UEFI".into())
    );
    let log = d.ok(
        json!({"action": "GetLog", "job_action": "SetBMNodesBootDevice", "job_id": s["job_id"]}),
    );
    assert!(
        log.to_string()
            .contains("boot device pxe (next boot only, UEFI)"),
        "{log}"
    );
    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "cd", "persistent": 1}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(
        bmc.with(|st| (
            st.boot_target.clone(),
            st.boot_enabled.clone(),
            st.boot_mode.clone()
        )),
        // No `efi` in the request: the node's boot_mode (uefi by default).
        ("Cd".into(), "Continuous".into(), "UEFI".into())
    );
    assert_eq!(
        bmc.with(|st| st.etag_refusals),
        0,
        "every PATCH carried the right If-Match"
    );

    let s = run_job(&d, json!({"action": "StopBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{s}");
    assert!(!bmc.with(|st| st.power_on));
    let s = run_job(
        &d,
        json!({"action": "RefreshBMNodesPowerState", "node_ids": [id]}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    assert_eq!(describe(&d, &id)["power_state"], "off");

    // A refusal carries the BMC's own words; the session is deleted anyway.
    bmc.with(|st| {
        st.refuse_boot = Some("Boot override is locked by the BIOS setup password".into())
    });
    let s = run_job(
        &d,
        json!({"action": "SetBMNodesBootDevice", "node_ids": [id], "boot_device": "disk"}),
    );
    assert_eq!(s["status"], "failed", "{s}");
    let mine = &s["node_progress"][id.as_str().unwrap()];
    assert_eq!(mine["ret_code"], 3500, "{s}");
    assert!(
        mine["message"]
            .as_str()
            .unwrap()
            .contains("locked by the BIOS setup password"),
        "{s}"
    );
    bmc.with(|st| st.refuse_boot = None);

    // A wrong password: 3200 with the Redfish message; no session left.
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": id, "ipmi_password": "wrong-password"}));
    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [id]}));
    let mine = &s["node_progress"][id.as_str().unwrap()];
    assert_eq!(mine["ret_code"], 3200, "{s}");
    assert!(
        mine["message"]
            .as_str()
            .unwrap()
            .contains("refused the login of user admin"),
        "{s}"
    );
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": id, "ipmi_password": fakeredfish::PASSWORD}));

    // Another tool holds every session: 3400, and ours are all gone.
    let others = bmc.with(|st| {
        for i in 0..4 {
            st.sessions.insert(1000 + i, format!("other-{i}"));
        }
        st.sessions.len()
    });
    assert_eq!(others, 4);
    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [id]}));
    assert_eq!(
        s["node_progress"][id.as_str().unwrap()]["ret_code"],
        3400,
        "{s}"
    );
    bmc.with(|st| st.sessions.clear());

    let (logins, logouts) = bmc.with(|st| (st.logins, st.logouts));
    // One session per operation: the inventory, start, two restarts, two
    // boot overrides, stop, refresh and the refused boot override (the
    // refused logins opened none).
    assert_eq!(logins, 9, "one session per operation");
    assert_eq!(logins, logouts, "every session was deleted");
    assert_eq!(bmc.open_sessions(), 0);
}

#[test]
fn a_dropped_session_is_deleted_in_the_background() {
    use rackboot::foundation::redfish::client::{Session, Target, Timing, Tls};
    use rackboot::foundation::redfish::BmcUrl;
    let farm = fakeredfish::start(1, Options::default());
    let bmc = farm.bmcs[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &farm.ca_pem).unwrap();
    let tls = Tls::new(ca.to_str().unwrap()).unwrap();
    let target = Target {
        url: BmcUrl::parse(&format!("redfish://127.0.0.1:{}", bmc.addr.port())).unwrap(),
        user: fakeredfish::USER.into(),
        password: fakeredfish::PASSWORD.into(),
        verify_tls: true,
    };
    rt.block_on(async {
        let s = Session::open(&target, &tls, Timing::default())
            .await
            .unwrap();
        assert!(s.uses_session());
        assert_eq!(bmc.open_sessions(), 1);
        // A cancelled operation drops its session without closing it.
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(10);
        while bmc.open_sessions() != 0 {
            assert!(Instant::now() < deadline, "the dropped session stayed open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(bmc.with(|st| st.logouts), 1);
}

#[test]
fn virtual_media_by_insert_action_and_by_the_older_patch_form() {
    use rackboot::foundation::redfish::client::{Session, Target, Timing, Tls};
    use rackboot::foundation::redfish::BmcUrl;
    use rackboot::service::power::redfish as driver;
    let rt = tokio::runtime::Runtime::new().unwrap();
    for patch in [false, true] {
        let farm = fakeredfish::start(
            1,
            Options {
                media_patch: patch,
                ..Options::default()
            },
        );
        let bmc = farm.bmcs[0].clone();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &farm.ca_pem).unwrap();
        let tls = Tls::new(ca.to_str().unwrap()).unwrap();
        let target = Target {
            url: BmcUrl::parse(&format!(
                "redfish-virtualmedia://127.0.0.1:{}",
                bmc.addr.port()
            ))
            .unwrap(),
            user: fakeredfish::USER.into(),
            password: fakeredfish::PASSWORD.into(),
            verify_tls: true,
        };
        rt.block_on(async {
            let mut s = Session::open(&target, &tls, Timing::default())
                .await
                .unwrap();
            driver::insert_media(&mut s, "http://10.0.0.1:8080/vmedia/n-1/tok/deploy.iso")
                .await
                .unwrap();
            assert!(
                bmc.with(|st| st.media_inserted && st.media_image.ends_with("/deploy.iso")),
                "patch {patch}"
            );
            // Inserting again ejects what is there first.
            driver::insert_media(&mut s, "http://10.0.0.1:8080/vmedia/n-1/tok2/deploy.iso")
                .await
                .unwrap();
            assert!(bmc.with(|st| st.media_image.contains("tok2")));
            driver::eject_media(&mut s).await.unwrap();
            assert!(
                bmc.with(|st| !st.media_inserted && st.media_image.is_empty()),
                "patch {patch}"
            );
            s.close().await;
        });
        assert_eq!(bmc.with(|st| st.etag_refusals), 0);
        assert_eq!(bmc.open_sessions(), 0);
    }
}

#[test]
fn tls_failures_name_the_certificate_problem() {
    let good = fakeredfish::start(1, Options::default());
    let wrong_name = fakeredfish::start(
        1,
        Options {
            tls: Some(Cert::WrongName),
            ..Options::default()
        },
    );
    let expired = fakeredfish::start(
        1,
        Options {
            tls: Some(Cert::Expired),
            ..Options::default()
        },
    );
    let self_signed = fakeredfish::start(
        1,
        Options {
            tls: Some(Cert::SelfSigned),
            ..Options::default()
        },
    );
    // The farms share one test CA, which is trusted.
    let cadir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(Some(&ca_config(&good, cadir.path())), |_| {});
    let url = |f: &Farm| {
        format!(
            "redfish://127.0.0.1:{}/redfish/v1/Systems/1",
            f.bmcs[0].addr.port()
        )
    };
    let r = d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [
        node("tls-good", &url(&good)), node("tls-name", &url(&wrong_name)),
        node("tls-expired", &url(&expired)), node("tls-self", &url(&self_signed)),
        node("tls-closed", "redfish://127.0.0.1:1/redfish/v1/Systems/1"),
    ]}));
    let ids: Vec<String> = r["node_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": ids}));
    let p = &s["node_progress"];
    assert_eq!(p[&ids[0]]["ret_code"], 0, "{s}");
    for (i, words) in [
        (1, "not valid for this host name"),
        (2, "expired"),
        (3, "not signed by a trusted CA"),
    ] {
        assert_eq!(p[&ids[i]]["ret_code"], 3150, "{s}");
        let m = p[&ids[i]]["message"].as_str().unwrap();
        assert!(
            m.contains(words) && m.contains("failed the TLS check"),
            "{m}"
        );
    }
    assert_eq!(p[&ids[4]]["ret_code"], 3100, "{s}");
    assert!(
        p[&ids[4]]["message"]
            .as_str()
            .unwrap()
            .contains("does not answer"),
        "{s}"
    );
    assert_eq!(good.bmcs[0].open_sessions(), 0);

    // bmc_verify_tls 0 accepts the self-signed BMC: said in Describe and
    // logged once.
    d.ok(json!({"action": "ModifyBMNodeAttributes", "node_id": ids[3], "bmc_verify_tls": 0}));
    assert_eq!(describe(&d, &json!(ids[3]))["bmc_verify_tls"], 0);
    for _ in 0..2 {
        let s = run_job(&d, json!({"action": "StartBMNodes", "node_ids": [ids[3]]}));
        assert_eq!(s["status"], "successful", "{s}");
    }
    assert!(self_signed.bmcs[0].with(|st| st.power_on));
    assert_eq!(
        d.log()
            .matches("certificate is not verified (bmc_verify_tls 0)")
            .count(),
        1,
        "{}",
        d.log()
    );
}

#[test]
fn bmc_addresses_are_checked_and_unique() {
    let d = Daemon::start();
    let mut both = node("both01", "redfish://10.0.0.5");
    both["ipmi_network_address"] = json!("10.0.0.5");
    let r = d.call(json!({"action": "RegisterBMNodes", "bm_nodes": [both]}));
    assert_eq!(r["ret_code"], 1100, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("name different BMCs"),
        "{r}"
    );
    // Both naming the same IPMI BMC agree.
    let mut same = node("same01", "ipmi://10.0.0.6:6230");
    same["ipmi_network_address"] = json!("10.0.0.6");
    same["ipmi_port"] = json!(6230);
    d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [same]}));
    let n = d.ok(json!({"action": "DescribeBMNodes"}))["node_set"][0].clone();
    assert_eq!(n["bmc_driver"], "ipmi");
    assert_eq!(n["bmc_address"], "ipmi://10.0.0.6:6230");
    assert_eq!(n["ipmi"]["ipmi_port"], 6230);
    for bad in [
        "10.0.0.7",
        "idrac://10.0.0.7",
        "redfish://10.0.0.7/redfish/v1/Chassis/1",
    ] {
        let r = d.call(json!({"action": "RegisterBMNodes", "bm_nodes": [node("bad01", bad)]}));
        assert_eq!(r["ret_code"], 1100, "{bad}: {r}");
        assert!(
            r["message"].as_str().unwrap().contains("bmc_address"),
            "{r}"
        );
    }
    d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [node("vm01", "redfish-virtualmedia+http://10.0.0.8:8000/redfish/v1/Systems/abc")]}));
    // The same system under another driver spelling is the same machine.
    let r = d.call(json!({"action": "RegisterBMNodes", "bm_nodes": [node("vm02", "redfish+http://10.0.0.8:8000/redfish/v1/Systems/abc/")]}));
    assert_eq!(r["ret_code"], 2400, "{r}");
    // Another system behind the same BMC is another machine.
    d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [node("vm03", "redfish+http://10.0.0.8:8000/redfish/v1/Systems/def")]}));
    let all = d.ok(json!({"action": "DescribeBMNodes"}));
    let drivers: Vec<&str> = all["node_set"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["bmc_driver"].as_str().unwrap())
        .collect();
    assert_eq!(drivers, ["ipmi", "redfish-virtualmedia", "redfish"]);
    // Redfish passwords may be longer than IPMI's 20 bytes; IPMI's may not.
    let mut long = node("long01", "redfish://10.0.0.9");
    long["ipmi_password"] = json!("p".repeat(40));
    d.ok(json!({"action": "RegisterBMNodes", "bm_nodes": [long]}));
    let mut long = node("long02", "ipmi://10.0.0.9");
    long["ipmi_password"] = json!("p".repeat(40));
    let r = d.call(json!({"action": "RegisterBMNodes", "bm_nodes": [long]}));
    assert!(
        r["ret_code"] == 1100 && r["message"].as_str().unwrap().contains("ipmi_password"),
        "{r}"
    );
}

#[test]
fn scans_find_redfish_and_register_a_host_with_both_protocols_once() {
    use std::net::{Ipv4Addr, UdpSocket};
    let farm = fakeredfish::start(
        1,
        Options {
            tls: Some(Cert::SelfSigned),
            ..Options::default()
        },
    );
    let rf_port = farm.bmcs[0].addr.port();
    let ipmi_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    common::fakebmc::spawn(common::fakebmc::addresses(
        1,
        Ipv4Addr::LOCALHOST,
        ipmi_port,
        None,
    ));
    let d = Daemon::start();
    // Verifying, a self-signed BMC is reported and not registered.
    let s = run_job(
        &d,
        json!({"action": "ScanBMNodes", "ip_start": "127.0.0.1", "ip_end": "127.0.0.1",
        "protocols": "redfish", "redfish_port": rf_port, "ipmi_username": "admin", "ipmi_password": "password"}),
    );
    let log = d.ok(json!({"action": "GetScanBMNodesLog", "job_id": s["job_id"]}));
    assert!(
        log.to_string().contains("not signed by a trusted CA"),
        "{log}"
    );
    assert!(log.to_string().contains("registered 0"), "{log}");
    // Both protocols, certificates not verified: one node, as Redfish.
    let s = run_job(
        &d,
        json!({"action": "ScanBMNodes", "ip_start": "127.0.0.1", "ip_end": "127.0.0.1",
        "ipmi_port": ipmi_port, "redfish_port": rf_port, "bmc_verify_tls": 0,
        "ipmi_username": "admin", "ipmi_password": "password"}),
    );
    assert_eq!(s["status"], "successful", "{s}");
    let log = d
        .ok(json!({"action": "GetScanBMNodesLog", "job_id": s["job_id"]}))
        .to_string();
    assert!(
        log.contains("answers IPMI and Redfish; using Redfish"),
        "{log}"
    );
    assert!(log.contains("found 1, registered 1"), "{log}");
    let all = d.ok(json!({"action": "DescribeBMNodes"}));
    assert_eq!(all["total_count"], 1, "{all}");
    let n = &all["node_set"][0];
    assert_eq!(
        n["bmc_address"],
        format!("redfish://127.0.0.1:{rf_port}/redfish/v1/Systems/1")
    );
    assert_eq!(n["bmc_verify_tls"], 0);
    assert_eq!(n["general"]["brand"], "Fake Redfish");
    assert_eq!(n["general"]["hostname"], format!("bmc-127-0-0-1-{rf_port}"));
    // The node's inventory follows in the background; then no session is
    // left open (the scan's and the inventory's were deleted).
    let id = n["node_id"].clone();
    wait_for("the scanned node's inventory", || {
        !describe(&d, &id)["bmc_inventory_time"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    });
    wait_for("no open session", || farm.bmcs[0].open_sessions() == 0);
    assert_eq!(
        farm.bmcs[0].with(|st| st.logins),
        farm.bmcs[0].with(|st| st.logouts)
    );
    // A re-scan updates the node rather than adding one.
    let s = run_job(&d, json!({"action": "ScanBMNodes", "node_ids": [id]}));
    assert_eq!(s["status"], "successful", "{s}");
    let log = d
        .ok(json!({"action": "GetScanBMNodesLog", "job_id": s["job_id"]}))
        .to_string();
    assert!(log.contains("updated 1"), "{log}");
    // IPMI only: the same host is known, so it is updated, not added.
    let s = run_job(
        &d,
        json!({"action": "ScanBMNodes", "ip_start": "127.0.0.1", "ip_end": "127.0.0.1",
        "protocols": ["ipmi"], "ipmi_port": ipmi_port, "ipmi_username": "admin", "ipmi_password": "password"}),
    );
    let log = d
        .ok(json!({"action": "GetScanBMNodesLog", "job_id": s["job_id"]}))
        .to_string();
    assert!(log.contains("registered 0, updated 1"), "{log}");
    let r = d.call(json!({"action": "ScanBMNodes", "ip_start": "127.0.0.1", "ip_end": "127.0.0.1", "protocols": "snmp",
        "ipmi_username": "admin", "ipmi_password": "password"}));
    assert_eq!(r["ret_code"], 1100, "{r}");
}
