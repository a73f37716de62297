//! What a deploy ramdisk (or anything that reaches the HTTP port) posts:
//! callback bodies for every event, the inventory JSON as provisioning
//! reads it (and as it becomes a Node's inventory), and the command outputs
//! the SSH collection parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::foundation::callbacks::{form, parse_callback};
use rackboot::foundation::inventory;
use rackboot::foundation::store::BmNode;
use rackboot::service::provision::inventory::{as_node_inventory, process};

const EVENTS: [&str; 6] = ["progress", "done", "failed", "inventory", "booted", "other"];
const OUTPUTS: [&str; 6] = ["lscpu", "lsblk", "ip_addr", "meminfo", "os_release", "by_id"];

fuzz_target!(|data: &[u8]| {
    for event in EVENTS {
        let _ = parse_callback(event, data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = form(text);
        let outputs = OUTPUTS.iter().map(|k| (k.to_string(), text.to_string())).collect();
        let _ = inventory::parse(&outputs);
    }
    if let Ok(raw) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = process(&raw);
        let mut node = BmNode::blank();
        node.node_id = "n-Jr8KE6cf".into();
        node.os_disk_name = "sda".into();
        let _ = as_node_inventory(&node, &raw);
    }
});
