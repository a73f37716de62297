//! Root-device hints: which disk of a machine gets the OS. A BMNode's
//! `root_device` is an object of hints (after Ironic's root device hints):
//! `name`, `serial`, `wwn`, `model`, `vendor`, `size_gb`, `by_path`,
//! `rotational`. Every given hint must hold for a disk, and exactly one disk
//! may match; with no hints, the smallest disk of at least 4 GiB is taken
//! (Ironic's rule). Pure: parsing with messages that name the hint, and the
//! choice over the disks a deploy ramdisk reported.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The hint keys, in the order they are documented.
pub const KEYS: [&str; 8] = [
    "name",
    "serial",
    "wwn",
    "model",
    "vendor",
    "size_gb",
    "by_path",
    "rotational",
];

/// The smallest disk taken when no hint is given.
pub const MIN_DEFAULT_BYTES: u64 = 4 << 30;

/// A node's root-device hints (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hints {
    /// Kernel name, `sda` or `/dev/sda` (the seed's `os_disk_name`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serial: String,
    /// World Wide Name, with or without `0x`, any case.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wwn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    /// Size in GiB (bytes / 2^30, rounded down), as Ironic counts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    /// udev's by-path name, with or without `/dev/disk/by-path/`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub by_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
}

/// A disk as the deploy ramdisk reports it (its inventory's `disks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    pub serial: String,
    pub wwn: String,
    pub model: String,
    pub vendor: String,
    pub rotational: bool,
    pub by_path: String,
}

impl Hints {
    /// Reads hints from a JSON object; `Err` names the hint and what is
    /// wrong with it.
    pub fn from_json(v: &Map<String, Value>) -> Result<Hints, String> {
        let mut h = Hints::default();
        for (key, value) in v {
            let text = |value: &Value| -> Result<String, String> {
                match value {
                    Value::String(s) if !s.trim().is_empty() && s.len() <= 256 => {
                        Ok(s.trim().to_string())
                    }
                    Value::String(s) if s.len() > 256 => {
                        Err(format!("root_device.{key}: longer than 256 bytes"))
                    }
                    Value::String(_) => Err(format!(
                        "root_device.{key}: empty (leave the hint out instead)"
                    )),
                    other => Err(format!(
                        "root_device.{key}: expected a string, got {}",
                        kind(other)
                    )),
                }
            };
            match key.as_str() {
                "name" => {
                    let n = text(value)?;
                    h.name = n.strip_prefix("/dev/").unwrap_or(&n).to_string();
                    if h.name.is_empty() || h.name.contains('/') && !h.name.starts_with("disk/") {
                        return Err(format!(
                            "root_device.name: `{n}` is not a disk name (e.g. sda or /dev/nvme0n1)"
                        ));
                    }
                }
                "serial" => h.serial = text(value)?,
                "wwn" => h.wwn = text(value)?,
                "model" => h.model = text(value)?,
                "vendor" => h.vendor = text(value)?,
                "by_path" => {
                    let p = text(value)?;
                    h.by_path = p
                        .strip_prefix("/dev/disk/by-path/")
                        .unwrap_or(&p)
                        .to_string();
                }
                "size_gb" => match value.as_u64() {
                    Some(n) if n > 0 => h.size_gb = Some(n),
                    _ => {
                        return Err(format!(
                            "root_device.size_gb: expected a positive integer (GiB), got {value}"
                        ))
                    }
                },
                "rotational" => match value {
                    Value::Bool(b) => h.rotational = Some(*b),
                    Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                        h.rotational = Some(n.as_u64() == Some(1))
                    }
                    other => {
                        return Err(format!(
                            "root_device.rotational: expected true/false (or 1/0), got {}",
                            kind(other)
                        ))
                    }
                },
                other => {
                    return Err(format!(
                        "root_device: unknown hint `{other}` (known: {})",
                        KEYS.join(", ")
                    ))
                }
            }
        }
        Ok(h)
    }

    /// Whether no hint is given.
    pub fn is_empty(&self) -> bool {
        *self == Hints::default()
    }

    /// The hints as JSON text (for the store; `{}` when none).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Hints stored by [`Hints::to_json`] (an unreadable value counts as none).
    pub fn parse_stored(text: &str) -> Hints {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// Whether `d` satisfies every given hint.
    pub fn matches(&self, d: &Disk) -> bool {
        let wwn = |s: &str| s.trim().trim_start_matches("0x").to_ascii_lowercase();
        (self.name.is_empty() || self.name == d.name)
            && (self.serial.is_empty() || self.serial == d.serial.trim())
            && (self.wwn.is_empty() || !d.wwn.is_empty() && wwn(&self.wwn) == wwn(&d.wwn))
            && (self.model.is_empty() || self.model.eq_ignore_ascii_case(d.model.trim()))
            && (self.vendor.is_empty() || self.vendor.eq_ignore_ascii_case(d.vendor.trim()))
            && self.size_gb.is_none_or(|g| d.size_bytes >> 30 == g)
            && (self.by_path.is_empty() || self.by_path == d.by_path)
            && self.rotational.is_none_or(|r| r == d.rotational)
    }

    /// A short text of the hints (`serial=S2, size_gb=8`), for messages.
    pub fn describe(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "none".into(),
        }
    }
}

/// Why no disk could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoDisk {
    /// The machine reported no disk at all.
    NoDisks,
    /// No disk satisfies every hint.
    NoneMatch,
    /// Several disks do (named).
    Several(Vec<String>),
    /// No hints, and no disk of at least 4 GiB.
    AllTooSmall,
}

impl std::fmt::Display for NoDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoDisk::NoDisks => write!(f, "the deploy ramdisk found no disk at all (check the disk controller and its driver)"),
            NoDisk::NoneMatch => write!(f, "no disk matches every hint"),
            NoDisk::Several(names) => write!(f, "several disks match ({}): add a hint that tells them apart (serial, wwn or by_path)", names.join(", ")),
            NoDisk::AllTooSmall => write!(f, "no hint is set and no disk has 4 GiB or more"),
        }
    }
}

/// The disk the OS goes to (see the module doc), and how it was chosen.
pub fn choose<'a>(hints: &Hints, disks: &'a [Disk]) -> Result<(&'a Disk, String), NoDisk> {
    if disks.is_empty() {
        return Err(NoDisk::NoDisks);
    }
    if hints.is_empty() {
        return disks
            .iter()
            .filter(|d| d.size_bytes >= MIN_DEFAULT_BYTES)
            .min_by(|a, b| a.size_bytes.cmp(&b.size_bytes).then(a.name.cmp(&b.name)))
            .map(|d| {
                (
                    d,
                    "no root_device hints: the smallest disk of at least 4 GiB".into(),
                )
            })
            .ok_or(NoDisk::AllTooSmall);
    }
    let matching: Vec<&Disk> = disks.iter().filter(|d| hints.matches(d)).collect();
    match matching.as_slice() {
        [one] => Ok((one, format!("root_device hints {}", hints.describe()))),
        [] => Err(NoDisk::NoneMatch),
        several => Err(NoDisk::Several(
            several.iter().map(|d| d.name.clone()).collect(),
        )),
    }
}

/// The disks as a line for messages: `sda 8 GiB serial S1 model QEMU HARDDISK; …`.
pub fn list(disks: &[Disk]) -> String {
    if disks.is_empty() {
        return "none".into();
    }
    disks
        .iter()
        .map(|d| {
            let mut s = format!("{} {}", d.name, human_size(d.size_bytes));
            for (k, v) in [("serial", &d.serial), ("model", &d.model)] {
                if !v.is_empty() {
                    s.push_str(&format!(" {k} {v}"));
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk(name: &str, gib: u64, serial: &str) -> Disk {
        Disk {
            name: name.into(),
            size_bytes: gib << 30,
            serial: serial.into(),
            model: "QEMU HARDDISK".into(),
            by_path: format!("pci-0000:00:1f.2-ata-{name}"),
            ..Default::default()
        }
    }

    fn hints(v: Value) -> Result<Hints, String> {
        Hints::from_json(v.as_object().unwrap())
    }

    #[test]
    fn hints_parse_or_name_the_bad_key() {
        let h =
            hints(json!({"name": "/dev/sdb", "size_gb": 8, "rotational": 0, "wwn": "0x5000C5"}))
                .unwrap();
        assert_eq!(h.name, "sdb");
        assert_eq!(h.size_gb, Some(8));
        assert_eq!(h.rotational, Some(false));
        let e = hints(json!({"colour": "red"})).unwrap_err();
        assert!(
            e.contains("unknown hint `colour`") && e.contains("by_path"),
            "{e}"
        );
        let e = hints(json!({"size_gb": "8"})).unwrap_err();
        assert!(e.starts_with("root_device.size_gb:"), "{e}");
        assert!(hints(json!({"serial": 7}))
            .unwrap_err()
            .contains("expected a string, got a number"));
        assert!(hints(json!({"rotational": "yes"})).is_err());
        assert!(hints(json!({"name": ""})).is_err());
        assert!(hints(json!({"name": "../etc"})).is_err());
        let round = Hints::parse_stored(&h.to_json());
        assert_eq!(round, h);
        assert_eq!(Hints::parse_stored("{}"), Hints::default());
    }

    #[test]
    fn every_hint_must_hold_and_exactly_one_disk_may_match() {
        let disks = [
            disk("sda", 8, "S1"),
            disk("sdb", 16, "S2"),
            disk("sdc", 16, "S3"),
        ];
        let (d, how) = choose(&hints(json!({"serial": "S2"})).unwrap(), &disks).unwrap();
        assert_eq!(d.name, "sdb");
        assert!(how.contains("serial=S2"), "{how}");
        assert_eq!(
            choose(&hints(json!({"size_gb": 16})).unwrap(), &disks).unwrap_err(),
            NoDisk::Several(vec!["sdb".into(), "sdc".into()])
        );
        assert_eq!(
            choose(
                &hints(json!({"size_gb": 16, "serial": "S1"})).unwrap(),
                &disks
            )
            .unwrap_err(),
            NoDisk::NoneMatch
        );
        let d = choose(
            &hints(json!({"model": "qemu harddisk", "name": "sdc"})).unwrap(),
            &disks,
        )
        .unwrap()
        .0;
        assert_eq!(d.name, "sdc");
        let d = choose(
            &hints(json!({"by_path": "/dev/disk/by-path/pci-0000:00:1f.2-ata-sda"})).unwrap(),
            &disks,
        )
        .unwrap()
        .0;
        assert_eq!(d.name, "sda");
        assert_eq!(choose(&Hints::default(), &[]).unwrap_err(), NoDisk::NoDisks);
    }

    #[test]
    fn without_hints_the_smallest_disk_of_4_gib_or_more_is_taken() {
        let tiny = Disk {
            name: "vda".into(),
            size_bytes: 64 << 20,
            ..Default::default()
        };
        let disks = [disk("sdb", 16, ""), tiny.clone(), disk("sda", 8, "")];
        let (d, how) = choose(&Hints::default(), &disks).unwrap();
        assert_eq!(d.name, "sda");
        assert!(how.contains("smallest"), "{how}");
        assert_eq!(
            choose(&Hints::default(), &[tiny]).unwrap_err(),
            NoDisk::AllTooSmall
        );
        assert_eq!(
            list(&disks[..2]),
            "sdb 16.0 GiB model QEMU HARDDISK; vda 64 MiB"
        );
    }
}
