//! The kernel command line the deploy ramdisk was booted with: what to do
//! (`rackboot.mode`), where to report (`rackboot.callback`), which NIC to
//! use (`BOOTIF=01-aa-bb-cc-dd-ee-ff`, as pxelinux and rackboot's templates
//! pass it) and, instead of DHCP, a static address (`rackboot.ip=A.B.C.D/NN`,
//! `rackboot.gateway=A.B.C.D`, `rackboot.vlan=N`). Unknown arguments are
//! ignored (older templates also pass image arguments: the image now comes
//! from the daemon's answer to the inventory).

use std::net::Ipv4Addr;

/// What the ramdisk was booted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Report the inventory, then write the image the daemon names.
    Deploy,
    /// Report the inventory only (introspection, discovery).
    Inspect,
    /// Report the inventory, then wipe the disks the daemon names
    /// (UnprovisionBMNodes).
    Clean,
    /// Booted from an installed disk (the lab's test image): find the
    /// callback URL the deploy left on the disk and say `booted`.
    Firstboot,
}

/// A static address for the provisioning NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Static {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    pub node: String,
    /// `http://host:port/callback/<node>/<token>` (or `/discover/<mac>`).
    pub callback: String,
    /// The MAC of the NIC to use.
    pub bootif: Option<[u8; 6]>,
    pub static_ip: Option<Static>,
    pub vlan: Option<u16>,
}

/// Parses a MAC in any of `01-aa-bb-cc-dd-ee-ff`, `aa-bb-…`, `aa:bb:…`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(['-', ':']).collect();
    let parts = match parts.len() {
        7 if parts[0] == "01" => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Args {
    /// Reads the arguments from `cmdline`; `Err` says what is missing or
    /// malformed.
    pub fn parse(cmdline: &str) -> Result<Args, String> {
        let mut mode = None;
        let (mut node, mut callback) = (String::new(), String::new());
        let (mut bootif, mut ip, mut gateway, mut vlan) = (None, None, None, None);
        for arg in cmdline.split_whitespace() {
            let Some((key, value)) = arg.split_once('=') else {
                continue;
            };
            match key {
                "rackboot.mode" => {
                    mode = Some(match value {
                        "deploy" => Mode::Deploy,
                        "inspect" | "discover" => Mode::Inspect,
                        "firstboot" => Mode::Firstboot,
                        "clean" => Mode::Clean,
                        other => {
                            return Err(format!(
                                "rackboot.mode={other}: not deploy, inspect, clean or firstboot"
                            ))
                        }
                    })
                }
                "rackboot.node" => node = value.to_string(),
                "rackboot.callback" => callback = value.trim_end_matches('/').to_string(),
                "BOOTIF" => {
                    bootif =
                        Some(parse_mac(value).ok_or_else(|| format!("BOOTIF={value}: not a MAC"))?)
                }
                "rackboot.ip" => {
                    let (a, p) = value.split_once('/').unwrap_or((value, "24"));
                    let address: Ipv4Addr = a
                        .parse()
                        .map_err(|_| format!("rackboot.ip={value}: not A.B.C.D/NN"))?;
                    let prefix: u8 = p
                        .parse()
                        .ok()
                        .filter(|p| *p <= 32)
                        .ok_or_else(|| format!("rackboot.ip={value}: bad prefix length"))?;
                    ip = Some((address, prefix));
                }
                "rackboot.gateway" => {
                    gateway = Some(
                        value
                            .parse::<Ipv4Addr>()
                            .map_err(|_| format!("rackboot.gateway={value}: not an address"))?,
                    )
                }
                "rackboot.vlan" => {
                    vlan = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|v| (1..=4094).contains(v))
                            .ok_or_else(|| format!("rackboot.vlan={value}: not 1 to 4094"))?,
                    )
                }
                _ => {}
            }
        }
        let mode = mode.unwrap_or(Mode::Inspect);
        if callback.is_empty() && mode != Mode::Firstboot {
            return Err("no rackboot.callback on the kernel command line".into());
        }
        if !callback.is_empty() && !callback.starts_with("http://") {
            return Err(format!(
                "rackboot.callback={callback}: only http:// is spoken"
            ));
        }
        Ok(Args {
            mode,
            node,
            callback,
            bootif,
            static_ip: ip.map(|(address, prefix)| Static {
                address,
                prefix,
                gateway,
            }),
            vlan,
        })
    }

    /// The server's origin (`http://host:port`), from the callback URL.
    pub fn origin(&self) -> String {
        origin_of(&self.callback)
    }
}

/// `http://host:port` of an `http://host:port/path` URL.
pub fn origin_of(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => format!("http://{}", rest.split('/').next().unwrap_or("")),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_command_line_parses() {
        let a = Args::parse("initrd=initrd.img console=ttyS0,115200 rackboot.mode=deploy rackboot.node=n-AbCd1234 rackboot.callback=http://10.99.0.1:8080/callback/n-AbCd1234/tok BOOTIF=01-52-54-00-99-20-0a rackboot.image=http://x/old").unwrap();
        assert_eq!(a.mode, Mode::Deploy);
        assert_eq!(a.node, "n-AbCd1234");
        assert_eq!(a.bootif, Some([0x52, 0x54, 0, 0x99, 0x20, 0x0a]));
        assert_eq!(a.origin(), "http://10.99.0.1:8080");
        assert_eq!(a.static_ip, None);
        assert_eq!(mac_text(&a.bootif.unwrap()), "52:54:00:99:20:0a");
    }

    #[test]
    fn static_network_arguments_parse_or_say_what_is_wrong() {
        let a = Args::parse("rackboot.mode=inspect rackboot.callback=http://h/cb rackboot.ip=192.168.5.20/24 rackboot.gateway=192.168.5.1 rackboot.vlan=100 BOOTIF=52:54:00:00:00:01").unwrap();
        let s = a.static_ip.unwrap();
        assert_eq!(
            (s.address, s.prefix, s.gateway),
            (
                "192.168.5.20".parse().unwrap(),
                24,
                Some("192.168.5.1".parse().unwrap())
            )
        );
        assert_eq!(a.vlan, Some(100));
        assert!(Args::parse("rackboot.mode=deploy")
            .unwrap_err()
            .contains("rackboot.callback"));
        assert!(
            Args::parse("rackboot.callback=http://h/ rackboot.vlan=5000")
                .unwrap_err()
                .contains("vlan")
        );
        assert!(Args::parse("rackboot.callback=http://h/ BOOTIF=zz")
            .unwrap_err()
            .contains("BOOTIF"));
        assert!(Args::parse("rackboot.callback=https://h/")
            .unwrap_err()
            .contains("http://"));
        assert_eq!(
            Args::parse("rackboot.mode=firstboot").unwrap().mode,
            Mode::Firstboot
        );
        assert_eq!(parse_mac("52-54-00-00-00-0G"), None);
    }
}
