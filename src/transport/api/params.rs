//! Request parameters: the declared parameters of each action (name, type,
//! whether required, help text), the type check every request passes before
//! its handler runs, and typed getters for handlers. The same declarations
//! generate the CLI's flags and the README's reference.

use crate::foundation::errors::{ApiError, RetCode};
use serde_json::{Map, Value};

/// Parameters every action accepts (seed 002's common parameters).
pub const COMMON: &[&str] = &["action", "request_type", "USER_ID", "PASSWORD"];

/// The `request_type` values of seed 002 (and ours); any of them is accepted
/// with any action, since the seed's own examples mix them.
pub const REQUEST_TYPES: &[&str] = &["Node", "BMNode", "Message", "User"];

/// A parameter's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A string; `""` means "not set".
    Str,
    /// An integer.
    Int,
    /// 0 or 1 (`true`/`false` accepted).
    Flag,
    /// A list of strings; a comma-separated string is accepted too.
    List,
    /// A list of objects.
    Objects,
    /// A JSON object (the CLI takes it as JSON text).
    Object,
}

impl Ty {
    pub fn describe(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Flag => "integer 0/1",
            Ty::List => "list of strings",
            Ty::Objects => "list of objects",
            Ty::Object => "object",
        }
    }
}

/// One declared parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub help: &'static str,
}

/// Shorthand for declaring parameters.
pub const fn p(name: &'static str, ty: Ty, required: bool, help: &'static str) -> Param {
    Param {
        name,
        ty,
        required,
        help,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks `value` against `ty`, normalising accepted spellings
/// (bool → 0/1, "a, b" → ["a", "b"]). `field` names it in errors.
pub fn check_value(field: &str, ty: Ty, value: Value) -> Result<Value, ApiError> {
    let wrong = |v: &Value| {
        ApiError::field(
            field,
            format!("expected {}, got {}", ty.describe(), type_name(v)),
        )
    };
    match (ty, value) {
        (Ty::Str, v @ Value::String(_)) => Ok(v),
        (Ty::Int, Value::Number(n)) if n.as_i64().is_some() => Ok(Value::Number(n)),
        (Ty::Flag, Value::Bool(b)) => Ok(Value::from(i64::from(b))),
        (Ty::Flag, Value::Number(n)) => match n.as_i64() {
            Some(0) | Some(1) => Ok(Value::Number(n)),
            _ => Err(ApiError::field(
                field,
                format!("{n} is not a flag (expected 0 or 1)"),
            )),
        },
        (Ty::List, Value::String(s)) => Ok(Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.to_string()))
                .collect(),
        )),
        (Ty::List, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    return Err(ApiError::field(
                        &format!("{field}[{i}]"),
                        format!("expected a string, got {}", type_name(item)),
                    ));
                }
            }
            Ok(Value::Array(items))
        }
        (Ty::Objects, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(ApiError::field(
                        &format!("{field}[{i}]"),
                        format!("expected an object, got {}", type_name(item)),
                    ));
                }
            }
            Ok(Value::Array(items))
        }
        (Ty::Object, v @ Value::Object(_)) => Ok(v),
        (_, v) => Err(wrong(&v)),
    }
}

/// A request's parameters after the type check: every key is declared and of
/// its declared type; `null` values were dropped.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: Map<String, Value>,
}

impl Params {
    /// Type-checks `raw` (the request object minus the common parameters)
    /// against `declared`: unknown keys, wrong types and missing required
    /// parameters are refused with the parameter's name.
    pub fn check(
        action: &str,
        declared: &[Param],
        raw: Map<String, Value>,
    ) -> Result<Params, ApiError> {
        let mut values = Map::new();
        for (key, value) in raw {
            if COMMON.contains(&key.as_str()) || value.is_null() {
                continue;
            }
            let Some(param) = declared.iter().find(|p| p.name == key) else {
                let allowed: Vec<&str> = declared.iter().map(|p| p.name).collect();
                return Err(ApiError::bad(format!(
                    "unknown parameter `{key}` for {action}; allowed: {}",
                    if allowed.is_empty() {
                        "none besides the common ones".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )));
            };
            let value = check_value(&key, param.ty, value)?;
            values.insert(key, value);
        }
        for param in declared.iter().filter(|p| p.required) {
            let present = match values.get(param.name) {
                None => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            };
            if !present {
                return Err(ApiError::new(
                    RetCode::MissingParameter,
                    format!(
                        "missing required parameter `{}` ({}) for {action}: {}",
                        param.name,
                        param.ty.describe(),
                        param.help
                    ),
                ));
            }
        }
        Ok(Params { values })
    }

    /// Wraps an already-checked object (one entry of a `bm_nodes` list).
    pub fn from_checked(values: Map<String, Value>) -> Params {
        Params { values }
    }

    /// A string parameter; `None` when absent or `""` (not set).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether the parameter was sent (even as `""`).
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A time parameter (`YYYY-MM-DD HH:MM:SS`, UTC) as Unix milliseconds;
    /// 0 when absent.
    pub fn since_ms(&self, name: &str) -> Result<i64, ApiError> {
        match self.str(name) {
            None => Ok(0),
            Some(t) => crate::foundation::ids::parse_time(t)
                .map(|secs| secs * 1000)
                .ok_or_else(|| {
                    ApiError::field(
                        name,
                        format!("`{t}` is not a time (YYYY-MM-DD HH:MM:SS, UTC)"),
                    )
                }),
        }
    }

    /// A count parameter within 1..=`max`; `default` when absent.
    pub fn limit(&self, name: &str, default: u64, max: i64) -> Result<u64, ApiError> {
        match self.int(name) {
            None => Ok(default),
            Some(l) if (1..=max).contains(&l) => Ok(l as u64),
            Some(l) => Err(ApiError::field(
                name,
                format!("{l} is out of range (1 to {max})"),
            )),
        }
    }

    /// An integer or flag parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.values.get(name).and_then(Value::as_i64)
    }

    /// A list-of-strings parameter (empty when absent).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A list-of-strings parameter without repeats, in first-seen order.
    pub fn unique_list(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for item in self.list(name) {
            if !out.contains(&item) {
                out.push(item);
            }
        }
        out
    }

    /// The addresses from `ip_start` to `ip_end`, at most `max` of them;
    /// `what` names the action in the error ("a scan", "AddNodes").
    pub fn ipv4_range(&self, max: u32, what: &str) -> Result<Vec<std::net::Ipv4Addr>, ApiError> {
        let field = |name: &str| -> Result<std::net::Ipv4Addr, ApiError> {
            let value = self.str(name).ok_or_else(|| {
                ApiError::missing(name, " (the first and last address of the range)")
            })?;
            crate::foundation::validate::ipv4(value).map_err(|why| ApiError::field(name, why))
        };
        let (start, end) = (field("ip_start")?, field("ip_end")?);
        let (a, b) = (u32::from(start), u32::from(end));
        if b < a {
            return Err(ApiError::field(
                "ip_end",
                format!("{end} comes before ip_start {start}"),
            ));
        }
        if b - a >= max {
            return Err(ApiError::field(
                "ip_end",
                format!(
                    "{start}–{end} is {} addresses; {what} covers at most {max}: split the range",
                    b - a + 1
                ),
            ));
        }
        Ok((a..=b).map(std::net::Ipv4Addr::from).collect())
    }

    /// An object parameter.
    pub fn object(&self, name: &str) -> Option<&Map<String, Value>> {
        self.values.get(name).and_then(Value::as_object)
    }

    /// A list-of-objects parameter.
    pub fn objects(&self, name: &str) -> Option<Vec<Map<String, Value>>> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).cloned().collect())
    }

    /// Offset and limit for paging, checked.
    pub fn paging(&self) -> Result<(u64, Option<u64>), ApiError> {
        let offset = self.int("offset").unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::field(
                "offset",
                format!("{offset} is negative (expected 0 or more)"),
            ));
        }
        let limit = match self.int("limit") {
            None => None,
            Some(l) if (1..=1_000_000).contains(&l) => Some(l as u64),
            Some(l) => {
                return Err(ApiError::field(
                    "limit",
                    format!("{l} is out of range (1 to 1000000; leave it out for all)"),
                ))
            }
        };
        Ok((offset as u64, limit))
    }

    /// The keys that were sent.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// Fields of one BMNode, as RegisterBMNodes and ModifyBMNodeAttributes take them.
pub const BM_NODE_FIELDS: &[Param] = &[
    p("os_version", Ty::Str, false, "intended OS version, a name of the image catalogue ([[images]] os_version); required to register"),
    p("cpu_arch", Ty::Str, false, "x86_64 or aarch64; required to register"),
    p("hostname", Ty::Str, false, "RFC 1123 host name, unique; required to register"),
    p("ipmi_network_address", Ty::Str, false, "BMC IPv4 address (IPMI); required to register unless bmc_address is given"),
    p("ipmi_port", Ty::Int, false, "BMC UDP port (default 623); address+port is unique"),
    p("ipmi_username", Ty::Str, false, "BMC user, for every driver (IPMI: at most 16 bytes); required to register"),
    p("ipmi_password", Ty::Str, false, "BMC password, for every driver (IPMI: at most 20 bytes); never returned; required to register"),
    p("ipmi_cipher_suite", Ty::Int, false, "RMCP+ cipher suite: 0 = ask the BMC (17, then 3; default), 3 or 17"),
    p("ipmi_bmc_key", Ty::Str, false, "the BMC key Kg as hex (up to 20 bytes) when the BMC has one; never returned"),
    p("pxe_network_mac_addr", Ty::Str, false, "MAC of the NIC that network-boots, unique; required to register"),
    p("pxe_network_address", Ty::Str, false, "fixed IPv4 address for the PXE NIC (optional)"),
    p("pxe_network_interface", Ty::Str, false, "name of the PXE NIC in the installed OS (optional)"),
    p("os_disk_name", Ty::Str, false, "disk to install on, e.g. sda (the `name` root-device hint)"),
    p("root_device", Ty::Object, false, "root-device hints, any of name, serial, wwn, model, vendor, size_gb, by_path, rotational: exactly one disk must match them all; none: the smallest disk of at least 4 GiB ({} clears)"),
    p("boot_mode", Ty::Str, false, "uefi (default) or bios: the firmware mode the node boots in (EFI bit of the boot flags)"),
    p("maintenance", Ty::Flag, false, "1 = in maintenance: power sync leaves it alone; provision, unprovision and introspection are refused (power actions work)"),
    p("maintenance_reason", Ty::Str, false, "why it is in maintenance (free text)"),
    p("mgmt_network_address", Ty::Str, false, "management network IPv4 address"),
    p("mgmt_network_netmask", Ty::Str, false, "management network netmask"),
    p("mgmt_network_gateway", Ty::Str, false, "management network gateway (inside the network)"),
    p("is_mgmt_config_bond", Ty::Flag, false, "management network on a bond (0/1)"),
    p("is_mgmt_config_vlan", Ty::Flag, false, "management network on a VLAN (0/1)"),
    p("mgmt_network_vlan_id", Ty::Int, false, "management VLAN id, 1 to 4094, required when is_mgmt_config_vlan is 1"),
    p("public_network_address", Ty::Str, false, "public network IPv4 address"),
    p("public_network_netmask", Ty::Str, false, "public network netmask"),
    p("public_network_gateway", Ty::Str, false, "public network gateway (inside the network)"),
    p("is_public_config_bond", Ty::Flag, false, "public network on a bond (0/1)"),
    p("is_public_config_vlan", Ty::Flag, false, "public network on a VLAN (0/1)"),
    p("public_network_vlan_id", Ty::Int, false, "public VLAN id, 1 to 4094, required when is_public_config_vlan is 1"),
    p("serial_number", Ty::Str, false, "machine serial number"),
    p("brand", Ty::Str, false, "machine brand"),
    p("description", Ty::Str, false, "free text"),
    // Redfish (issue 14).
    p("bmc_address", Ty::Str, false, "BMC URL instead of ipmi_network_address: ipmi://host[:port], redfish://host[:port][/redfish/v1/Systems/<id>] (HTTPS), redfish+http://…, redfish-virtualmedia[+http]://… (deploys by virtual media)"),
    p("bmc_verify_tls", Ty::Flag, false, "1 = verify the Redfish BMC's certificate (default), 0 = accept a self-signed one"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DECL: &[Param] = &[
        p("node_ids", Ty::List, true, "the nodes"),
        p("force", Ty::Flag, false, ""),
        p("limit", Ty::Int, false, ""),
    ];

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ranges_are_bounded_and_ordered() {
        let range = |a: &str, b: &str, max| {
            let p = Params::check(
                "X",
                &[
                    p("ip_start", Ty::Str, false, ""),
                    p("ip_end", Ty::Str, false, ""),
                ],
                obj(json!({"ip_start": a, "ip_end": b})),
            )
            .unwrap();
            p.ipv4_range(max, "X")
        };
        assert_eq!(range("10.0.0.254", "10.0.1.1", 4096).unwrap().len(), 4);
        assert!(range("10.0.0.5", "10.0.0.4", 4096)
            .unwrap_err()
            .message
            .contains("before"));
        assert!(range("10.0.0.0", "10.0.16.0", 4096)
            .unwrap_err()
            .message
            .contains("at most 4096"));
        assert_eq!(range("10.0.0.0", "10.0.15.255", 4096).unwrap().len(), 4096);
        assert!(range("10.0.0", "10.0.0.1", 4096)
            .unwrap_err()
            .message
            .starts_with("ip_start"));
    }

    #[test]
    fn accepted_spellings_are_normalised() {
        let p = Params::check(
            "X",
            DECL,
            obj(json!({"node_ids": "n-1, n-2", "force": true, "action": "X"})),
        )
        .unwrap();
        assert_eq!(p.list("node_ids"), vec!["n-1", "n-2"]);
        assert_eq!(p.int("force"), Some(1));
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = Params::check("X", DECL, obj(json!({"node_ids": ["a"], "colour": 1}))).unwrap_err();
        assert_eq!(e.code, RetCode::BadParameter);
        assert!(
            e.message.contains("`colour`") && e.message.contains("node_ids"),
            "{}",
            e.message
        );
        let e = Params::check("X", DECL, obj(json!({"node_ids": [1]}))).unwrap_err();
        assert!(e.message.starts_with("node_ids[0]"), "{}", e.message);
        let e =
            Params::check("X", DECL, obj(json!({"node_ids": ["a"], "limit": "10"}))).unwrap_err();
        assert!(
            e.message.contains("limit") && e.message.contains("integer"),
            "{}",
            e.message
        );
        let e = Params::check("X", DECL, obj(json!({"node_ids": ["a"], "force": 2}))).unwrap_err();
        assert!(e.message.contains("force"), "{}", e.message);
        let e = Params::check("X", DECL, obj(json!({}))).unwrap_err();
        assert_eq!(e.code, RetCode::MissingParameter);
        assert!(e.message.contains("node_ids"));
        let e = Params::check("X", DECL, obj(json!({"node_ids": []}))).unwrap_err();
        assert_eq!(e.code, RetCode::MissingParameter);
    }
}
