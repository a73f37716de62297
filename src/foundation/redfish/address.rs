//! BMC addresses as URLs, in Metal3's convention (pure): `ipmi://host[:port]`,
//! `redfish://host[:port][/redfish/v1/Systems/<id>]` (HTTPS),
//! `redfish+http://…` (plain HTTP, for emulators and labs), and the
//! virtual-media forms `redfish-virtualmedia://…` and
//! `redfish-virtualmedia+http://…`. `redfish+https://` is accepted as a
//! spelling of `redfish://`. The system path may be left out when the BMC
//! has exactly one system.

use std::fmt;

/// How rackboot drives a node's BMC (DescribeBMNodes' `bmc_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    Ipmi,
    Redfish,
    /// Redfish, deploying by virtual media instead of PXE.
    RedfishVirtualMedia,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Ipmi => "ipmi",
            Driver::Redfish => "redfish",
            Driver::RedfishVirtualMedia => "redfish-virtualmedia",
        }
    }

    pub fn is_redfish(self) -> bool {
        self != Driver::Ipmi
    }
}

/// A parsed BMC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcUrl {
    pub driver: Driver,
    /// HTTPS (always for `ipmi`: meaningless there, false).
    pub tls: bool,
    /// Host name or IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// `/redfish/v1/Systems/<id>`, when given.
    pub system: Option<String>,
}

/// The prefix every Redfish system path has.
pub const SYSTEMS: &str = "/redfish/v1/Systems/";

impl BmcUrl {
    /// Parses `text`, saying what is wrong and what the forms are.
    pub fn parse(text: &str) -> Result<BmcUrl, String> {
        let forms = "use ipmi://host[:port], redfish://host[:port][/redfish/v1/Systems/<id>], \
                     redfish+http://host:port[/…], redfish-virtualmedia://… or redfish-virtualmedia+http://…";
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!("`{text}` is not a BMC URL: {forms}"));
        };
        let (driver, tls) = match scheme.to_ascii_lowercase().as_str() {
            "ipmi" => (Driver::Ipmi, false),
            "redfish" | "redfish+https" => (Driver::Redfish, true),
            "redfish+http" => (Driver::Redfish, false),
            "redfish-virtualmedia" | "redfish-virtualmedia+https" => {
                (Driver::RedfishVirtualMedia, true)
            }
            "redfish-virtualmedia+http" => (Driver::RedfishVirtualMedia, false),
            other => return Err(format!("`{other}://` is not a BMC driver: {forms}")),
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{text}` contains spaces or control characters: {forms}"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(
                "put the BMC's credentials in ipmi_username and ipmi_password, not in the URL"
                    .into(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(format!("`{text}` names no host: {forms}"));
        }
        let default_port = match (driver, tls) {
            (Driver::Ipmi, _) => 623,
            (_, true) => 443,
            (_, false) => 80,
        };
        let port = match port {
            Some(p) => p,
            None => default_port,
        };
        let path = path.trim_end_matches('/');
        let system = match (driver, path) {
            (_, "") => None,
            (Driver::Ipmi, _) => {
                return Err(format!(
                    "`{text}`: an ipmi:// address has no path (ipmi://host[:port])"
                ))
            }
            (_, p) => {
                let id = p.strip_prefix(SYSTEMS).unwrap_or("");
                if id.is_empty() || id.contains('/') || id.contains(['?', '#']) {
                    return Err(format!(
                        "`{p}` is not a Redfish system path: use /redfish/v1/Systems/<id>, or leave the path out when the BMC has one system"
                    ));
                }
                Some(p.to_string())
            }
        };
        Ok(BmcUrl {
            driver,
            tls,
            host,
            port,
            system,
        })
    }

    /// The IPMI address of a seed-style node (`ipmi_network_address`, `ipmi_port`).
    pub fn ipmi(host: &str, port: u16) -> BmcUrl {
        BmcUrl {
            driver: Driver::Ipmi,
            tls: false,
            host: host.to_string(),
            port,
            system: None,
        }
    }

    /// `host:port` as a URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// What identifies the machine behind the address whatever the driver
    /// spelling (`redfish://` and `redfish-virtualmedia://` of one system
    /// are the same machine): `host:port[/system path]`, lower-case host.
    pub fn endpoint(&self) -> String {
        format!(
            "{}{}",
            self.authority().to_ascii_lowercase(),
            self.system.as_deref().unwrap_or("")
        )
    }

    /// The service's base URL (`https://host:port`).
    pub fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority()
        )
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    if authority.is_empty() {
        return Ok((String::new(), None));
    }
    let bad_port = |p: &str| format!("`{p}` is not a port (1 to 65535)");
    let port_of = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad_port(p))
    };
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("`{authority}`: an IPv6 address needs a closing ]"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{host}` is not an IPv6 address"));
        }
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(port_of(p)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => Err(format!("`{authority}` is not host[:port]")),
        };
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(port_of(p)?)),
        None => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("`{host}` is not a host name or IPv4 address"));
    }
    Ok((host, port))
}

impl fmt::Display for BmcUrl {
    /// The canonical spelling (ports always written, no trailing slash).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.driver, self.tls) {
            (Driver::Ipmi, _) => "ipmi",
            (Driver::Redfish, true) => "redfish",
            (Driver::Redfish, false) => "redfish+http",
            (Driver::RedfishVirtualMedia, true) => "redfish-virtualmedia",
            (Driver::RedfishVirtualMedia, false) => "redfish-virtualmedia+http",
        };
        write!(
            f,
            "{scheme}://{}{}",
            self.authority(),
            self.system.as_deref().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metal3_forms_parse_and_print_canonically() {
        let cases = [
            ("ipmi://10.0.0.5", "ipmi://10.0.0.5:623", Driver::Ipmi),
            ("ipmi://10.0.0.5:6230", "ipmi://10.0.0.5:6230", Driver::Ipmi),
            (
                "redfish://BMC-1.example/redfish/v1/Systems/1/",
                "redfish://bmc-1.example:443/redfish/v1/Systems/1",
                Driver::Redfish,
            ),
            (
                "redfish+http://10.0.0.5:8000",
                "redfish+http://10.0.0.5:8000",
                Driver::Redfish,
            ),
            (
                "redfish+https://10.0.0.5",
                "redfish://10.0.0.5:443",
                Driver::Redfish,
            ),
            (
                "redfish-virtualmedia://[fd00::5]:8443/redfish/v1/Systems/abc-1",
                "redfish-virtualmedia://[fd00::5]:8443/redfish/v1/Systems/abc-1",
                Driver::RedfishVirtualMedia,
            ),
            (
                "redfish-virtualmedia+http://10.0.0.5:8000/redfish/v1/Systems/x",
                "redfish-virtualmedia+http://10.0.0.5:8000/redfish/v1/Systems/x",
                Driver::RedfishVirtualMedia,
            ),
        ];
        for (given, canonical, driver) in cases {
            let u = BmcUrl::parse(given).unwrap();
            assert_eq!(u.to_string(), canonical, "{given}");
            assert_eq!(u.driver, driver);
            assert_eq!(BmcUrl::parse(canonical).unwrap(), u);
        }
        let a = BmcUrl::parse("redfish://10.0.0.5/redfish/v1/Systems/1").unwrap();
        let b = BmcUrl::parse("redfish-virtualmedia://10.0.0.5:443/redfish/v1/Systems/1").unwrap();
        assert_eq!(a.endpoint(), b.endpoint());
        assert_eq!(a.base(), "https://10.0.0.5:443");
    }

    #[test]
    fn bad_addresses_say_why() {
        for (bad, why) in [
            ("10.0.0.5", "not a BMC URL"),
            ("idrac://10.0.0.5", "not a BMC driver"),
            ("redfish://", "names no host"),
            ("redfish://10.0.0.5:0", "not a port"),
            ("redfish://10.0.0.5:99999", "not a port"),
            ("redfish://a_b", "not a host name"),
            (
                "redfish://10.0.0.5/redfish/v1/Chassis/1",
                "not a Redfish system path",
            ),
            (
                "redfish://10.0.0.5/redfish/v1/Systems/",
                "not a Redfish system path",
            ),
            ("ipmi://10.0.0.5/x", "has no path"),
            ("redfish://admin:pw@10.0.0.5", "not in the URL"),
            ("redfish://10.0.0.5/redfish/v1/Systems/1 x", "spaces"),
            ("redfish://[fd00::5", "closing ]"),
        ] {
            let e = BmcUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
