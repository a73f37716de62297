//! What rackboot reads from and sends to a Redfish service, without I/O:
//! the service root's links, a ComputerSystem's power state, reset types,
//! boot override and ETag, the reset type each power operation uses with
//! what the system advertises, the boot override PATCH body, virtual media
//! devices and their actions, task states, the BMC's own error message, and
//! the out-of-band inventory's shape.

use serde::Serialize;
use serde_json::{json, Value};

/// `@odata.id` of `v[key]`.
pub fn link(v: &Value, key: &str) -> Option<String> {
    v.get(key)?
        .get("@odata.id")?
        .as_str()
        .map(|s| s.trim_end_matches('/').to_string())
        .filter(|s| s.starts_with('/'))
}

/// The `@odata.id`s of a collection's `Members`.
pub fn members(v: &Value) -> Vec<String> {
    v.get("Members")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                .filter(|s| s.starts_with('/'))
                .map(|s| s.trim_end_matches('/').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `v` looks like a Redfish service root (what a scan probes).
pub fn is_service_root(v: &Value) -> bool {
    v.get("RedfishVersion").is_some()
        || v.get("@odata.type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("ServiceRoot"))
}

/// Where the service root says sessions are created, if it offers them.
pub fn sessions_link(root: &Value) -> Option<String> {
    root.get("Links")
        .and_then(|l| link(l, "Sessions"))
        .or_else(|| {
            // Some services only link the SessionService.
            link(root, "SessionService").map(|s| format!("{s}/Sessions"))
        })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    cur.as_str()
}

/// A ComputerSystem as rackboot uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct System {
    /// `On`/`PoweringOn` → true; `Off`/`PoweringOff` → false; `None` unknown.
    pub power_on: Option<bool>,
    /// `ComputerSystem.Reset`'s target.
    pub reset_target: Option<String>,
    /// The advertised reset types (empty: not advertised).
    pub reset_types: Vec<String>,
    pub boot: Boot,
    /// The boot targets the system allows (empty: not advertised).
    pub boot_targets: Vec<String>,
    /// Whether the system shows `BootSourceOverrideMode` (supports setting it).
    pub has_boot_mode: bool,
    /// `@odata.etag` of the body (the ETag header wins when both exist).
    pub etag: Option<String>,
}

/// The boot override as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    /// `Pxe`, `Hdd`, `Cd`, `BiosSetup`, `None`, …
    pub target: String,
    /// `Once`, `Continuous` or `Disabled`.
    pub enabled: String,
    /// `UEFI` or `Legacy` ("" when not shown).
    pub mode: String,
}

impl System {
    pub fn parse(v: &Value) -> System {
        let power_on = match v.get("PowerState").and_then(Value::as_str) {
            Some("On") | Some("PoweringOn") => Some(true),
            Some("Off") | Some("PoweringOff") => Some(false),
            _ => None,
        };
        let reset = v
            .get("Actions")
            .and_then(|a| a.get("#ComputerSystem.Reset"));
        let strings = |x: Option<&Value>| -> Vec<String> {
            x.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let boot = v.get("Boot").cloned().unwrap_or(Value::Null);
        System {
            power_on,
            reset_target: reset
                .and_then(|r| r.get("target"))
                .and_then(Value::as_str)
                .map(str::to_string),
            reset_types: strings(reset.and_then(|r| r.get("ResetType@Redfish.AllowableValues"))),
            boot: Boot {
                target: str_at(&boot, &["BootSourceOverrideTarget"])
                    .unwrap_or("")
                    .to_string(),
                enabled: str_at(&boot, &["BootSourceOverrideEnabled"])
                    .unwrap_or("")
                    .to_string(),
                mode: str_at(&boot, &["BootSourceOverrideMode"])
                    .unwrap_or("")
                    .to_string(),
            },
            boot_targets: strings(boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")),
            has_boot_mode: boot.get("BootSourceOverrideMode").is_some(),
            etag: v
                .get("@odata.etag")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// Whether the system accepts reset type `t` (all are assumed when it
    /// does not say).
    pub fn allows(&self, t: &str) -> bool {
        self.reset_types.is_empty() || self.reset_types.iter().any(|x| x == t)
    }

    /// The first of `wanted` the system accepts.
    pub fn pick<'a>(&self, wanted: &[&'a str]) -> Option<&'a str> {
        wanted.iter().copied().find(|t| self.allows(t))
    }
}

/// How a power operation is carried out with the system's reset types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do (already in the wanted state).
    Nothing,
    /// One reset of this type.
    Reset(&'static str),
    /// Off with the first type, wait for off, then on with the second (no
    /// `PowerCycle` or restart advertised).
    OffThenOn(&'static str, &'static str),
}

/// What each power operation becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    On,
    Off { hard: bool },
    Cycle,
    Reset,
}

/// The plan for `op` on `sys`, or why it cannot be done.
pub fn plan(sys: &System, op: Power) -> Result<Plan, String> {
    let on = sys.power_on.unwrap_or(true);
    let need = |wanted: &[&'static str]| {
        sys.pick(wanted).ok_or_else(|| {
            format!(
                "the system offers none of the reset types {} (it offers {})",
                wanted.join(", "),
                sys.reset_types.join(", ")
            )
        })
    };
    let power_on = || need(&["On", "ForceOn"]);
    match op {
        Power::On if sys.power_on == Some(true) => Ok(Plan::Nothing),
        Power::On => Ok(Plan::Reset(power_on()?)),
        Power::Off { .. } if sys.power_on == Some(false) => Ok(Plan::Nothing),
        Power::Off { hard: true } => Ok(Plan::Reset(need(&["ForceOff"])?)),
        Power::Off { hard: false } => Ok(Plan::Reset(need(&["GracefulShutdown"])?)),
        // Real BMCs refuse a cycle or restart of a machine that is off.
        Power::Cycle | Power::Reset if !on => Ok(Plan::Reset(power_on()?)),
        Power::Cycle => match sys.pick(&["PowerCycle"]) {
            Some(t) => Ok(Plan::Reset(t)),
            None => Ok(Plan::OffThenOn(need(&["ForceOff"])?, power_on()?)),
        },
        Power::Reset => match sys.pick(&["ForceRestart", "PowerCycle", "GracefulRestart"]) {
            Some(t) => Ok(Plan::Reset(t)),
            None => Ok(Plan::OffThenOn(need(&["ForceOff"])?, power_on()?)),
        },
    }
}

/// The PATCH body of a boot override; `mode` is left out when `None` (the
/// system does not show one, so it cannot take one).
pub fn boot_patch(target: &str, continuous: bool, mode: Option<&str>) -> Value {
    let mut boot = json!({
        "BootSourceOverrideTarget": target,
        "BootSourceOverrideEnabled": if continuous { "Continuous" } else { "Once" },
    });
    if let Some(m) = mode {
        boot["BootSourceOverrideMode"] = json!(m);
    }
    json!({ "Boot": boot })
}

/// A virtual media device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub id: String,
    pub media_types: Vec<String>,
    pub inserted: bool,
    pub image: String,
    /// `VirtualMedia.InsertMedia`'s target (absent: the older PATCH form).
    pub insert_target: Option<String>,
    pub eject_target: Option<String>,
    pub etag: Option<String>,
}

impl Media {
    pub fn parse(path: &str, v: &Value) -> Media {
        let action = |name: &str| {
            v.get("Actions")
                .and_then(|a| a.get(name))
                .and_then(|a| a.get("target"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Media {
            id: v
                .get("Id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| path.rsplit('/').next().unwrap_or("").to_string()),
            media_types: v
                .get("MediaTypes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            inserted: v.get("Inserted").and_then(Value::as_bool).unwrap_or(false),
            image: v
                .get("Image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            insert_target: action("#VirtualMedia.InsertMedia"),
            eject_target: action("#VirtualMedia.EjectMedia"),
            etag: v
                .get("@odata.etag")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// Whether it takes a CD/DVD image.
    pub fn is_cd(&self) -> bool {
        self.media_types.iter().any(|t| t == "CD" || t == "DVD")
            || (self.media_types.is_empty() && self.id.to_ascii_lowercase().contains("cd"))
    }
}

/// The body of an InsertMedia action.
pub fn insert_body(url: &str) -> Value {
    json!({ "Image": url, "Inserted": true, "WriteProtected": true, "TransferProtocolType": if url.starts_with("https") { "HTTPS" } else { "HTTP" } })
}

/// The older PATCH form of inserting (`Image` on the resource itself) or
/// ejecting (`url` None).
pub fn media_patch(url: Option<&str>) -> Value {
    match url {
        Some(u) => json!({ "Image": u, "Inserted": true, "WriteProtected": true }),
        None => json!({ "Image": null, "Inserted": false }),
    }
}

/// A task's state: `Some(Ok(()))` done, `Some(Err(msg))` failed, `None`
/// still running.
pub fn task_state(v: &Value) -> Option<Result<(), String>> {
    match v.get("TaskState").and_then(Value::as_str) {
        Some("Completed") => match v.get("TaskStatus").and_then(Value::as_str) {
            Some("Critical") => Some(Err(
                message_of(v).unwrap_or_else(|| "the task failed".into())
            )),
            _ => Some(Ok(())),
        },
        Some("Exception") | Some("Killed") | Some("Cancelled") | Some("Interrupted") => Some(Err(
            message_of(v).unwrap_or_else(|| "the task failed".into()),
        )),
        Some(_) => None,
        // Not a task (some monitors answer the action's result when done).
        None => Some(Ok(())),
    }
}

/// The BMC's own words in an error or task body: the first
/// `@Message.ExtendedInfo` (or task `Messages`) message, else `error.message`.
pub fn message_of(v: &Value) -> Option<String> {
    let from_list = |l: Option<&Value>| -> Option<String> {
        l?.as_array()?
            .iter()
            .filter_map(|m| m.get("Message").and_then(Value::as_str))
            .find(|m| !m.is_empty())
            .map(str::to_string)
    };
    let e = v.get("error").unwrap_or(v);
    from_list(e.get("@Message.ExtendedInfo"))
        .or_else(|| from_list(v.get("Messages")))
        .or_else(|| e.get("message").and_then(Value::as_str).map(str::to_string))
        .or_else(|| e.get("Message").and_then(Value::as_str).map(str::to_string))
        .map(|m| m.chars().filter(|c| !c.is_control()).take(300).collect())
}

/// A node's out-of-band inventory, as stored and shown (`bmc_inventory`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Inventory {
    pub manufacturer: String,
    pub model: String,
    pub serial_number: String,
    pub bios_version: String,
    pub processors: ProcessorSummary,
    pub memory_gib: f64,
    pub nics: Vec<Nic>,
    pub drives: Vec<Drive>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ProcessorSummary {
    pub count: u64,
    pub model: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Nic {
    pub id: String,
    /// Lower-case colon form.
    pub mac: String,
    pub speed_mbps: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Drive {
    pub name: String,
    pub model: String,
    pub serial_number: String,
    pub capacity_bytes: u64,
    /// `HDD`, `SSD`, … ("" unknown).
    pub media_type: String,
    pub protocol: String,
}

impl Inventory {
    /// The system's own fields.
    pub fn from_system(v: &Value) -> Inventory {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string()
        };
        Inventory {
            manufacturer: s("Manufacturer"),
            model: s("Model"),
            serial_number: s("SerialNumber"),
            bios_version: s("BiosVersion"),
            processors: ProcessorSummary {
                count: v
                    .get("ProcessorSummary")
                    .and_then(|p| p.get("Count"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                model: str_at(v, &["ProcessorSummary", "Model"])
                    .unwrap_or("")
                    .to_string(),
            },
            memory_gib: v
                .get("MemorySummary")
                .and_then(|m| m.get("TotalSystemMemoryGiB"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            nics: Vec::new(),
            drives: Vec::new(),
        }
    }

    /// An EthernetInterface member.
    pub fn add_nic(&mut self, v: &Value) {
        let mac = ["MACAddress", "PermanentMACAddress"]
            .iter()
            .filter_map(|k| v.get(*k).and_then(Value::as_str))
            .find_map(|m| crate::foundation::validate::mac(m).ok());
        if let Some(mac) = mac {
            self.nics.push(Nic {
                id: v
                    .get("Id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                mac,
                speed_mbps: v.get("SpeedMbps").and_then(Value::as_u64).unwrap_or(0),
            });
        }
    }

    /// A Storage Drive resource.
    pub fn add_drive(&mut self, v: &Value) {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        self.drives.push(Drive {
            name: if s("Name").is_empty() {
                s("Id")
            } else {
                s("Name")
            },
            model: s("Model"),
            serial_number: s("SerialNumber"),
            capacity_bytes: v.get("CapacityBytes").and_then(Value::as_u64).unwrap_or(0),
            media_type: s("MediaType"),
            protocol: s("Protocol"),
        });
    }

    /// A SimpleStorage resource's `Devices`.
    pub fn add_simple_storage(&mut self, v: &Value) {
        for d in v
            .get("Devices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.drives.push(Drive {
                name: d
                    .get("Name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                model: d
                    .get("Model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                serial_number: String::new(),
                capacity_bytes: d.get("CapacityBytes").and_then(Value::as_u64).unwrap_or(0),
                media_type: String::new(),
                protocol: String::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(power: &str, types: &[&str]) -> System {
        System::parse(&json!({
            "PowerState": power,
            "Actions": {"#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": types}},
            "Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
                     "BootSourceOverrideMode": "UEFI",
                     "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd", "Cd"]},
            "@odata.etag": "W/\"1\""
        }))
    }

    #[test]
    fn power_operations_use_what_the_system_offers() {
        let sushy = [
            "On",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
        ];
        let on = sys("On", &sushy);
        assert_eq!(plan(&on, Power::On), Ok(Plan::Nothing));
        assert_eq!(
            plan(&on, Power::Off { hard: true }),
            Ok(Plan::Reset("ForceOff"))
        );
        assert_eq!(
            plan(&on, Power::Off { hard: false }),
            Ok(Plan::Reset("GracefulShutdown"))
        );
        // No PowerCycle: off, then on.
        assert_eq!(
            plan(&on, Power::Cycle),
            Ok(Plan::OffThenOn("ForceOff", "On"))
        );
        assert_eq!(plan(&on, Power::Reset), Ok(Plan::Reset("ForceRestart")));
        let off = sys("Off", &sushy);
        assert_eq!(plan(&off, Power::Cycle), Ok(Plan::Reset("On")));
        assert_eq!(plan(&off, Power::Off { hard: true }), Ok(Plan::Nothing));
        let full = sys("On", &["On", "ForceOff", "PowerCycle"]);
        assert_eq!(plan(&full, Power::Cycle), Ok(Plan::Reset("PowerCycle")));
        assert_eq!(plan(&full, Power::Reset), Ok(Plan::Reset("PowerCycle")));
        let only_force_on = sys("Off", &["ForceOn", "ForceOff"]);
        assert_eq!(plan(&only_force_on, Power::On), Ok(Plan::Reset("ForceOn")));
        let e = plan(&sys("On", &["Nmi"]), Power::Off { hard: true }).unwrap_err();
        assert!(e.contains("ForceOff") && e.contains("Nmi"), "{e}");
        // Nothing advertised: the standard types are assumed.
        let quiet = System::parse(&json!({"PowerState": "On"}));
        assert_eq!(plan(&quiet, Power::Cycle), Ok(Plan::Reset("PowerCycle")));
    }

    #[test]
    fn a_system_is_read_and_a_boot_override_written() {
        let s = sys("PoweringOn", &[]);
        assert_eq!(s.power_on, Some(true));
        assert_eq!(s.boot.target, "Pxe");
        assert_eq!(s.boot.mode, "UEFI");
        assert!(s.has_boot_mode);
        assert_eq!(s.etag.as_deref(), Some("W/\"1\""));
        assert_eq!(
            boot_patch("Cd", false, Some("Legacy")),
            json!({"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "Legacy"}})
        );
        assert!(boot_patch("Hdd", true, None)["Boot"]
            .get("BootSourceOverrideMode")
            .is_none());
    }

    #[test]
    fn errors_and_tasks_carry_the_bmcs_words() {
        let e = json!({"error": {"code": "Base.1.0.GeneralError", "message": "general",
            "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.PropertyValueNotInList",
            "Message": "The value Floppy for BootSourceOverrideTarget is not in the list."}]}});
        assert_eq!(
            message_of(&e).unwrap(),
            "The value Floppy for BootSourceOverrideTarget is not in the list."
        );
        assert_eq!(
            message_of(&json!({"error": {"message": "nope"}})).unwrap(),
            "nope"
        );
        assert_eq!(task_state(&json!({"TaskState": "Running"})), None);
        assert_eq!(
            task_state(&json!({"TaskState": "Completed", "TaskStatus": "OK"})),
            Some(Ok(()))
        );
        assert_eq!(
            task_state(
                &json!({"TaskState": "Exception", "Messages": [{"Message": "image not found"}]})
            ),
            Some(Err("image not found".into()))
        );
    }

    #[test]
    fn links_media_and_inventory_are_read() {
        let root = json!({"RedfishVersion": "1.5.0", "Systems": {"@odata.id": "/redfish/v1/Systems/"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}});
        assert!(is_service_root(&root));
        assert_eq!(link(&root, "Systems").unwrap(), "/redfish/v1/Systems");
        assert_eq!(
            sessions_link(&root).unwrap(),
            "/redfish/v1/SessionService/Sessions"
        );
        assert!(sessions_link(&json!({"RedfishVersion": "1.0"})).is_none());
        let m = Media::parse(
            "/redfish/v1/Systems/1/VirtualMedia/Cd",
            &json!({
            "MediaTypes": ["CD", "DVD"], "Inserted": false,
            "Actions": {"#VirtualMedia.InsertMedia": {"target": "/x/Actions/VirtualMedia.InsertMedia"}}}),
        );
        assert!(m.is_cd() && m.id == "Cd" && m.insert_target.is_some() && m.eject_target.is_none());
        let mut inv = Inventory::from_system(
            &json!({"Manufacturer": "Sushy Emulator", "SerialNumber": "S1",
            "ProcessorSummary": {"Count": 2}, "MemorySummary": {"TotalSystemMemoryGiB": 0.5}}),
        );
        inv.add_nic(&json!({"Id": "n1", "MACAddress": "52:54:00:AA:00:01"}));
        inv.add_nic(&json!({"Id": "n2"}));
        assert_eq!(inv.nics.len(), 1);
        assert_eq!(inv.nics[0].mac, "52:54:00:aa:00:01");
        assert_eq!(inv.processors.count, 2);
        assert_eq!(inv.memory_gib, 0.5);
    }
}
