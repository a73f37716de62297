//! Bad input never succeeds and never changes anything: for every action of
//! the catalogue, each bad-input class returns a non-zero ret_code from the
//! documented catalogue, with a message naming the problem, and the store
//! (as the API shows it) is unchanged afterwards.

mod common;

use common::{node, register, Daemon};
use rackboot::transport::api::catalogue::ACTIONS;
use rackboot::transport::api::params::Ty;
use serde_json::{json, Value};

const CODES: &[i64] = &[1100, 1101, 1102, 1103, 1200, 2100, 2300, 2400, 5000];

fn assert_refused(d: &Daemon, request: Value, code: i64, mentions: &str) {
    let r = d.call(request.clone());
    assert_eq!(r["ret_code"], code, "request {request} → {r}");
    assert!(CODES.contains(&code));
    let msg = r["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(mentions),
        "message for {request} should mention `{mentions}`: {msg}"
    );
}

/// A value of the right JSON type for `ty` (not necessarily a valid value).
fn right_type(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!("x"),
        Ty::Int | Ty::Flag => json!(0),
        Ty::List => json!(["n-Zz000000"]),
        Ty::Objects => json!([{}]),
        Ty::Object => json!({}),
    }
}

/// A value of the wrong JSON type for `ty`.
fn wrong_type(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!(12),
        Ty::Int | Ty::Flag => json!("twelve"),
        Ty::List => json!(5),
        Ty::Objects => json!("nodes"),
        Ty::Object => json!(["not", "an", "object"]),
    }
}

#[test]
fn every_action_refuses_missing_and_mistyped_parameters_without_changes() {
    let d = Daemon::start();
    register(&d, 0, 3);
    let before = d.snapshot();
    for action in ACTIONS {
        for param in action.params.iter().filter(|p| p.required) {
            // Every other required parameter present, this one missing.
            let mut req = json!({"action": action.name});
            for other in action
                .params
                .iter()
                .filter(|o| o.required && o.name != param.name)
            {
                req[other.name] = right_type(other.ty);
            }
            assert_refused(&d, req, 1101, param.name);
        }
        for param in action.params {
            let mut req = json!({"action": action.name});
            req[param.name] = wrong_type(param.ty);
            assert_refused(&d, req, 1100, param.name);
        }
        assert_refused(
            &d,
            json!({"action": action.name, "colour": "blue"}),
            1100,
            "colour",
        );
        assert_refused(
            &d,
            json!({"action": action.name, "request_type": "Nodes"}),
            1100,
            "request_type",
        );
    }
    assert_eq!(before, d.snapshot());
}

#[test]
fn unknown_ids_are_not_found_for_every_action_that_takes_them() {
    let d = Daemon::start();
    register(&d, 0, 2);
    let before = d.snapshot();
    let unknown_node = "n-Zz000000";
    assert_refused(
        &d,
        json!({"action": "DescribeBMNodes", "node_ids": [unknown_node]}),
        2100,
        unknown_node,
    );
    assert_refused(
        &d,
        json!({"action": "DeleteBMNodes", "node_ids": [unknown_node]}),
        2100,
        unknown_node,
    );
    assert_refused(
        &d,
        json!({"action": "ModifyBMNodeAttributes", "node_id": unknown_node, "brand": "hp"}),
        2100,
        unknown_node,
    );
    assert_refused(
        &d,
        json!({"action": "GetStatus", "job_action": "ScanBMNodes", "job_id": "j-Zz000000"}),
        2100,
        "j-Zz000000",
    );
    assert_refused(
        &d,
        json!({"action": "GetLog", "job_action": "ScanBMNodes", "job_id": "j-Zz000000"}),
        2100,
        "j-Zz000000",
    );
    assert_refused(
        &d,
        json!({"action": "GetStatus", "job_action": "ScanBMNodes"}),
        2100,
        "ScanBMNodes",
    );
    assert_refused(
        &d,
        json!({"action": "DescribeMessages", "message_ids": ["m-Zz000000"]}),
        2100,
        "m-Zz000000",
    );
    assert_refused(
        &d,
        json!({"action": "DeleteMessages", "message_ids": ["m-Zz000000"]}),
        2100,
        "m-Zz000000",
    );
    assert_refused(
        &d,
        json!({"action": "DeleteUser", "user_id": "nobody"}),
        2100,
        "nobody",
    );
    assert_refused(
        &d,
        json!({"action": "ModifyUserPassword", "user_id": "nobody"}),
        2100,
        "nobody",
    );
    // Malformed ids are bad parameters, not lookups.
    assert_refused(
        &d,
        json!({"action": "DeleteBMNodes", "node_ids": ["node1"]}),
        1100,
        "node_ids[0]",
    );
    assert_refused(
        &d,
        json!({"action": "GetStatus", "job_action": "ScanBMNodes", "job_id": "12"}),
        1100,
        "job_id",
    );
    assert_refused(
        &d,
        json!({"action": "GetStatus", "job_action": "Scan"}),
        1100,
        "job_action",
    );
    assert_refused(
        &d,
        json!({"action": "GetLog", "job_action": "ScanBMNodes", "job_status": "running"}),
        1100,
        "job_status",
    );
    assert_refused(
        &d,
        json!({"action": "DescribeBMNodes", "status": "sleeping"}),
        1100,
        "status",
    );
    assert_refused(
        &d,
        json!({"action": "DescribeBMNodes", "limit": 0}),
        1100,
        "limit",
    );
    assert_refused(
        &d,
        json!({"action": "DescribeMessages", "level": "LOUD"}),
        1100,
        "level",
    );
    // A delete naming one good and one unknown node deletes neither.
    let ids = d.ok(json!({"action": "DescribeBMNodes"}))["node_set"][0]["node_id"].clone();
    assert_refused(
        &d,
        json!({"action": "DeleteBMNodes", "node_ids": [ids, unknown_node]}),
        2100,
        unknown_node,
    );
    assert_eq!(before, d.snapshot());
}

#[test]
fn malformed_addresses_macs_and_vlans_are_refused_by_register_and_modify() {
    let d = Daemon::start();
    let id = register(&d, 0, 1).remove(0);
    let before = d.snapshot();
    let cases: &[(&str, Value)] = &[
        ("ipmi_network_address", json!("10.0.0.300")),
        ("ipmi_network_address", json!("bmc.example")),
        ("pxe_network_mac_addr", json!("52:54:00:zz:00:01")),
        ("pxe_network_mac_addr", json!("52:54:00:00:01")),
        ("mgmt_network_netmask", json!("255.0.255.0")),
        ("mgmt_network_gateway", json!("10.9.9.9")),
        ("mgmt_network_vlan_id", json!(5000)),
        ("is_mgmt_config_vlan", json!(2)),
        ("hostname", json!("under_score")),
        ("cpu_arch", json!("sparc")),
        ("ipmi_port", json!(0)),
    ];
    for (field, value) in cases {
        let mut n = node(50);
        n[*field] = value.clone();
        let mut req = n.clone();
        req["action"] = json!("RegisterBMNodes");
        assert_refused(&d, req, 1100, field);
        // The same node inside a bm_nodes list: the message names its index.
        let r = d.call(json!({"action": "RegisterBMNodes", "bm_nodes": [node(60), n]}));
        assert_eq!(r["ret_code"], 1100, "{r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.starts_with("bm_nodes[1]") && msg.contains(field),
            "{msg}"
        );
        assert_refused(
            &d,
            json!({"action": "ModifyBMNodeAttributes", "node_id": id, *field: value}),
            1100,
            field,
        );
    }
    // VLAN flag 1 needs an id.
    assert_refused(
        &d,
        json!({"action": "ModifyBMNodeAttributes", "node_id": id, "is_public_config_vlan": 1}),
        1100,
        "public_network_vlan_id",
    );
    // Missing required field of a registration.
    let mut n = node(70);
    n.as_object_mut().unwrap().remove("pxe_network_mac_addr");
    n["action"] = json!("RegisterBMNodes");
    assert_refused(&d, n, 1101, "pxe_network_mac_addr");
    // Duplicates inside one request and against the store.
    assert_refused(
        &d,
        json!({"action": "RegisterBMNodes", "bm_nodes": [node(80), node(80)]}),
        2400,
        "bm_nodes[1]",
    );
    let mut dup = node(81);
    dup["hostname"] = json!("rack1n00000");
    dup["action"] = json!("RegisterBMNodes");
    assert_refused(&d, dup, 2400, &id);
    assert_eq!(before, d.snapshot());
}

#[test]
fn transport_level_bad_requests_are_refused() {
    let d = Daemon::start();
    register(&d, 0, 1);
    let before = d.snapshot();

    assert_refused(
        &d,
        json!({"action": "DescribeBMNodez"}),
        1102,
        "DescribeBMNodez",
    );
    assert_refused(
        &d,
        json!({"action": "describebmnodes"}),
        1102,
        "DescribeBMNodes",
    );
    assert_refused(&d, json!({"request_type": "BMNode"}), 1101, "action");

    let (status, r) = d.post_bytes(b"{\"action\": \"DescribeBMNodes\",");
    assert_eq!(status, 200);
    assert_eq!(r["ret_code"], 1100, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("not valid JSON"),
        "{r}"
    );
    let (_, r) = d.post_bytes(b"[1, 2]");
    assert_eq!(r["ret_code"], 1100, "{r}");

    let big = format!(
        "{{\"action\":\"RegisterBMNodes\",\"description\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 1)
    );
    let (status, r) = d.post_bytes(big.as_bytes());
    assert_eq!(status, 413);
    assert_eq!(r["ret_code"], 1103, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("max_request_bytes"),
        "{r}"
    );

    let wrong = d.raw(
        &json!({"action": "DescribeBMNodes", "USER_ID": "admin", "PASSWORD": "wrong-password"}),
    );
    assert_eq!(wrong["ret_code"], 1200, "{wrong}");
    let missing = d.raw(&json!({"action": "DescribeBMNodes", "USER_ID": "admin"}));
    assert_eq!(missing["ret_code"], 1200, "{missing}");
    assert!(missing["message"].as_str().unwrap().contains("PASSWORD"));
    let nobody =
        d.raw(&json!({"action": "DescribeBMNodes", "USER_ID": "ghost", "PASSWORD": d.password()}));
    assert_eq!(nobody["ret_code"], 1200, "{nobody}");
    // Unauthenticated requests change nothing either.
    let mut n = node(9);
    n["action"] = json!("RegisterBMNodes");
    n["USER_ID"] = json!("admin");
    n["PASSWORD"] = json!("nope-nope");
    assert_eq!(d.raw(&n)["ret_code"], 1200);

    assert_eq!(before, d.snapshot());
    // The daemon is still serving after all of that.
    d.ok(json!({"action": "DescribeBMNodes"}));
}

#[test]
fn ipmi_password_is_never_returned_nor_logged() {
    let d = Daemon::start();
    let mut n = node(1);
    n["ipmi_password"] = json!("S3cretBMC!");
    n["action"] = json!("RegisterBMNodes");
    let id = d.ok(n)["node_ids"][0].as_str().unwrap().to_string();
    d.ok(
        json!({"action": "ModifyBMNodeAttributes", "node_id": id, "ipmi_password": "0therS3cret"}),
    );
    let all = d.ok(json!({"action": "DescribeBMNodes"})).to_string();
    assert!(
        !all.contains("S3cretBMC!") && !all.contains("0therS3cret"),
        "{all}"
    );
    assert!(all.contains("******"));
    let log = d.log();
    assert!(
        !log.contains("S3cretBMC!") && !log.contains("0therS3cret") && !log.contains(&d.password())
    );
}
