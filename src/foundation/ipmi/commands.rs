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
    /// CD/DVD (virtual media on Redfish BMCs).
    Cd,
}

impl BootDevice {
    /// Boot device selector (bits 5:2 of data byte 2).
    fn selector(self) -> u8 {
        match self {
            BootDevice::None => 0x00,
            BootDevice::Pxe => 0x04,
            BootDevice::Disk => 0x08,
            BootDevice::Bios => 0x18,
            BootDevice::Cd => 0x14,
        }
    }

    fn from_selector(b: u8) -> BootDevice {
        match b & 0x3c {
            0x04 => BootDevice::Pxe,
            0x08 => BootDevice::Disk,
            0x18 => BootDevice::Bios,
            0x14 => BootDevice::Cd,
            _ => BootDevice::None,
        }
    }

    pub fn parse(s: &str) -> Option<BootDevice> {
        match s {
            "pxe" => Some(BootDevice::Pxe),
            "disk" => Some(BootDevice::Disk),
            "bios" => Some(BootDevice::Bios),
            "cd" => Some(BootDevice::Cd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::None => "none",
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Bios => "bios",
            BootDevice::Cd => "cd",
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

/// A brand name for an IANA enterprise number of Get Device ID, for BMCs
/// without a FRU (the common server makers only).
pub fn brand_of_manufacturer(iana: u32) -> Option<&'static str> {
    Some(match iana {
        2 => "IBM",
        11 => "HPE",
        42 => "Oracle",
        343 => "Intel",
        674 => "Dell",
        2011 => "Huawei",
        5771 => "Cisco",
        10876 => "Supermicro",
        19046 => "Lenovo",
        47196 => "Inspur",
        49622 => "Gigabyte",
        _ => return None,
    })
}

/// What a FRU inventory says about the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FruInfo {
    pub board_manufacturer: String,
    pub board_serial: String,
    pub product_manufacturer: String,
    pub product_name: String,
    pub product_serial: String,
}

impl FruInfo {
    /// The brand to show: the product's manufacturer, else the board's.
    pub fn brand(&self) -> &str {
        if self.product_manufacturer.is_empty() {
            &self.board_manufacturer
        } else {
            &self.product_manufacturer
        }
    }

    /// The serial number to show: the product's, else the board's.
    pub fn serial(&self) -> &str {
        if self.product_serial.is_empty() {
            &self.board_serial
        } else {
            &self.product_serial
        }
    }
}

/// Decodes one type/length-prefixed FRU field at `data[*at]`; `None` at the
/// end marker (0xC1) or past the data.
fn fru_field(data: &[u8], at: &mut usize) -> Option<String> {
    let tl = *data.get(*at)?;
    if tl == 0xC1 {
        return None;
    }
    let len = (tl & 0x3f) as usize;
    let bytes = data.get(*at + 1..*at + 1 + len)?;
    *at += 1 + len;
    let text: String = match tl >> 6 {
        0b11 => bytes.iter().map(|&b| b as char).collect(), // 8-bit ASCII + Latin-1
        0b10 => {
            // 6-bit packed ASCII: 4 characters in 3 bytes.
            let mut bits: u32 = 0;
            let mut n = 0;
            let mut out = String::new();
            for &b in bytes {
                bits |= u32::from(b) << n;
                n += 8;
                while n >= 6 {
                    out.push(char::from(((bits & 0x3f) as u8) + 0x20));
                    bits >>= 6;
                    n -= 6;
                }
            }
            out
        }
        0b01 => bytes
            .iter()
            .flat_map(|b| [b & 0x0f, b >> 4])
            .map(|d| match d {
                0..=9 => char::from(b'0' + d),
                0xA => ' ',
                0xB => '-',
                0xC => '.',
                _ => '?',
            })
            .collect(),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(), // binary
    };
    Some(
        text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .chars()
            .filter(|c| !c.is_control())
            .collect(),
    )
}

fn fru_area(data: &[u8], offset_units: u8, skip: usize) -> Vec<String> {
    let start = offset_units as usize * 8;
    if offset_units == 0 || start >= data.len() {
        return Vec::new();
    }
    let mut at = start + skip;
    let mut fields = Vec::new();
    while fields.len() < 16 {
        match fru_field(data, &mut at) {
            Some(f) => fields.push(f),
            None => break,
        }
    }
    fields
}

/// Parses a FRU inventory (IPMI Platform Management FRU Information Storage
/// Definition 1.0): the board and product areas' manufacturer and serial.
pub fn parse_fru(data: &[u8]) -> Option<FruInfo> {
    if data.len() < 8
        || data[0] & 0x0f != 0x01
        || data[..8].iter().fold(0u8, |a, b| a.wrapping_add(*b)) != 0
    {
        return None;
    }
    // Board area: version, length, language, 3-byte manufacturing date.
    let board = fru_area(data, data[3], 6);
    // Product area: version, length, language.
    let product = fru_area(data, data[4], 3);
    let get = |v: &Vec<String>, i: usize| v.get(i).cloned().unwrap_or_default();
    Some(FruInfo {
        board_manufacturer: get(&board, 0),
        board_serial: get(&board, 2),
        product_manufacturer: get(&product, 0),
        product_name: get(&product, 1),
        product_serial: get(&product, 4),
    })
}

/// Reads FRU device 0 (Get FRU Inventory Area Info, then Read FRU Data in
/// 16-byte pieces, at most 2 KiB). `Ok(None)` when the BMC has no FRU.
/// The BMC's own LAN MAC address (Get LAN Configuration Parameters,
/// parameter 5) on the first LAN channel that answers (1, then 2), as
/// `aa:bb:cc:dd:ee:ff`; `None` when no channel gives a non-zero one. The
/// machine's ramdisk reads the same in-band: the intake's join key.
pub async fn lan_mac(s: &mut Session) -> Option<String> {
    for channel in 1..=2u8 {
        let Ok(d) = s
            .command(
                "Get LAN Configuration Parameters",
                0x0c,
                0x02,
                &[channel, 5, 0, 0],
            )
            .await
        else {
            continue;
        };
        // parameter revision, then the MAC
        if let Some(mac) = d.get(1..7).filter(|m| m.iter().any(|b| *b != 0)) {
            return Some(
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            );
        }
    }
    None
}

pub async fn read_fru(s: &mut Session) -> Result<Option<FruInfo>, BmcError> {
    const NETFN_STORAGE: u8 = 0x0A;
    let info = match s
        .command("Get FRU Inventory Area Info", NETFN_STORAGE, 0x10, &[0])
        .await
    {
        Ok(d) if d.len() >= 2 => d,
        Ok(_) | Err(BmcError::Completion { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = (u16::from_le_bytes([info[0], info[1]]) as usize).min(2048);
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        let offset = data.len() as u16;
        let count = (size - data.len()).min(16) as u8;
        let [lo, hi] = offset.to_le_bytes();
        let d = match s
            .command("Read FRU Data", NETFN_STORAGE, 0x11, &[0, lo, hi, count])
            .await
        {
            Ok(d) => d,
            Err(BmcError::Completion { .. }) => break,
            Err(e) => return Err(e),
        };
        let got = d.first().copied().unwrap_or(0) as usize;
        if got == 0 || d.len() < 1 + got {
            break;
        }
        data.extend_from_slice(&d[1..1 + got]);
        // Stop once the areas the header points to are read.
        if data.len() >= 8 {
            let end = data[3..5]
                .iter()
                .map(|&o| o as usize * 8)
                .max()
                .unwrap_or(0);
            if end > 0 && data.len() > end + 8 {
                let area_len = data.get(end + 1).map(|&l| l as usize * 8).unwrap_or(0);
                if area_len > 0 && data.len() >= end + area_len {
                    break;
                }
            }
        }
    }
    Ok(parse_fru(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FRU image that ipmitool's `fru print` reads as Board Mfg "Dell Inc.",
    /// Board Serial "BSN0001", Product Manufacturer "Dell Inc.", Product Name
    /// "PowerEdge R640", Product Serial "CN7016" (checked against ipmi_sim).
    pub const FRU: &[u8] = &[
        0x01, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0xf6, 0x01, 0x07, 0x00, 0x00, 0x00, 0x00, 0xc9,
        0x44, 0x65, 0x6c, 0x6c, 0x20, 0x49, 0x6e, 0x63, 0x2e, 0xd1, 0x50, 0x6f, 0x77, 0x65, 0x72,
        0x45, 0x64, 0x67, 0x65, 0x20, 0x52, 0x36, 0x34, 0x30, 0x20, 0x4d, 0x42, 0xc7, 0x42, 0x53,
        0x4e, 0x30, 0x30, 0x30, 0x31, 0xc7, 0x50, 0x4e, 0x2d, 0x30, 0x30, 0x30, 0x31, 0xc0, 0xc1,
        0x00, 0x00, 0x00, 0xf9, 0x01, 0x06, 0x00, 0xc9, 0x44, 0x65, 0x6c, 0x6c, 0x20, 0x49, 0x6e,
        0x63, 0x2e, 0xce, 0x50, 0x6f, 0x77, 0x65, 0x72, 0x45, 0x64, 0x67, 0x65, 0x20, 0x52, 0x36,
        0x34, 0x30, 0xc4, 0x52, 0x36, 0x34, 0x30, 0xc3, 0x31, 0x2e, 0x30, 0xc6, 0x43, 0x4e, 0x37,
        0x30, 0x31, 0x36, 0xc0, 0xc0, 0xc1, 0x83,
    ];

    #[test]
    fn fru_board_and_product_areas_are_read() {
        let f = parse_fru(FRU).unwrap();
        assert_eq!(f.board_manufacturer, "Dell Inc.");
        assert_eq!(f.board_serial, "BSN0001");
        assert_eq!(f.product_name, "PowerEdge R640");
        assert_eq!((f.brand(), f.serial()), ("Dell Inc.", "CN7016"));
    }

    #[test]
    fn fru_encodings_and_garbage() {
        // 6-bit packed "ABCD": 0x21 | 0x22 << 6 | 0x23 << 12 | 0x24 << 18 = 0x9238a1.
        let mut at = 0;
        assert_eq!(
            fru_field(&[0x83, 0xa1, 0x38, 0x92], &mut at).unwrap(),
            "ABCD"
        );
        assert_eq!(at, 4);
        // BCD plus, low nibble first: 0x21 -> "12", 0xb3 -> "3-".
        let mut at = 0;
        assert_eq!(fru_field(&[0x42, 0x21, 0xb3], &mut at).unwrap(), "123-");
        assert!(parse_fru(&[0; 8]).is_none());
        for cut in 0..FRU.len() {
            let _ = parse_fru(&FRU[..cut]);
        }
        let mut bad = FRU.to_vec();
        bad[15] = 0xff; // a length running past the end
        let _ = parse_fru(&bad);
    }
}
