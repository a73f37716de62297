//! BMNode actions: DescribeBMNodes, RegisterBMNodes, DeleteBMNodes,
//! ModifyBMNodeAttributes. Field validation (syntax and cross-field rules)
//! and the seed's response shape live here.

use super::params::Params;
use super::params::BM_NODE_FIELDS;
use super::{fields, Call, Fields, HandlerFuture};
use crate::foundation::config::Config;
use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::hints::Hints;
use crate::foundation::ids::{format_time, is_id, new_id, now_secs, NODE_PREFIX};
use crate::foundation::redfish::{BmcUrl, Driver};
use crate::foundation::store::{
    BmNode, BmNodeFilter, BmNodeStatus, BootMode, NetworkSettings, StoreError,
};
use crate::foundation::validate;
use crate::service::app::App;
use serde::Serialize;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

/// What a stored IPMI password looks like in every response.
pub const PASSWORD_MASK: &str = "******";

/// Fields a registration must carry (`ipmi_network_address` or
/// `bmc_address`: see [`new_node`]).
const REQUIRED: &[&str] = &[
    "os_version",
    "cpu_arch",
    "hostname",
    "ipmi_network_address",
    "ipmi_username",
    "ipmi_password",
    "pxe_network_mac_addr",
];

/// Longest BMC user name and password over Redfish (IPMI's are 16 and 20).
const REDFISH_MAX_USER: usize = 64;
const REDFISH_MAX_PASSWORD: usize = 128;

/// Largest number of nodes one RegisterBMNodes call may carry.
pub const MAX_REGISTER: usize = 10_000;

fn status_param(p: &Params, name: &str) -> Result<Option<BmNodeStatus>, ApiError> {
    match p.str(name) {
        None => Ok(None),
        Some(s) => BmNodeStatus::parse(s).map(Some).ok_or_else(|| {
            ApiError::field(
                name,
                format!(
                    "`{s}` is not a BMNode status (allowed: {})",
                    BmNodeStatus::names()
                ),
            )
        }),
    }
}

/// Most ids one request may name (SQLite's bound-parameter limit is 32766).
pub const MAX_IDS: usize = 10_000;

/// Checks that every id in `ids` is shaped like a node id.
pub fn check_node_ids(field: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > MAX_IDS {
        return Err(ApiError::field(
            field,
            format!(
                "{} ids in one request; send at most {MAX_IDS} per request",
                ids.len()
            ),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if !is_id(id, NODE_PREFIX) {
            return Err(ApiError::field(
                &format!("{field}[{i}]"),
                format!("`{id}` is not a node id (n- followed by 8 letters or digits)"),
            ));
        }
    }
    Ok(())
}

pub fn describe(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let node_ids = p.list("node_ids");
        check_node_ids("node_ids", &node_ids)?;
        let (offset, limit) = p.paging()?;
        let filter = BmNodeFilter {
            node_ids,
            status: status_param(p, "status")?,
            pre_status: status_param(p, "pre_status")?,
            maintenance: p.int("maintenance").map(|m| m == 1),
            offset,
            limit,
        };
        let config = app.config();
        // Serialize on the store thread, row by row, into one buffer.
        let (mut json, total) = app
            .store
            .fold_bm_nodes(filter, b"[".to_vec(), move |out, node| {
                if out.len() > 1 {
                    out.push(b',');
                }
                if let Err(e) = serde_json::to_writer(&mut *out, &NodeView::new(node, &config)) {
                    tracing::error!(node_id = %node.node_id, "cannot serialize node: {e}");
                    out.extend_from_slice(b"null");
                }
            })
            .await?;
        json.push(b']');
        let mut out = Fields::new();
        out.insert_json("node_set", json);
        out.insert("total_count", total);
        Ok(out)
    })
}

/// One node in the shape of seed 002's DescribeBMNodes example (plus
/// `ipmi_port` and `os_version_known`); the IPMI password is masked.
/// Serialized straight from the record (keys in the seed's order).
#[derive(Serialize)]
pub struct NodeView<'a> {
    // Redfish (issue 14): the BMC's URL (`ipmi://…` for IPMI nodes), its
    // driver, whether its certificate is verified, its inventory.
    bmc_address: String,
    bmc_driver: &'static str,
    bmc_inventory: &'a serde_json::value::RawValue,
    bmc_inventory_time: String,
    bmc_verify_tls: u8,
    bmc_reachable: u8,
    boot_mode: &'static str,
    create_time: String,
    description: &'a str,
    general: GeneralView<'a>,
    ipmi: IpmiView<'a>,
    maintenance: u8,
    maintenance_reason: &'a str,
    mgmt_network: NetworkView<'a>,
    node_id: &'a str,
    os_disk: OsDiskView<'a>,
    power_state: &'static str,
    power_state_time: String,
    pre_status: &'static str,
    public_network: NetworkView<'a>,
    pxe: PxeView<'a>,
    /// 1/0 as the deploy ramdisk last saw it; null until it reported.
    secure_boot: Option<u8>,
    status: &'static str,
    update_time: String,
}

#[derive(Serialize)]
struct GeneralView<'a> {
    brand: &'a str,
    cpu_arch: &'a str,
    hostname: &'a str,
    os_version: &'a str,
    os_version_known: u8,
    serial_number: &'a str,
}

#[derive(Serialize)]
struct IpmiView<'a> {
    ipmi_bmc_key: &'static str,
    ipmi_cipher_suite: u8,
    ipmi_network_address: &'a str,
    ipmi_password: &'static str,
    ipmi_port: u16,
    ipmi_username: &'a str,
}

#[derive(Serialize)]
struct OsDiskView<'a> {
    os_disk_name: &'a str,
    /// Every hint, `name` (= os_disk_name) included.
    root_device: Hints,
}

#[derive(Serialize)]
struct PxeView<'a> {
    pxe_network_address: &'a str,
    pxe_network_interface: &'a str,
    pxe_network_mac_addr: &'a str,
}

/// A network group; its keys carry the network's name (`mgmt`/`public`).
struct NetworkView<'a> {
    keys: &'static [&'static str; 6],
    net: &'a NetworkSettings,
}

const MGMT_KEYS: [&str; 6] = [
    "is_mgmt_config_bond",
    "is_mgmt_config_vlan",
    "mgmt_network_address",
    "mgmt_network_gateway",
    "mgmt_network_netmask",
    "mgmt_network_vlan_id",
];
const PUBLIC_KEYS: [&str; 6] = [
    "is_public_config_bond",
    "is_public_config_vlan",
    "public_network_address",
    "public_network_gateway",
    "public_network_netmask",
    "public_network_vlan_id",
];

impl Serialize for NetworkView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let n = self.net;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry(self.keys[0], &u8::from(n.bond))?;
        m.serialize_entry(self.keys[1], &u8::from(n.vlan))?;
        m.serialize_entry(self.keys[2], &n.address)?;
        m.serialize_entry(self.keys[3], &n.gateway)?;
        m.serialize_entry(self.keys[4], &n.netmask)?;
        m.serialize_entry(self.keys[5], &n.vlan_id)?;
        m.end()
    }
}

impl<'a> NodeView<'a> {
    pub fn new(n: &'a BmNode, config: &Config) -> NodeView<'a> {
        let url = n.bmc_url();
        let empty: &'static serde_json::value::RawValue =
            serde_json::from_str("{}").expect("a literal object");
        NodeView {
            bmc_address: url.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            bmc_driver: url.as_ref().map(|u| u.driver.as_str()).unwrap_or(""),
            bmc_inventory: serde_json::from_str(&n.bmc_inventory).unwrap_or(empty),
            bmc_inventory_time: n.bmc_inventory_time.map(format_time).unwrap_or_default(),
            bmc_verify_tls: u8::from(n.bmc_verify_tls),
            bmc_reachable: u8::from(n.bmc_reachable),
            boot_mode: n.boot_mode.as_str(),
            create_time: format_time(n.create_time),
            description: &n.description,
            general: GeneralView {
                brand: &n.brand,
                cpu_arch: &n.cpu_arch,
                hostname: &n.hostname,
                os_version: &n.os_version,
                os_version_known: u8::from(config.knows_os_version(&n.os_version)),
                serial_number: &n.serial_number,
            },
            ipmi: IpmiView {
                ipmi_bmc_key: if n.ipmi_bmc_key.is_empty() {
                    ""
                } else {
                    PASSWORD_MASK
                },
                ipmi_cipher_suite: n.ipmi_cipher_suite,
                ipmi_network_address: &n.ipmi_address,
                ipmi_password: PASSWORD_MASK,
                ipmi_port: n.ipmi_port,
                ipmi_username: &n.ipmi_username,
            },
            maintenance: u8::from(n.maintenance),
            maintenance_reason: &n.maintenance_reason,
            mgmt_network: NetworkView {
                keys: &MGMT_KEYS,
                net: &n.mgmt,
            },
            node_id: &n.node_id,
            os_disk: OsDiskView {
                os_disk_name: &n.os_disk_name,
                root_device: n.hints(),
            },
            power_state: n.power_state.as_str(),
            power_state_time: n.power_state_time.map(format_time).unwrap_or_default(),
            pre_status: n.pre_status.map(|s| s.as_str()).unwrap_or(""),
            public_network: NetworkView {
                keys: &PUBLIC_KEYS,
                net: &n.public,
            },
            pxe: PxeView {
                pxe_network_address: &n.pxe_address,
                pxe_network_interface: &n.pxe_interface,
                pxe_network_mac_addr: &n.pxe_mac,
            },
            secure_boot: n.secure_boot.map(u8::from),
            status: n.status.as_str(),
            update_time: format_time(n.update_time),
        }
    }
}

fn empty_node() -> BmNode {
    BmNode::blank()
}

/// Sets every field present in `p` on `node`, checking each value's syntax.
/// `""` clears an optional field; required fields cannot be cleared.
fn apply_fields(node: &mut BmNode, p: &Params) -> Result<(), ApiError> {
    for key in p.keys().map(str::to_string).collect::<Vec<_>>() {
        let key = key.as_str();
        let s = p.str(key).unwrap_or("").to_string();
        let required_cleared = s.is_empty() && REQUIRED.contains(&key) && p.has(key);
        if required_cleared {
            return Err(ApiError::field(key, "must not be empty"));
        }
        let text = |max: usize| validate::text(&s, max).map_err(|why| ApiError::field(key, why));
        let addr = || -> Result<String, ApiError> {
            if s.is_empty() {
                return Ok(String::new());
            }
            validate::ipv4(&s)
                .map(|a| a.to_string())
                .map_err(|why| ApiError::field(key, why))
        };
        let mask = || -> Result<String, ApiError> {
            if s.is_empty() {
                return Ok(String::new());
            }
            validate::netmask(&s)
                .map(|a| a.to_string())
                .map_err(|why| ApiError::field(key, why))
        };
        let flag = || -> Result<bool, ApiError> { Ok(p.int(key) == Some(1)) };
        let vlan = || -> Result<u16, ApiError> {
            match p.int(key).unwrap_or(0) {
                0 => Ok(0),
                v => validate::vlan_id(v).map_err(|why| ApiError::field(key, why)),
            }
        };
        match key {
            "os_version" => {
                text(128)?;
                node.os_version = s;
            }
            "cpu_arch" => {
                validate::cpu_arch(&s).map_err(|why| ApiError::field(key, why))?;
                node.cpu_arch = s;
            }
            "hostname" => {
                validate::hostname(&s).map_err(|why| ApiError::field(key, why))?;
                node.hostname = s.to_ascii_lowercase();
            }
            "ipmi_network_address" => {
                node.ipmi_address = addr()?;
                // ipmi_network_address means ipmi://: no Redfish address stays.
                if !s.is_empty() && !p.has("bmc_address") {
                    node.bmc_address.clear();
                }
            }
            "ipmi_port" => {
                let port = p.int(key).unwrap_or(623);
                if !(1..=65535).contains(&port) {
                    return Err(ApiError::field(
                        key,
                        format!("{port} is not a UDP port (1 to 65535; IPMI's is 623)"),
                    ));
                }
                node.ipmi_port = port as u16;
            }
            // The IPMI limits (16 and 20 bytes) are checked with the driver
            // in check_node.
            "ipmi_username" => {
                text(REDFISH_MAX_USER)?;
                node.ipmi_username = s;
            }
            "ipmi_password" => {
                text(REDFISH_MAX_PASSWORD)?;
                node.ipmi_password = s;
            }
            "bmc_address" => {
                if s.is_empty() {
                    node.bmc_address.clear();
                } else {
                    let url = BmcUrl::parse(&s).map_err(|why| ApiError::field(key, why))?;
                    if url.driver == Driver::Ipmi {
                        let ip = validate::ipv4(&url.host).map_err(|why| {
                            ApiError::field(key, format!("ipmi:// needs an IPv4 address: {why}"))
                        })?;
                        node.ipmi_address = ip.to_string();
                        node.ipmi_port = url.port;
                        node.bmc_address.clear();
                    } else {
                        node.bmc_address = url.to_string();
                        node.ipmi_address.clear();
                        node.ipmi_port = 623;
                    }
                }
            }
            "bmc_verify_tls" => node.bmc_verify_tls = p.int(key) != Some(0),
            "ipmi_cipher_suite" => {
                let suite = p.int(key).unwrap_or(0);
                if ![0, 3, 17].contains(&suite) {
                    return Err(ApiError::field(
                        key,
                        format!(
                            "{suite} is not a supported cipher suite (0 = ask the BMC, 3 or 17)"
                        ),
                    ));
                }
                node.ipmi_cipher_suite = suite as u8;
            }
            "ipmi_bmc_key" => {
                let ok = s.len() <= 40
                    && s.len().is_multiple_of(2)
                    && s.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(ApiError::field(
                        key,
                        "is not a BMC key: up to 20 bytes as hex (e.g. 0102…), or \"\" for none",
                    ));
                }
                node.ipmi_bmc_key = s.to_ascii_lowercase();
            }
            "pxe_network_mac_addr" => {
                node.pxe_mac = validate::mac(&s).map_err(|why| ApiError::field(key, why))?;
            }
            "pxe_network_address" => node.pxe_address = addr()?,
            "pxe_network_interface" => {
                if s.len() > 15 || s.contains(['/', ' ']) || s.chars().any(char::is_control) {
                    return Err(ApiError::field(
                        key,
                        format!("`{s}` is not an interface name (at most 15 characters, no '/' or spaces)"),
                    ));
                }
                node.pxe_interface = s;
            }
            "os_disk_name" => {
                text(255)?;
                if s.contains(char::is_whitespace) {
                    return Err(ApiError::field(
                        key,
                        format!("`{s}` is not a disk name (e.g. sda or /dev/disk/by-id/…)"),
                    ));
                }
                node.os_disk_name = s.strip_prefix("/dev/").unwrap_or(&s).to_string();
            }
            "mgmt_network_address" => node.mgmt.address = addr()?,
            "mgmt_network_netmask" => node.mgmt.netmask = mask()?,
            "mgmt_network_gateway" => node.mgmt.gateway = addr()?,
            "is_mgmt_config_bond" => node.mgmt.bond = flag()?,
            "is_mgmt_config_vlan" => node.mgmt.vlan = flag()?,
            "mgmt_network_vlan_id" => node.mgmt.vlan_id = vlan()?,
            "public_network_address" => node.public.address = addr()?,
            "public_network_netmask" => node.public.netmask = mask()?,
            "public_network_gateway" => node.public.gateway = addr()?,
            "is_public_config_bond" => node.public.bond = flag()?,
            "is_public_config_vlan" => node.public.vlan = flag()?,
            "public_network_vlan_id" => node.public.vlan_id = vlan()?,
            "boot_mode" => {
                node.boot_mode = BootMode::parse(&s).ok_or_else(|| {
                    ApiError::field(
                        key,
                        format!("`{s}` is not a boot mode (allowed: uefi, bios)"),
                    )
                })?;
            }
            "root_device" => {
                let empty = serde_json::Map::new();
                let mut hints =
                    Hints::from_json(p.object(key).unwrap_or(&empty)).map_err(ApiError::bad)?;
                let name = std::mem::take(&mut hints.name);
                if !name.is_empty() {
                    if let Some(d) = p
                        .str("os_disk_name")
                        .filter(|d| d.trim_start_matches("/dev/") != name)
                    {
                        return Err(ApiError::field(
                            "root_device.name",
                            format!("`{name}` differs from os_disk_name `{d}` (they are the same hint): send one of them"),
                        ));
                    }
                    node.os_disk_name = name;
                }
                node.root_device = hints;
            }
            "maintenance" => {
                node.maintenance = flag()?;
                if !node.maintenance && !p.has("maintenance_reason") {
                    node.maintenance_reason.clear();
                }
            }
            "maintenance_reason" => {
                text(255)?;
                node.maintenance_reason = s;
            }
            "serial_number" => {
                text(128)?;
                node.serial_number = s;
            }
            "brand" => {
                text(64)?;
                node.brand = s;
            }
            "description" => {
                text(1024)?;
                node.description = s;
            }
            _ => {} // node_id, bm_nodes: handled by the caller
        }
    }
    // Turning the VLAN flag off without naming an id drops the old id.
    for (prefix, net) in [("mgmt", &mut node.mgmt), ("public", &mut node.public)] {
        if p.int(&format!("is_{prefix}_config_vlan")) == Some(0)
            && !p.has(&format!("{prefix}_network_vlan_id"))
        {
            net.vlan_id = 0;
        }
    }
    Ok(())
}

/// Cross-field rules of one network: an address needs a netmask, a gateway
/// lies inside the network, a VLAN flag of 1 needs an id and 0 allows none.
fn check_network(prefix: &str, n: &NetworkSettings) -> Result<(), ApiError> {
    let f = |suffix: &str| format!("{prefix}_network_{suffix}");
    match (n.address.is_empty(), n.netmask.is_empty()) {
        (false, true) => {
            return Err(ApiError::field(
                &f("netmask"),
                format!("is required with {} {}", f("address"), n.address),
            ))
        }
        (true, false) => {
            return Err(ApiError::field(
                &f("address"),
                format!("is required with {} {}", f("netmask"), n.netmask),
            ))
        }
        _ => {}
    }
    if !n.gateway.is_empty() {
        if n.address.is_empty() {
            return Err(ApiError::field(
                &f("gateway"),
                format!("needs {} and {} to be set", f("address"), f("netmask")),
            ));
        }
        let parse = |s: &str| validate::ipv4(s).map_err(|why| ApiError::field(&f("gateway"), why));
        validate::gateway_in_network(parse(&n.address)?, parse(&n.netmask)?, parse(&n.gateway)?)
            .map_err(|why| ApiError::field(&f("gateway"), why))?;
    }
    if n.vlan && n.vlan_id == 0 {
        return Err(ApiError::field(
            &f("vlan_id"),
            format!("is required (1 to 4094) when is_{prefix}_config_vlan is 1"),
        ));
    }
    if !n.vlan && n.vlan_id != 0 {
        return Err(ApiError::field(
            &f("vlan_id"),
            format!(
                "is {} but is_{prefix}_config_vlan is 0: set the flag to 1 or the id to 0",
                n.vlan_id
            ),
        ));
    }
    Ok(())
}

fn check_node(n: &BmNode) -> Result<(), ApiError> {
    check_network("mgmt", &n.mgmt)?;
    check_network("public", &n.public)?;
    if n.bmc_address.is_empty() {
        if n.ipmi_username.len() > 16 {
            return Err(ApiError::field(
                "ipmi_username",
                "is longer than 16 bytes, the IPMI limit for user names",
            ));
        }
        if n.ipmi_password.len() > 20 {
            return Err(ApiError::field(
                "ipmi_password",
                "is longer than 20 bytes, the IPMI 2.0 limit for passwords",
            ));
        }
    }
    Ok(())
}

/// `bmc_address` and `ipmi_network_address` (+ `ipmi_port`) in one request
/// must name the same IPMI BMC.
fn check_bmc_pair(p: &Params) -> Result<(), ApiError> {
    let (Some(url), Some(ip)) = (p.str("bmc_address"), p.str("ipmi_network_address")) else {
        return Ok(());
    };
    let port = p.int("ipmi_port").unwrap_or(623);
    let agree = BmcUrl::parse(url)
        .ok()
        .is_some_and(|u| u.driver == Driver::Ipmi && u.host == ip && i64::from(u.port) == port);
    if agree {
        return Ok(());
    }
    Err(ApiError::field(
        "bmc_address",
        format!(
            "{url} and ipmi_network_address {ip}:{port} name different BMCs: send one of them (ipmi_network_address means ipmi://{ip}:{port})"
        ),
    ))
}

/// Builds and checks one node to register from its fields.
fn new_node(p: &Params, now: i64) -> Result<BmNode, ApiError> {
    check_bmc_pair(p)?;
    for field in REQUIRED {
        let given = p.str(field).is_some()
            || (*field == "ipmi_network_address" && p.str("bmc_address").is_some());
        if !given {
            let help = BM_NODE_FIELDS
                .iter()
                .find(|x| x.name == *field)
                .map(|x| x.help)
                .unwrap_or("");
            return Err(ApiError::new(
                RetCode::MissingParameter,
                format!("missing required parameter `{field}`: {help}"),
            ));
        }
    }
    let mut node = empty_node();
    apply_fields(&mut node, p)?;
    check_node(&node)?;
    node.node_id = new_id(NODE_PREFIX);
    node.create_time = now;
    node.update_time = now;
    Ok(node)
}

pub fn register(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let now = now_secs();
        let mut nodes = Vec::new();
        match p.objects("bm_nodes") {
            Some(list) => {
                if let Some(flat) = p.keys().find(|k| *k != "bm_nodes") {
                    return Err(ApiError::field(
                        flat,
                        "send either a bm_nodes list or one node's fields, not both",
                    ));
                }
                if list.is_empty() {
                    return Err(ApiError::missing(
                        "bm_nodes",
                        " (a list of at least one node)",
                    ));
                }
                if list.len() > MAX_REGISTER {
                    return Err(ApiError::field(
                        "bm_nodes",
                        format!(
                            "{} nodes in one call; send at most {MAX_REGISTER} per call",
                            list.len()
                        ),
                    ));
                }
                for (i, entry) in list.into_iter().enumerate() {
                    let one = Params::check("RegisterBMNodes", BM_NODE_FIELDS, entry)
                        .and_then(|q| new_node(&q, now))
                        .map_err(|e| {
                            ApiError::new(e.code, format!("bm_nodes[{i}]: {}", e.message))
                        })?;
                    nodes.push(one);
                }
            }
            None => nodes.push(new_node(p, now)?),
        }
        // Duplicates inside the request, named by position.
        let mut seen: [HashSet<String>; 3] = Default::default();
        for (i, n) in nodes.iter().enumerate() {
            let keys = [
                ("pxe_network_mac_addr", n.pxe_mac.clone()),
                ("hostname", n.hostname.clone()),
                (
                    "BMC address",
                    n.bmc_url()
                        .map(|u| format!("{}:{}", u.driver.as_str(), u.endpoint()))
                        .unwrap_or_default(),
                ),
            ];
            for (set, (field, value)) in seen.iter_mut().zip(keys) {
                if !set.insert(value.clone()) {
                    return Err(ApiError::new(
                        RetCode::Conflict,
                        format!("bm_nodes[{i}]: {field} {value} appears twice in this request; each node needs its own"),
                    ));
                }
            }
        }
        let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
        let count = ids.len();
        app.store.insert_bm_nodes(nodes.clone()).await?;
        // Redfish nodes: their out-of-band inventory, in the background.
        app.power.inventory_in_background(nodes);
        tracing::info!(request_id = %call.caller.request_id, count, "registered BMNodes");
        Ok(fields([
            ("node_ids", json!(ids)),
            ("total_count", count.into()),
        ]))
    })
}

pub fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let unique = call.params.unique_list("node_ids");
        check_node_ids("node_ids", &unique)?;
        let force = call.params.int("force") == Some(1);
        let deleted = app.store.delete_bm_nodes(unique, force).await?;
        let count = deleted.len();
        Ok(fields([
            ("node_ids", json!(deleted)),
            ("total_count", count.into()),
        ]))
    })
}

/// Fields that identify how to reach the machine: not changeable while work
/// is under way on it.
const IDENTITY: &[&str] = &[
    "bmc_address",
    "bmc_verify_tls",
    "ipmi_network_address",
    "ipmi_cipher_suite",
    "ipmi_bmc_key",
    "ipmi_port",
    "ipmi_username",
    "ipmi_password",
    "pxe_network_mac_addr",
    "os_version",
    "cpu_arch",
    "os_disk_name",
    "root_device",
    "boot_mode",
];

pub fn modify(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = call.params;
        let node_id = p.str("node_id").unwrap_or_default().to_string();
        check_node_ids("node_id", std::slice::from_ref(&node_id)).map_err(|_| {
            ApiError::field(
                "node_id",
                format!("`{node_id}` is not a node id (n- followed by 8 letters or digits)"),
            )
        })?;
        if p.keys().all(|k| k == "node_id") {
            return Err(ApiError::missing(
                "a field to change",
                &format!(
                    " (any of: {})",
                    BM_NODE_FIELDS
                        .iter()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        // Check syntax before touching the store, so a bad value names itself
        // even for an unknown node.
        check_bmc_pair(&p)?;
        apply_fields(&mut empty_node(), &p)?;
        let changed: Vec<String> = p
            .keys()
            .filter(|k| *k != "node_id")
            .map(str::to_string)
            .collect();
        app.store
            .modify_bm_node(&node_id, move |node| {
                if node.status.is_busy() {
                    if let Some(f) = changed.iter().find(|k| IDENTITY.contains(&k.as_str())) {
                        return Err(StoreError::WrongState(format!(
                            "node {} is {}: {f} cannot change until its work ends",
                            node.node_id,
                            node.status.as_str()
                        )));
                    }
                }
                apply_fields(node, &p)
                    .and_then(|_| check_node(node))
                    .map_err(|e| StoreError::Invalid(e.message))
            })
            .await?;
        Ok(Fields::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn params(v: Value) -> Params {
        Params::check(
            "RegisterBMNodes",
            BM_NODE_FIELDS,
            v.as_object().unwrap().clone(),
        )
        .unwrap()
    }

    fn seed_node() -> Value {
        json!({
            "brand":"dell","cpu_arch":"x86_64","hostname":"test01n01",
            "ipmi_network_address":"172.30.10.47","ipmi_password":"ADMIN","ipmi_username":"ADMIN",
            "is_mgmt_config_bond":0,"is_mgmt_config_vlan":0,"is_public_config_bond":0,"is_public_config_vlan":0,
            "mgmt_network_address":"172.31.11.47","mgmt_network_gateway":"172.31.11.254",
            "mgmt_network_netmask":"255.255.255.0","mgmt_network_vlan_id":0,"os_disk_name":"sda",
            "os_version":"14.04.5","public_network_address":"","public_network_gateway":"",
            "public_network_netmask":"","public_network_vlan_id":0,
            "pxe_network_mac_addr":"0C-C4-7A-88-63-1B","serial_number":"123434433"
        })
    }

    #[test]
    fn the_seed_node_is_accepted_and_normalised() {
        let n = new_node(&params(seed_node()), 5).unwrap();
        assert_eq!(n.pxe_mac, "0c:c4:7a:88:63:1b");
        assert_eq!(n.ipmi_port, 623);
        assert_eq!(n.mgmt.gateway, "172.31.11.254");
        assert!(n.public.address.is_empty());
        let shown = serde_json::to_value(NodeView::new(&n, &Config::default())).unwrap();
        assert_eq!(shown["ipmi"]["ipmi_password"], PASSWORD_MASK);
        assert_eq!(shown["general"]["os_version_known"], 0);
    }

    #[test]
    fn cross_field_rules_name_the_field() {
        let cases = [
            (
                json!({"mgmt_network_gateway": "172.31.12.1"}),
                "mgmt_network_gateway",
            ),
            (json!({"is_mgmt_config_vlan": 1}), "mgmt_network_vlan_id"),
            (json!({"mgmt_network_vlan_id": 5}), "mgmt_network_vlan_id"),
            (
                json!({"is_public_config_vlan": 1, "public_network_vlan_id": 4095}),
                "public_network_vlan_id",
            ),
            (
                json!({"public_network_address": "10.0.0.5"}),
                "public_network_netmask",
            ),
            (json!({"ipmi_password": "x".repeat(21)}), "ipmi_password"),
            (json!({"hostname": "bad_name"}), "hostname"),
            (json!({"cpu_arch": "i386"}), "cpu_arch"),
            (json!({"ipmi_port": 70000}), "ipmi_port"),
            (json!({"hostname": ""}), "hostname"),
        ];
        for (patch, field) in cases {
            let mut v = seed_node();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = new_node(&params(v), 0).unwrap_err();
            assert!(e.message.contains(field), "{patch}: {}", e.message);
        }
    }

    #[test]
    fn a_vlan_with_its_flag_is_accepted() {
        let mut v = seed_node();
        v["is_mgmt_config_vlan"] = json!(1);
        v["mgmt_network_vlan_id"] = json!(100);
        assert_eq!(new_node(&params(v), 0).unwrap().mgmt.vlan_id, 100);
    }
}
