//! Minimal IPv6 router advertisements on the provisioning interface. iPXE
//! waits ~13 s for one before its first HTTP fetch (measured in the lab);
//! answering its router solicitations removes the wait. The advertisement
//! carries no prefix and a router lifetime of 0: it makes no host use us as
//! a router, it only tells iPXE that nobody will configure IPv6.

use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6,
};
use std::ffi::OsString;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
/// Unsolicited advertisements are sent this often.
const PERIOD: Duration = Duration::from_secs(10);

/// The advertisement (the kernel fills in the ICMPv6 checksum).
pub fn advertisement(mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut p = vec![
        ROUTER_ADVERTISEMENT,
        0,
        0,
        0,
        64,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    if let Some(mac) = mac {
        // Source link-layer address option.
        p.extend_from_slice(&[1, 1]);
        p.extend_from_slice(&mac);
    }
    p
}

fn open(iface: &str) -> Result<OwnedFd, String> {
    let fd = socket::socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::IcmpV6,
    )
    .map_err(|e| {
        format!("cannot open an ICMPv6 socket for router advertisements (needs CAP_NET_RAW): {e}")
    })?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(iface))
        .map_err(|e| e.to_string())?;
    socket::setsockopt(&fd, sockopt::Ipv6MulticastHops, &255).map_err(|e| e.to_string())?;
    socket::setsockopt(&fd, sockopt::Ipv6Ttl, &255).map_err(|e| e.to_string())?;
    socket::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(1, 0),
    )
    .map_err(|e| e.to_string())?;
    Ok(fd)
}

/// Sends advertisements on `iface` (every 10 s, and when a solicitation
/// arrives) until `shutdown`, on a thread of its own.
pub fn start(iface: &str, mac: Option<[u8; 6]>, shutdown: CancellationToken) -> Result<(), String> {
    let fd = open(iface)?;
    let index =
        nix::net::if_::if_nametoindex(iface).map_err(|e| format!("interface {iface}: {e}"))?;
    let all_nodes = SockaddrIn6::from(SocketAddrV6::new(
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        0,
        0,
        index,
    ));
    // Solicitations go to all-routers (ff02::2): the kernel joins that group
    // only when forwarding is on, so join it ourselves on this interface
    // (without it, iPXE waits for the next periodic advertisement).
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2).octets(),
        },
        ipv6mr_interface: index,
    };
    // SAFETY: a valid socket and a properly sized ipv6_mreq.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq as *const libc::ipv6_mreq as *const libc::c_void,
            std::mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(
            "cannot join all-routers (ff02::2) on {iface}: {}; answering only every {} s",
            std::io::Error::last_os_error(),
            PERIOD.as_secs()
        );
    }
    let packet = advertisement(mac);
    std::thread::Builder::new()
        .name("rackboot-ra".into())
        .spawn(move || {
            let mut last = Instant::now() - PERIOD;
            let mut buf = [0u8; 1500];
            while !shutdown.is_cancelled() {
                if last.elapsed() >= PERIOD {
                    // Fails while the link-local address is still tentative: retried.
                    let _ = socket::sendto(fd.as_raw_fd(), &packet, &all_nodes, MsgFlags::empty());
                    last = Instant::now();
                }
                match socket::recvfrom::<SockaddrIn6>(fd.as_raw_fd(), &mut buf) {
                    Ok((n, Some(from))) if n >= 1 && buf[0] == ROUTER_SOLICITATION => {
                        tracing::debug!(from = %from.ip(), "router solicitation: advertising");
                        let _ =
                            socket::sendto(fd.as_raw_fd(), &packet, &all_nodes, MsgFlags::empty());
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_advertisement_claims_no_route_and_no_prefix() {
        let p = super::advertisement(Some([0x52, 0x54, 0, 0, 0, 1]));
        assert_eq!(p[0], 134);
        assert_eq!(&p[6..8], &[0, 0], "router lifetime 0");
        assert_eq!(p.len(), 16 + 8, "only the link-layer address option");
    }
}
