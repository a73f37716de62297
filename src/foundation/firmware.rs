//! Firmware detection from a DHCP request (options 60, 77, 93) and the
//! boot-file decision: BIOS gets `undionly.kpxe` over TFTP, x86-64 UEFI
//! `ipxe.efi`, arm64 UEFI `snp.efi`, UEFI HTTP boot an `http://` URL of the
//! same, and iPXE itself the URL of the node's iPXE script — which is what
//! breaks the chainload loop (QEMU's network-boot ROM *is* iPXE, and its
//! very first DISCOVER already says so).

use dhcproto::v4::{DhcpOption, Message, OptionCode};

/// What the client says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// Option 60 starts with `PXEClient`.
    pub pxe: bool,
    /// Option 60 starts with `HTTPClient` (UEFI HTTP boot).
    pub http_client: bool,
    /// Option 77 (user class) says `iPXE`.
    pub ipxe: bool,
    /// Option 93, the first architecture listed (RFC 4578).
    pub arch: Option<u16>,
}

impl Client {
    /// Whether the client is booting from the network at all.
    pub fn network_boot(&self) -> bool {
        self.pxe || self.http_client || self.ipxe
    }
}

/// Reads options 60, 77 and 93 of `msg`.
pub fn classify(msg: &Message) -> Client {
    let opts = msg.opts();
    let class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => v.as_slice(),
        _ => &[],
    };
    let user_class = match opts.get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(v)) => v.as_slice(),
        _ => &[],
    };
    // Option 93; a client without it may still say `PXEClient:Arch:NNNNN`.
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => class
            .strip_prefix(b"PXEClient:Arch:")
            .or_else(|| class.strip_prefix(b"HTTPClient:Arch:"))
            .and_then(|rest| std::str::from_utf8(rest.get(..5)?).ok())
            .and_then(|digits| digits.parse().ok()),
    };
    Client {
        pxe: class.starts_with(b"PXEClient"),
        http_client: class.starts_with(b"HTTPClient"),
        // iPXE sends "iPXE" raw; RFC 3004 clients prefix each class with its
        // length: accept it anywhere in the option.
        ipxe: user_class.windows(4).any(|w| w == b"iPXE"),
        arch,
    }
}

/// Which file each firmware gets (configurable; Debian's `ipxe` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub bios: String,
    pub uefi_x64: String,
    pub uefi_arm64: String,
}

impl Default for BootFiles {
    fn default() -> Self {
        BootFiles {
            bios: "undionly.kpxe".into(),
            uefi_x64: "ipxe.efi".into(),
            uefi_arm64: "snp.efi".into(),
        }
    }
}

/// What to put in the answer's boot fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A file name fetched over TFTP from next-server.
    Tftp(String),
    /// A URL: the iPXE script, or a UEFI HTTP boot image (the answer then
    /// carries option 60 `HTTPClient`).
    Http { url: String, http_client: bool },
}

/// Longest boot file name that fits the BOOTP `file` field (128 bytes with
/// its NUL); longer names go in option 67 only (dhcproto's `set_fname`
/// panics past 128 bytes).
pub const FILE_FIELD_MAX: usize = 127;

/// Decides the boot file of a network-booting `client`. `http_base` is the
/// responder's HTTP root (`http://10.99.0.1:8080`), `script_url` the node's
/// iPXE script. `None`: an architecture we have nothing for.
pub fn decide(
    client: &Client,
    files: &BootFiles,
    http_base: &str,
    script_url: &str,
) -> Option<Boot> {
    if client.ipxe {
        return Some(Boot::Http {
            url: script_url.to_string(),
            http_client: false,
        });
    }
    let http = |file: &str| Boot::Http {
        url: format!("{}/files/{}", http_base.trim_end_matches('/'), file),
        http_client: true,
    };
    match client.arch {
        Some(0) | None if client.pxe => Some(Boot::Tftp(files.bios.clone())),
        Some(7) | Some(9) => Some(Boot::Tftp(files.uefi_x64.clone())),
        Some(11) => Some(Boot::Tftp(files.uefi_arm64.clone())),
        Some(16) => Some(http(&files.uefi_x64)),
        Some(19) => Some(http(&files.uefi_arm64)),
        _ => None,
    }
}

/// When a registered node's firmware asks in another mode than its
/// `boot_mode` (option 93: 0 is legacy BIOS; 6, 7, 9 and 16 are UEFI):
/// `asked as BIOS, registered uefi`.
pub fn mode_mismatch(arch: Option<u16>, registered_uefi: bool) -> Option<String> {
    let asked_uefi = match arch? {
        0 => false,
        6 | 7 | 9 | 10 | 11 | 16 | 18 | 19 => true,
        _ => return None,
    };
    (asked_uefi != registered_uefi).then(|| {
        format!(
            "asked as {}, registered {}",
            if asked_uefi { "UEFI" } else { "BIOS" },
            if registered_uefi { "uefi" } else { "bios" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, MessageType};

    fn discover(options: Vec<DhcpOption>) -> Message {
        let mut m = Message::default();
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        for o in options {
            m.opts_mut().insert(o);
        }
        m
    }

    const SCRIPT: &str = "http://10.99.0.1:8080/boot/n-Jr8KE6cf.ipxe";

    #[test]
    fn qemus_ipxe_rom_gets_the_script_not_a_chainload() {
        // QEMU's ROM: PXEClient arch 0 *and* user class iPXE (lab facts).
        let m = discover(vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            DhcpOption::UserClass(b"iPXE".to_vec()),
            DhcpOption::ClientSystemArchitecture(Architecture::from(0)),
        ]);
        let c = classify(&m);
        assert!(c.pxe && c.ipxe && c.network_boot());
        assert_eq!(
            decide(&c, &BootFiles::default(), "http://10.99.0.1:8080", SCRIPT),
            Some(Boot::Http {
                url: SCRIPT.into(),
                http_client: false
            })
        );
    }

    #[test]
    fn a_firmware_in_the_other_mode_is_named() {
        assert_eq!(
            mode_mismatch(Some(0), true).as_deref(),
            Some("asked as BIOS, registered uefi")
        );
        assert_eq!(
            mode_mismatch(Some(7), false).as_deref(),
            Some("asked as UEFI, registered bios")
        );
        assert_eq!(mode_mismatch(Some(7), true), None);
        assert_eq!(mode_mismatch(Some(0), false), None);
        assert_eq!(mode_mismatch(None, true), None);
    }

    #[test]
    fn firmware_map() {
        let files = BootFiles::default();
        let boot = |class: &[u8], arch: Option<u16>| {
            let mut opts = vec![DhcpOption::ClassIdentifier(class.to_vec())];
            if let Some(a) = arch {
                opts.push(DhcpOption::ClientSystemArchitecture(Architecture::from(a)));
            }
            decide(
                &classify(&discover(opts)),
                &files,
                "http://10.99.0.1:8080/",
                SCRIPT,
            )
        };
        assert_eq!(
            boot(b"PXEClient:Arch:00000:UNDI:002001", Some(0)),
            Some(Boot::Tftp("undionly.kpxe".into()))
        );
        assert_eq!(
            boot(b"PXEClient:Arch:00007:UNDI:003016", Some(7)),
            Some(Boot::Tftp("ipxe.efi".into()))
        );
        assert_eq!(
            boot(b"PXEClient:Arch:00009:UNDI:003016", Some(9)),
            Some(Boot::Tftp("ipxe.efi".into()))
        );
        assert_eq!(
            boot(b"PXEClient:Arch:00011:UNDI:003016", Some(11)),
            Some(Boot::Tftp("snp.efi".into()))
        );
        assert_eq!(
            boot(b"HTTPClient:Arch:00016:UNDI:003001", Some(16)),
            Some(Boot::Http {
                url: "http://10.99.0.1:8080/files/ipxe.efi".into(),
                http_client: true
            })
        );
        assert_eq!(boot(b"PXEClient", Some(2)), None, "IA64: nothing to offer");
        assert_eq!(
            boot(b"PXEClient:Arch:00007:UNDI:003016", None),
            Some(Boot::Tftp("ipxe.efi".into())),
            "the architecture of option 60 when option 93 is missing"
        );
        assert_eq!(
            boot(b"PXEClient", None),
            Some(Boot::Tftp("undionly.kpxe".into()))
        );
    }

    #[test]
    fn a_plain_dhcp_client_is_not_network_booting() {
        let m = discover(vec![DhcpOption::ClassIdentifier(b"udhcp 1.35.0".to_vec())]);
        let c = classify(&m);
        assert!(!c.network_boot());
        assert_eq!(decide(&c, &BootFiles::default(), "http://x", SCRIPT), None);
    }
}
