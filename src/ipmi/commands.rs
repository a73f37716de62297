//! The IPMI commands rackboot sends, typed: chassis power status and
//! control, boot device (System Boot Options parameter 5), Get Device ID.

use super::client::{BmcError, Session};

const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;

/// What Chassis Control does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisAction {
    PowerOff = 0x00,
    PowerOn = 0x01,
    PowerCycle = 0x02,
    HardReset = 0x03,
    SoftOff = 0x05,
}

/// Where the next boot goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    None,
    Pxe,
    Disk,
    Bios,
}

impl BootDevice {
    /// Boot device selector (bits 5:2 of data byte 2).
    fn selector(self) -> u8 {
        match self {
            BootDevice::None => 0x00,
            BootDevice::Pxe => 0x04,
            BootDevice::Disk => 0x08,
            BootDevice::Bios => 0x18,
        }
    }

    fn from_selector(b: u8) -> BootDevice {
        match b & 0x3c {
            0x04 => BootDevice::Pxe,
            0x08 => BootDevice::Disk,
            0x18 => BootDevice::Bios,
            _ => BootDevice::None,
        }
    }

    pub fn parse(s: &str) -> Option<BootDevice> {
        match s {
            "pxe" => Some(BootDevice::Pxe),
            "disk" => Some(BootDevice::Disk),
            "bios" => Some(BootDevice::Bios),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::None => "none",
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Bios => "bios",
        }
    }
}

/// A boot device setting as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSetting {
    pub device: BootDevice,
    pub persistent: bool,
    pub efi: bool,
}

/// Whether the chassis is powered on (Get Chassis Status).
pub async fn power_is_on(s: &mut Session) -> Result<bool, BmcError> {
    let d = s
        .command("Get Chassis Status", NETFN_CHASSIS, 0x01, &[])
        .await?;
    d.first()
        .map(|b| b & 0x01 == 1)
        .ok_or_else(|| BmcError::Malformed("empty Get Chassis Status reply".into()))
}

/// Chassis Control.
pub async fn chassis_control(s: &mut Session, action: ChassisAction) -> Result<(), BmcError> {
    s.command("Chassis Control", NETFN_CHASSIS, 0x02, &[action as u8])
        .await
        .map(|_| ())
}

/// Set System Boot Options, parameter 5 (boot flags).
pub async fn set_boot_device(s: &mut Session, setting: BootSetting) -> Result<(), BmcError> {
    let flags1 =
        0x80 | if setting.persistent { 0x40 } else { 0 } | if setting.efi { 0x20 } else { 0 };
    s.command(
        "Set System Boot Options",
        NETFN_CHASSIS,
        0x08,
        &[0x05, flags1, setting.device.selector(), 0, 0, 0],
    )
    .await
    .map(|_| ())
}

/// Get System Boot Options, parameter 5.
pub async fn get_boot_device(s: &mut Session) -> Result<BootSetting, BmcError> {
    let d = s
        .command(
            "Get System Boot Options",
            NETFN_CHASSIS,
            0x09,
            &[0x05, 0, 0],
        )
        .await?;
    if d.len() < 4 {
        return Err(BmcError::Malformed(
            "short Get System Boot Options reply".into(),
        ));
    }
    Ok(BootSetting {
        device: BootDevice::from_selector(d[3]),
        persistent: d[2] & 0x40 != 0,
        efi: d[2] & 0x20 != 0,
    })
}

/// Get Device ID: (device id, manufacturer IANA id, product id).
pub async fn device_id(s: &mut Session) -> Result<(u8, u32, u16), BmcError> {
    let d = s.command("Get Device ID", NETFN_APP, 0x01, &[]).await?;
    if d.len() < 11 {
        return Err(BmcError::Malformed("short Get Device ID reply".into()));
    }
    Ok((
        d[0],
        u32::from_le_bytes([d[6], d[7], d[8], 0]),
        u16::from_le_bytes([d[9], d[10]]),
    ))
}
