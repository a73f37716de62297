//! Field syntax checks shared by every action: IPv4 addresses and netmasks,
//! MAC addresses (normalised to lower-case colon form), RFC 1123 host names,
//! VLAN ids and 0/1 flags. Plain functions returning a message that says what
//! is allowed; callers add the field name.

use std::net::Ipv4Addr;

/// Parses a dotted-quad IPv4 address (no leading zeros, no shorthand).
pub fn ipv4(value: &str) -> Result<Ipv4Addr, String> {
    let parsed: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("`{value}` is not an IPv4 address (expected a.b.c.d)"))?;
    Ok(parsed)
}

/// Parses a netmask: an IPv4 address whose bits are contiguous ones then zeros.
pub fn netmask(value: &str) -> Result<Ipv4Addr, String> {
    let mask = ipv4(value).map_err(|_| {
        format!("`{value}` is not a netmask (expected a.b.c.d, e.g. 255.255.255.0)")
    })?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 || bits == 0 {
        return Err(format!(
            "`{value}` is not a netmask: its one-bits must be contiguous from the left (e.g. 255.255.255.0)"
        ));
    }
    Ok(mask)
}

/// Checks that `gateway` lies inside `address`/`mask` and is neither the
/// network nor the broadcast address of a network that has those.
pub fn gateway_in_network(
    address: Ipv4Addr,
    mask: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<(), String> {
    let m = u32::from(mask);
    let net = u32::from(address) & m;
    if u32::from(gateway) & m != net {
        return Err(format!(
            "gateway {gateway} is outside the network {}/{} of address {address}",
            Ipv4Addr::from(net),
            m.leading_ones()
        ));
    }
    if m.leading_ones() <= 30 {
        let g = u32::from(gateway);
        if g == net || g == net | !m {
            return Err(format!(
                "gateway {gateway} is the network or broadcast address of {}/{}",
                Ipv4Addr::from(net),
                m.leading_ones()
            ));
        }
    }
    Ok(())
}

/// Normalises a MAC address to `aa:bb:cc:dd:ee:ff`. Accepts `:`, `-` or `.`
/// separators (including Cisco's `aabb.ccdd.eeff`) or none, any case.
pub fn mac(value: &str) -> Result<String, String> {
    let hex: String = value
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let separators_ok = {
        let groups: Vec<&str> = value.split([':', '-']).collect();
        let dotted: Vec<&str> = value.split('.').collect();
        (groups.len() == 6 && groups.iter().all(|g| g.len() == 2))
            || (dotted.len() == 3 && dotted.iter().all(|g| g.len() == 4))
            || (groups.len() == 1 && dotted.len() == 1)
    };
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || !separators_ok {
        return Err(format!(
            "`{value}` is not a MAC address (expected six hex pairs, e.g. 0c:c4:7a:88:63:1b)"
        ));
    }
    let lower = hex.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
    let normalised = pairs.join(":");
    let first = u8::from_str_radix(pairs[0], 16).unwrap_or(0);
    if first & 1 == 1 {
        return Err(format!(
            "`{value}` is a multicast/broadcast MAC address; a NIC's PXE MAC is unicast"
        ));
    }
    if normalised == "00:00:00:00:00:00" {
        return Err(format!("`{value}` is the all-zero MAC address"));
    }
    Ok(normalised)
}

/// Checks a host name per RFC 1123: dot-separated labels of 1–63 letters,
/// digits and hyphens, not starting or ending with a hyphen; 253 chars at most.
pub fn hostname(value: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{value}` is not a valid host name: {why}"));
    if value.is_empty() || value.len() > 253 {
        return bad("it must be 1 to 253 characters long");
    }
    for label in value.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must be 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label must not start or end with a hyphen");
        }
    }
    Ok(())
}

/// Checks a VLAN id: 1 to 4094.
pub fn vlan_id(value: i64) -> Result<u16, String> {
    if (1..=4094).contains(&value) {
        Ok(value as u16)
    } else {
        Err(format!("VLAN id {value} is out of range (1 to 4094)"))
    }
}

/// Checks a 0/1 flag.
pub fn flag(value: i64) -> Result<bool, String> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("{value} is not a flag (expected 0 or 1)")),
    }
}

/// CPU architectures a BMNode may declare.
pub const CPU_ARCHES: &[&str] = &["x86_64", "aarch64"];

/// Checks `cpu_arch` against [`CPU_ARCHES`].
pub fn cpu_arch(value: &str) -> Result<(), String> {
    if CPU_ARCHES.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a supported CPU architecture (allowed: {})",
            CPU_ARCHES.join(", ")
        ))
    }
}

/// Checks a free-text field: at most `max` characters and no control characters
/// (they end up in logs, templates and kernel command lines).
pub fn text(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character (newline, tab, …)".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalised_from_every_common_spelling() {
        for input in [
            "0C:C4:7A:88:63:1B",
            "0c-c4-7a-88-63-1b",
            "0cc4.7a88.631b",
            "0cc47a88631b",
        ] {
            assert_eq!(mac(input).unwrap(), "0c:c4:7a:88:63:1b", "{input}");
        }
        for bad in [
            "0c:c4:7a:88:63",
            "0c:c4:7a:88:63:1g",
            "0c:c4:7a:88:631b:",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "",
            "0c:c4:7a-88:63:1b:00",
        ] {
            assert!(mac(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn netmasks_must_be_contiguous() {
        assert!(netmask("255.255.255.0").is_ok());
        assert!(netmask("255.255.255.255").is_ok());
        assert!(netmask("255.0.255.0").is_err());
        assert!(netmask("0.0.0.0").is_err());
        assert!(netmask("255.255.255").is_err());
    }

    #[test]
    fn gateway_must_be_inside_the_network() {
        let a = ipv4("172.31.11.47").unwrap();
        let m = netmask("255.255.255.0").unwrap();
        assert!(gateway_in_network(a, m, ipv4("172.31.11.254").unwrap()).is_ok());
        assert!(gateway_in_network(a, m, ipv4("172.31.12.1").unwrap()).is_err());
        assert!(gateway_in_network(a, m, ipv4("172.31.11.255").unwrap()).is_err());
        assert!(gateway_in_network(a, m, ipv4("172.31.11.0").unwrap()).is_err());
    }

    #[test]
    fn hostnames_follow_rfc1123() {
        for ok in ["test01n01", "a", "node-1.rack2.example", "1node"] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", &"x".repeat(64)] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4_rejects_shorthand_and_garbage() {
        assert!(ipv4("10.0.0.1").is_ok());
        for bad in ["10.0.1", "10.0.0.256", "010.0.0.1", "x", ""] {
            assert!(ipv4(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vlan_and_flags() {
        assert!(vlan_id(0).is_err());
        assert!(vlan_id(4095).is_err());
        assert_eq!(vlan_id(100), Ok(100));
        assert_eq!(flag(1), Ok(true));
        assert!(flag(2).is_err());
    }
}
