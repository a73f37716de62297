//! The Redfish driver behind [`super::PowerController`]: a [`PowerOp`] on a
//! ComputerSystem (`ComputerSystem.Reset` with the reset types the system
//! advertises, off-then-on where it has no `PowerCycle`; the boot override
//! with `If-Match`, read back after setting), the out-of-band inventory,
//! and virtual media (InsertMedia, or the older PATCH form; eject). Runs
//! inside one session that the controller opened within the budgets.

use super::ops::{PowerOp, PowerOutcome};
use crate::foundation::ipmi::commands::{BootDevice, BootSetting};
use crate::foundation::redfish::client::{RedfishError, Response, Session};
use crate::foundation::redfish::wire::{self, Inventory, Media, Plan, System};
use serde_json::{json, Value};
use std::time::Duration;

/// Most members of a collection read for the inventory.
const MAX_MEMBERS: usize = 64;

/// The system the node is (the address's path, or the BMC's only system).
pub async fn system_path(s: &mut Session) -> Result<String, RedfishError> {
    if let Some(p) = &s.target().url.system {
        return Ok(p.clone());
    }
    let systems = wire::link(&s.root, "Systems").unwrap_or_else(|| "/redfish/v1/Systems".into());
    let list = wire::members(&s.get(&systems).await?.body);
    match list.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(RedfishError::NotSupported("the BMC lists no system".into())),
        many => Err(RedfishError::NotSupported(format!(
            "the BMC has {} systems: name one in bmc_address (…/redfish/v1/Systems/<id>): {}",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// Every system the BMC lists (a scan registers one node each).
pub async fn systems(s: &mut Session) -> Result<Vec<String>, RedfishError> {
    let systems = wire::link(&s.root, "Systems").unwrap_or_else(|| "/redfish/v1/Systems".into());
    Ok(wire::members(&s.get(&systems).await?.body))
}

async fn read_system(s: &mut Session, path: &str) -> Result<(System, Response), RedfishError> {
    let r = s.get(path).await?;
    let mut sys = System::parse(&r.body);
    if r.etag.is_some() {
        sys.etag = r.etag.clone();
    }
    Ok((sys, r))
}

fn power_of(sys: &System) -> Result<bool, RedfishError> {
    sys.power_on
        .ok_or_else(|| RedfishError::Malformed("the system shows no PowerState".into()))
}

/// Redfish's name of a boot device.
pub fn target_name(d: BootDevice) -> &'static str {
    match d {
        BootDevice::Pxe => "Pxe",
        BootDevice::Disk => "Hdd",
        BootDevice::Cd => "Cd",
        BootDevice::Bios => "BiosSetup",
        BootDevice::None => "None",
    }
}

fn device_of(target: &str) -> BootDevice {
    match target {
        "Pxe" => BootDevice::Pxe,
        "Hdd" => BootDevice::Disk,
        "Cd" => BootDevice::Cd,
        "BiosSetup" => BootDevice::Bios,
        _ => BootDevice::None,
    }
}

fn setting_of(sys: &System) -> BootSetting {
    let enabled = sys.boot.enabled.as_str();
    BootSetting {
        device: if enabled == "Disabled" {
            BootDevice::None
        } else {
            device_of(&sys.boot.target)
        },
        persistent: enabled == "Continuous",
        efi: sys.boot.mode == "UEFI",
    }
}

async fn reset(s: &mut Session, sys: &System, path: &str, kind: &str) -> Result<(), RedfishError> {
    let target = sys
        .reset_target
        .clone()
        .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
    s.post(
        &target,
        &json!({ "ResetType": kind }),
        &format!("ComputerSystem.Reset {kind}"),
    )
    .await
    .map(|_| ())
}

/// Waits until the system reports power `on` (some BMCs take a moment).
async fn wait_power(s: &mut Session, path: &str, on: bool) -> Result<(), RedfishError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (sys, _) = read_system(s, path).await?;
        if sys.power_on == Some(on) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RedfishError::Refused {
                what: "power off".into(),
                status: 200,
                message: format!(
                    "the system did not power {} within 60 s",
                    if on { "on" } else { "off" }
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Carries out `op` on the session's system.
pub async fn perform(s: &mut Session, op: PowerOp) -> Result<PowerOutcome, RedfishError> {
    let path = system_path(s).await?;
    let (sys, _) = read_system(s, &path).await?;
    let power = match op {
        PowerOp::Status => return Ok(PowerOutcome::Power(power_of(&sys)?)),
        PowerOp::GetBoot => return Ok(PowerOutcome::Boot(setting_of(&sys))),
        PowerOp::SetBoot(setting) => return set_boot(s, &path, sys, setting).await,
        PowerOp::On => wire::Power::On,
        PowerOp::Off { hard } => wire::Power::Off { hard },
        PowerOp::Cycle => wire::Power::Cycle,
        PowerOp::Reset => wire::Power::Reset,
    };
    let plan = wire::plan(&sys, power).map_err(RedfishError::NotSupported)?;
    match plan {
        Plan::Nothing => {}
        Plan::Reset(kind) => reset(s, &sys, &path, kind).await?,
        Plan::OffThenOn(off, on) => {
            reset(s, &sys, &path, off).await?;
            wait_power(s, &path, false).await?;
            reset(s, &sys, &path, on).await?;
        }
    }
    Ok(PowerOutcome::Power(match op {
        PowerOp::Off { hard: true } => false,
        // A soft off is a request to the OS: report what the BMC says now.
        PowerOp::Off { hard: false } => power_of(&read_system(s, &path).await?.0)?,
        _ => true,
    }))
}

async fn set_boot(
    s: &mut Session,
    path: &str,
    mut sys: System,
    setting: BootSetting,
) -> Result<PowerOutcome, RedfishError> {
    let target = target_name(setting.device);
    if !sys.boot_targets.is_empty() && !sys.boot_targets.iter().any(|t| t == target) {
        return Err(RedfishError::NotSupported(format!(
            "the system cannot boot from {target} (it offers {})",
            sys.boot_targets.join(", ")
        )));
    }
    let mode = sys
        .has_boot_mode
        .then_some(if setting.efi { "UEFI" } else { "Legacy" });
    let body = wire::boot_patch(target, setting.persistent, mode);
    let what = format!("boot override {target}");
    // A changed ETag (someone else wrote meanwhile): read again, once.
    for attempt in 0..2 {
        match s.patch(path, &body, sys.etag.as_deref(), &what).await {
            Err(RedfishError::Refused { status: 412, .. }) if attempt == 0 => {
                sys = read_system(s, path).await?.0;
            }
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    let (back, _) = read_system(s, path).await?;
    let got = setting_of(&back);
    if back.boot.target != target {
        return Err(RedfishError::Refused {
            what,
            status: 200,
            message: format!(
                "the BMC kept boot target {:?} after the change",
                back.boot.target
            ),
        });
    }
    Ok(PowerOutcome::Boot(got))
}

/// Reads the system's out-of-band inventory and power state.
pub async fn inventory(s: &mut Session) -> Result<(Inventory, Option<bool>), RedfishError> {
    let path = system_path(s).await?;
    let sys = s.get(&path).await?.body;
    let mut inv = Inventory::from_system(&sys);
    let power = System::parse(&sys).power_on;
    if let Some(nics) = wire::link(&sys, "EthernetInterfaces") {
        for m in collection(s, &nics).await {
            if let Some(v) = quiet_get(s, &m).await {
                inv.add_nic(&v);
            }
        }
    }
    if let Some(storage) = wire::link(&sys, "Storage") {
        for m in collection(s, &storage).await {
            let Some(v) = quiet_get(s, &m).await else {
                continue;
            };
            let drives: Vec<String> = v
                .get("Drives")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.get("@odata.id").and_then(Value::as_str))
                        .map(str::to_string)
                        .take(MAX_MEMBERS)
                        .collect()
                })
                .unwrap_or_default();
            for d in drives {
                if let Some(v) = quiet_get(s, &d).await {
                    inv.add_drive(&v);
                }
            }
        }
    }
    if inv.drives.is_empty() {
        if let Some(simple) = wire::link(&sys, "SimpleStorage") {
            for m in collection(s, &simple).await {
                if let Some(v) = quiet_get(s, &m).await {
                    inv.add_simple_storage(&v);
                }
            }
        }
    }
    Ok((inv, power))
}

async fn collection(s: &mut Session, path: &str) -> Vec<String> {
    match quiet_get(s, path).await {
        Some(v) => wire::members(&v).into_iter().take(MAX_MEMBERS).collect(),
        None => Vec::new(),
    }
}

/// A sub-resource of the inventory: missing ones leave a partial inventory.
async fn quiet_get(s: &mut Session, path: &str) -> Option<Value> {
    match s.get(path).await {
        Ok(r) => Some(r.body),
        Err(e) => {
            tracing::debug!(path, "inventory: {e}");
            None
        }
    }
}

/// The system's CD virtual media device (under the system, or its
/// manager for older services).
async fn cd_device(s: &mut Session) -> Result<(String, Media), RedfishError> {
    let path = system_path(s).await?;
    let sys = s.get(&path).await?.body;
    let mut collections = Vec::new();
    if let Some(vm) = wire::link(&sys, "VirtualMedia") {
        collections.push(vm);
    }
    let managers: Vec<String> = sys
        .get("Links")
        .and_then(|l| l.get("ManagedBy"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for m in managers {
        if let Some(v) = quiet_get(s, &m).await {
            if let Some(vm) = wire::link(&v, "VirtualMedia") {
                collections.push(vm);
            }
        }
    }
    for c in collections {
        for m in collection(s, &c).await {
            if let Some(v) = quiet_get(s, &m).await {
                let media = Media::parse(&m, &v);
                if media.is_cd() {
                    return Ok((m, media));
                }
            }
        }
    }
    Err(RedfishError::NotSupported(
        "the BMC offers no CD virtual media device".into(),
    ))
}

/// Inserts the ISO at `url` into the CD device (ejecting what is there),
/// and checks it reads back inserted.
pub async fn insert_media(s: &mut Session, url: &str) -> Result<(), RedfishError> {
    let (path, media) = cd_device(s).await?;
    if media.inserted {
        eject_device(s, &path, &media).await?;
    }
    let (_, media) = cd_device(s).await?;
    match &media.insert_target {
        Some(t) => {
            s.post(
                t,
                &json!({ "Image": url, "Inserted": true, "WriteProtected": true }),
                "VirtualMedia.InsertMedia",
            )
            .await?;
        }
        None => {
            s.patch(
                &path,
                &wire::media_patch(Some(url)),
                media.etag.as_deref(),
                "virtual media insert (PATCH)",
            )
            .await?;
        }
    }
    let back = Media::parse(&path, &s.get(&path).await?.body);
    if !back.inserted {
        return Err(RedfishError::Refused {
            what: "VirtualMedia.InsertMedia".into(),
            status: 200,
            message: "the device does not show the image inserted".into(),
        });
    }
    Ok(())
}

/// Ejects whatever the CD device holds.
pub async fn eject_media(s: &mut Session) -> Result<(), RedfishError> {
    let (path, media) = cd_device(s).await?;
    if media.inserted || !media.image.is_empty() {
        eject_device(s, &path, &media).await?;
    }
    Ok(())
}

async fn eject_device(s: &mut Session, path: &str, media: &Media) -> Result<(), RedfishError> {
    match &media.eject_target {
        Some(t) => s
            .post(t, &json!({}), "VirtualMedia.EjectMedia")
            .await
            .map(|_| ()),
        None => s
            .patch(
                path,
                &wire::media_patch(None),
                media.etag.as_deref(),
                "virtual media eject (PATCH)",
            )
            .await
            .map(|_| ()),
    }
}
