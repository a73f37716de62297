//! The provisioning network: the NIC whose MAC is the node's PXE MAC
//! (`BOOTIF`) comes up — with DHCP (busybox `udhcpc`, whose event script
//! `/udhcpc.sh` sets the address and route) or with the static address of
//! `rackboot.ip` (optionally on a VLAN) —, every other NIC stays down.
//! Without `BOOTIF`, every NIC tries DHCP in turn until one gets an address.

use crate::cmdline::{mac_text, Args};
use crate::inventory::Nic;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a busybox command; `Err` has its output.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The NIC `args` names, among `nics`.
pub fn chosen<'a>(args: &Args, nics: &'a [Nic]) -> Option<&'a Nic> {
    let want = mac_text(&args.bootif?);
    nics.iter().find(|n| n.mac.eq_ignore_ascii_case(&want))
}

/// Waits up to `secs` for the carrier of `iface`.
fn wait_link(iface: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if std::fs::read_to_string(format!("/sys/class/net/{iface}/carrier"))
            .is_ok_and(|c| c.trim() == "1")
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn dhcp(iface: &str) -> bool {
    // -n: exit when no lease; -q: exit once bound; -t/-T: 6 discovers 2 s apart.
    run(
        "udhcpc",
        &[
            "-i",
            iface,
            "-s",
            "/udhcpc.sh",
            "-q",
            "-n",
            "-t",
            "6",
            "-T",
            "2",
        ],
    )
    .is_ok()
}

/// Brings the provisioning network up; returns the interface used.
/// `load` loads a module by name (8021q for a VLAN).
pub fn up(args: &Args, nics: &[Nic], load: &mut dyn FnMut(&str) -> bool) -> Result<String, String> {
    let candidates: Vec<&Nic> = match (args.bootif, chosen(args, nics)) {
        (Some(_), Some(n)) => vec![n],
        (Some(mac), None) => {
            return Err(format!(
                "no NIC with the PXE MAC {} (BOOTIF); NICs found: {}",
                mac_text(&mac),
                if nics.is_empty() {
                    "none (no driver matched the network hardware)".to_string()
                } else {
                    nics.iter()
                        .map(|n| format!("{} {} ({})", n.name, n.mac, n.driver))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        }
        (None, _) => nics.iter().collect(),
    };
    if candidates.is_empty() {
        return Err("no network interface found (no driver matched the network hardware)".into());
    }
    for nic in candidates {
        run("ip", &["link", "set", &nic.name, "up"])?;
        if !wait_link(&nic.name, 15) {
            println!("rackboot-agent: {}: no link after 15 s", nic.name);
        }
        let mut iface = nic.name.clone();
        if let Some(vlan) = args.vlan {
            if !load("8021q") {
                return Err("rackboot.vlan is set but the 8021q module does not load".into());
            }
            let v = format!("{}.{vlan}", nic.name);
            run(
                "ip",
                &[
                    "link",
                    "add",
                    "link",
                    &nic.name,
                    "name",
                    &v,
                    "type",
                    "vlan",
                    "id",
                    &vlan.to_string(),
                ],
            )?;
            run("ip", &["link", "set", &v, "up"])?;
            iface = v;
        }
        match args.static_ip {
            Some(s) => {
                run(
                    "ip",
                    &[
                        "addr",
                        "add",
                        &format!("{}/{}", s.address, s.prefix),
                        "dev",
                        &iface,
                    ],
                )?;
                if let Some(gw) = s.gateway {
                    run(
                        "ip",
                        &[
                            "route",
                            "add",
                            "default",
                            "via",
                            &gw.to_string(),
                            "dev",
                            &iface,
                        ],
                    )?;
                }
                return Ok(iface);
            }
            None => {
                for _ in 0..3 {
                    if dhcp(&iface) {
                        return Ok(iface);
                    }
                }
                println!("rackboot-agent: {iface}: no DHCP answer");
            }
        }
    }
    Err(match args.bootif {
        Some(mac) => format!("no DHCP answer on the PXE NIC {}", mac_text(&mac)),
        None => "no DHCP answer on any interface".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pxe_mac_picks_the_nic() {
        let nics = [
            Nic {
                name: "eth0".into(),
                mac: "52:54:00:00:00:01".into(),
                ..Default::default()
            },
            Nic {
                name: "eth1".into(),
                mac: "52:54:00:00:00:02".into(),
                ..Default::default()
            },
        ];
        let args = Args::parse("rackboot.callback=http://h/c BOOTIF=01-52-54-00-00-00-02").unwrap();
        assert_eq!(chosen(&args, &nics).unwrap().name, "eth1");
        let args = Args::parse("rackboot.callback=http://h/c BOOTIF=01-52-54-00-00-00-09").unwrap();
        assert!(chosen(&args, &nics).is_none());
        let e = up(&args, &nics, &mut |_| true).unwrap_err();
        assert!(
            e.contains("52:54:00:00:00:09") && e.contains("eth0 52:54:00:00:00:01"),
            "{e}"
        );
        let e = up(&args, &[], &mut |_| true).unwrap_err();
        assert!(e.contains("no driver matched"), "{e}");
    }
}
