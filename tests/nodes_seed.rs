//! Seed 002 §1 (Node) request examples sent as written (credentials added),
//! in a network namespace of the test's own so that the AddNodes example's
//! range 10.10.10.10–10.10.10.20 exists only there: one real sshd answers at
//! 10.10.10.12 on a bridge over a veth port, and its collected networks show
//! the bridge. Ids the examples name are seeded into the database first.

mod common;

use common::netns::Netns;
use common::sshd::{Quirk, Sshd};
use common::Daemon;
use rackboot::foundation::inventory::{Cpu, Disk, Inventory, Net, Os};
use rackboot::foundation::store::{Node, NodeStatus, Store};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const DESCRIBE_EXAMPLE_NODE: &str = r#"{
  "cpu": {"cpu_arch": "x86_64", "cpu_cores": 12, "cpu_model": "Westmere E56xx/L56xx/X56xx (Nehalem-C)", "cpu_processors": 12, "cpu_sockets": 12},
  "create_time": "2019-12-18 13:12:03",
  "data_disks": [
    {"disk_id": "d-96oJeQZ4", "id": "virtio-vol-z7lv8fbw", "name": "vdc", "node_id": "n-8AQZMLrm", "rest_part": "", "rest_size": 0.0, "root_part": "", "root_size": 0.0, "size": 215.0, "status": 1, "swap_part": "", "swap_size": 0.0, "type": "sata"},
    {"disk_id": "d-45bNy6mQ", "id": "virtio-vol-znk2mhbu", "name": "vdd", "node_id": "n-8AQZMLrm", "rest_part": "", "rest_size": 0.0, "root_part": "", "root_size": 0.0, "size": 215.0, "status": 1, "swap_part": "", "swap_size": 0.0, "type": "ssd"}
  ],
  "description": "",
  "hostname": "express1ar01n01",
  "memory": {"memory_size": 63.0},
  "mgmt_network": {"address": "172.16.80.3", "bond_mode": "", "bond_name": "", "bond_slaves": "", "gateway": "172.16.80.1", "name": "br0", "netmask": "255.255.255.0", "vlan_id": "", "vlan_raw_device": ""},
  "networks": [{
    "address": "172.16.80.3", "bond_mode": 0, "gateway": "172.16.80.1", "mac_address": "52:54:65:0a:6f:6f", "name": "br0",
    "netmask": "255.255.255.0", "network": "172.16.80.0/24", "network_id": "e-eyVisrNX", "node_id": "n-8AQZMLrm",
    "raw_device": "eth0", "raw_device_id": "e-hMQabGcA",
    "raw_device_info": {"address": "", "bond_mode": 0, "gateway": "", "mac_address": "52:54:65:0a:6f:6f", "name": "eth0", "netmask": "", "network": "", "network_id": "e-hMQabGcA", "node_id": "n-8AQZMLrm", "raw_device": "", "raw_device_id": "", "raw_device_type": "", "slave_devices": "", "type": "common"},
    "raw_device_type": "common", "slave_devices": "", "type": "bridge"
  }],
  "node_id": "n-8AQZMLrm",
  "os": {"kernel_version": "4.4.0-131-generic", "os_name": "trusty", "os_version": "16.04.5"},
  "os_disk": {"disk_id": "d-X1dM0UKA", "id": "virtio-i-1j2kjemk", "name": "vda", "node_id": "n-8AQZMLrm", "rest_part": "vda2", "rest_size": 0.0, "root_part": "vda1", "root_size": 53.7, "size": 53.7, "status": 0, "swap_part": "vdb", "swap_size": 0.0, "type": "sata"},
  "pre_status": "", "product_name": "", "product_type": "", "role": "", "status": "available", "sub_roles": [],
  "update_time": "2019-12-18 13:12:01", "zone_id": ""
}"#;

fn disk(id: &str, name: &str, size: f64, kind: &str, status: i64, os: bool) -> Disk {
    Disk {
        id: id.into(),
        name: name.into(),
        size,
        kind: kind.into(),
        status,
        is_os: os,
        ..Disk::default()
    }
}

/// The seed example's node as the store keeps it.
fn example_node() -> Node {
    let t = |s| rackboot::foundation::ids::parse_time(s).unwrap();
    let mut os_disk = disk("virtio-i-1j2kjemk", "vda", 53.7, "sata", 0, true);
    (
        os_disk.root_part,
        os_disk.root_size,
        os_disk.rest_part,
        os_disk.swap_part,
    ) = ("vda1".into(), 53.7, "vda2".into(), "vdb".into());
    let br0 = Net {
        name: "br0".into(),
        kind: "bridge".into(),
        mac_address: "52:54:65:0a:6f:6f".into(),
        address: "172.16.80.3".into(),
        netmask: "255.255.255.0".into(),
        network: "172.16.80.0/24".into(),
        gateway: "172.16.80.1".into(),
        raw_device: "eth0".into(),
        ..Net::default()
    };
    let eth0 = Net {
        name: "eth0".into(),
        kind: "common".into(),
        mac_address: "52:54:65:0a:6f:6f".into(),
        ..Net::default()
    };
    let inv = Inventory {
        hostname: "express1ar01n01".into(),
        machine_id: String::new(),
        cpu: Cpu {
            cpu_arch: "x86_64".into(),
            cpu_cores: 12,
            cpu_model: "Westmere E56xx/L56xx/X56xx (Nehalem-C)".into(),
            cpu_processors: 12,
            cpu_sockets: 12,
        },
        memory_size: 63.0,
        os: Os {
            kernel_version: "4.4.0-131-generic".into(),
            os_name: "trusty".into(),
            os_version: "16.04.5".into(),
        },
        disks: vec![
            os_disk,
            disk("virtio-vol-z7lv8fbw", "vdc", 215.0, "sata", 1, false),
            disk("virtio-vol-znk2mhbu", "vdd", 215.0, "ssd", 1, false),
        ],
        networks: vec![br0.clone()],
        devices: vec![br0, eth0],
        missing: vec![],
    };
    let mut stored = serde_json::to_value(&inv).unwrap();
    stored["disk_ids"] = json!({"vda": "d-X1dM0UKA", "vdc": "d-96oJeQZ4", "vdd": "d-45bNy6mQ"});
    stored["net_ids"] = json!({"br0": "e-eyVisrNX", "eth0": "e-hMQabGcA"});
    Node {
        node_id: "n-8AQZMLrm".into(),
        address: "172.16.80.3".into(),
        port: 22,
        hostname: "express1ar01n01".into(),
        role: String::new(),
        sub_roles: vec![],
        product_type: String::new(),
        product_name: String::new(),
        zone_id: String::new(),
        description: String::new(),
        status: NodeStatus::Available,
        pre_status: None,
        machine_id: String::new(),
        host_key: String::new(),
        bm_node_id: String::new(),
        inventory: stored.to_string(),
        create_time: t("2019-12-18 13:12:03"),
        update_time: t("2019-12-18 13:12:01"),
    }
}

fn seed(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&dir.join("rackboot.db")).unwrap();
        let mut test1234 = example_node();
        test1234.node_id = "n-test1234".into();
        test1234.address = "10.10.10.31".into();
        let mut stored: Value = serde_json::from_str(&test1234.inventory).unwrap();
        stored["disks"][1]["name"] = json!("vdb");
        stored["disks"][2]["name"] = json!("vdc");
        stored["disk_ids"] = json!({"vda": "d-aaaaaaa1", "vdb": "d-aaaaaaa2", "vdc": "d-aaaaaaa3"});
        test1234.inventory = stored.to_string();
        let mut with_role = example_node();
        with_role.node_id = "n-Role0001".into();
        with_role.address = "10.10.10.32".into();
        with_role.role = "controller".into();
        store
            .insert_nodes(vec![example_node(), test1234, with_role])
            .await
            .unwrap();
    });
}

fn same_shape(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let p = format!("{path}.{k}");
                same_shape(
                    v,
                    a.get(k)
                        .unwrap_or_else(|| panic!("missing {p} in {actual}")),
                    &p,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "length of {path}");
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                same_shape(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

#[test]
fn seed_node_examples_as_written() {
    let ns = Netns::new("seed");
    // A host: 10.10.10.12 on a bridge whose port is one end of a veth pair.
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "eth0", "master", "br0"]);
    for dev in ["eth0", "eth1", "br0"] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    ns.ip(&["addr", "add", "10.10.10.12/24", "dev", "br0"]);
    let d = Daemon::start_in_netns(
        &ns.name,
        Some("[ssh]\nconnect_timeout = 2\ncommand_timeout = 5\n[ipmi]\npower_sync_interval = 0\n"),
        seed,
    );
    let key = format!(
        "{}\n",
        d.ok(json!({"action": "DescribeSSHKey"}))["public_key"]
            .as_str()
            .unwrap()
    );
    let _host = Sshd::start_in(
        Some(&ns.name),
        Ipv4Addr::new(10, 10, 10, 12),
        22,
        &key,
        Quirk::None,
    );

    // §1.1 DescribeNodes.
    let r = d.call(
        json!({"action": "DescribeNodes", "request_type": "Node", "node_ids": ["n-8AQZMLrm"]}),
    );
    assert_eq!(r["action"], "DescribeNodesResponse");
    assert_eq!(r["ret_code"], 0, "{r}");
    assert_eq!(r["total_count"], 1);
    let expected: Value = serde_json::from_str(DESCRIBE_EXAMPLE_NODE).unwrap();
    same_shape(&expected, &r["node_set"][0], "node_set[0]");

    // §1.2 AddNodes over the example's range: exactly the one live host.
    let r = d.call(json!({"action": "AddNodes", "request_type": "Node", "ip_start": "10.10.10.10", "ip_end": "10.10.10.20"}));
    assert_eq!(r["action"], "AddNodesResponse");
    assert_eq!(r["ret_code"], 0, "{r}");
    assert_eq!(r["total_count"], 1, "{r}");
    let added = r["node_ids"][0].as_str().unwrap().to_string();
    let job = r["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.ok(json!({"action": "GetStatus", "request_type": "Node", "job_action": "CollectNodes", "job_id": job}));
        if s["status"] == "successful" {
            break;
        }
        let log = d.ok(json!({"action": "GetLog", "job_action": "CollectNodes", "job_id": job}));
        assert!(
            s["status"] != "failed" && Instant::now() < deadline,
            "{s} {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = d.ok(json!({"action": "DescribeNodes", "node_ids": [added]}))["node_set"][0].clone();
    // The namespace's own interfaces: the bridge with its veth port.
    assert_eq!(host["mgmt_network"]["name"], "br0", "{host}");
    let br0 = host["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "br0")
        .unwrap();
    assert_eq!(
        (br0["type"].as_str(), br0["raw_device"].as_str()),
        (Some("bridge"), Some("eth0")),
        "{br0}"
    );
    assert_eq!(br0["raw_device_info"]["name"], "eth0");
    assert_eq!(br0["network"], "10.10.10.0/24");

    // §1.7 ModifyNodeAttributes with the example's "vdb, vdc" string.
    let r = d.call(json!({"action": "ModifyNodeAttributes", "request_type": "Node", "node_id": "n-test1234", "data_disks": "vdb, vdc", "status": 0, "type": "ssd"}));
    assert_eq!(
        r,
        json!({"action": "ModifyNodeAttributesResponse", "ret_code": 0})
    );
    let n =
        d.ok(json!({"action": "DescribeNodes", "node_ids": ["n-test1234"]}))["node_set"][0].clone();
    for disk in n["data_disks"].as_array().unwrap() {
        assert_eq!(
            (disk["type"].as_str(), disk["status"].as_i64()),
            (Some("ssd"), Some(0)),
            "{disk}"
        );
    }
    let r = d.call(
        json!({"action": "ModifyNodeAttributes", "node_id": "n-test1234", "data_disks": ["vdz"]}),
    );
    assert_eq!(r["ret_code"], 1100);
    assert!(r["message"].as_str().unwrap().contains("vdz"), "{r}");
    let r = d.call(
        json!({"action": "ModifyNodeAttributes", "node_id": "n-test1234", "data_disks": "vda"}),
    );
    assert_eq!(r["ret_code"], 1100, "the OS disk is not a data disk: {r}");

    // §1.4 CollectNodes: a job id (the example host does not answer: the job fails later).
    let r = d.call(
        json!({"action": "CollectNodes", "request_type": "Node", "node_ids": ["n-test1234"]}),
    );
    assert_eq!(r["action"], "CollectNodesResponse");
    assert_eq!(r["ret_code"], 0, "{r}");
    assert!(rackboot::foundation::ids::is_id(
        r["job_id"].as_str().unwrap(),
        "j-"
    ));

    // Collected nodes must have an empty role (§1.4).
    let r = d.call(json!({"action": "CollectNodes", "node_ids": ["n-Role0001"]}));
    assert_eq!(r["ret_code"], 2300, "{r}");
    assert!(r["message"].as_str().unwrap().contains("controller"), "{r}");
    let r = d.call(json!({"action": "DescribeNodes", "role": "controller"}));
    assert_eq!(r["total_count"], 1);

    // §1.3 DeleteNodes.
    let r = d
        .call(json!({"action": "DeleteNodes", "request_type": "Node", "node_ids": ["n-test1234"]}));
    assert_eq!(
        r,
        json!({"action": "DeleteNodesResponse", "node_ids": ["n-test1234"], "total_count": 1, "ret_code": 0})
    );
}
