//! DHCP: decoding (dhcproto behind our guards), then both decision
//! functions — full mode over the real in-memory lease table, with a
//! registered node, a tiny range and discovery on, so that allocation,
//! reclaiming, quarantine and their caps are all reached — and ProxyDHCP on
//! both ports. The input is a series of packets (2-byte length prefixes)
//! seen in order at advancing times; the table's invariants are checked
//! after each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::foundation::dhcp::{
    decode, handle, handle_proxy, pool_size, Decision, Leases, NodeInfo, Nodes, Pool, ProxyPort,
    Settings, QUARANTINE_MAX,
};
use rackboot::foundation::firmware::BootFiles;
use rackboot::foundation::lease_table::LeaseTable;
use std::net::{Ipv4Addr, SocketAddrV4};

struct Registered;
impl Nodes for Registered {
    fn by_mac(&self, mac: &str) -> Option<NodeInfo> {
        match mac {
            "52:54:00:99:00:10" => Some(NodeInfo {
                node_id: "n-Jr8KE6cf".into(),
                fixed_address: None,
            }),
            "52:54:00:99:00:11" => Some(NodeInfo {
                node_id: "n-ACHI1x2T".into(),
                fixed_address: Some(Ipv4Addr::new(10, 99, 0, 50)),
            }),
            _ => None,
        }
    }
}

fn settings(discovery: bool) -> Settings {
    Settings {
        server: Ipv4Addr::new(10, 99, 0, 1),
        pool: Pool {
            start: Ipv4Addr::new(10, 99, 0, 100),
            end: Ipv4Addr::new(10, 99, 0, 107),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: Some(Ipv4Addr::new(10, 99, 0, 1)),
            lease_time: 3600,
        },
        files: BootFiles::default(),
        http_base: "http://10.99.0.1:8080".into(),
        discovery,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let s = settings(flags & 1 == 1);
    let mut table = LeaseTable::default();
    let mut now = 1_000_000i64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (packet, tail) = rest[2..].split_at(len);
        rest = tail;
        now += i64::from(flags >> 1);
        let Some(msg) = decode(packet) else {
            continue;
        };
        let full = handle(&msg, now, &s, &Registered, &mut table);
        if let Decision::Reply { message, .. } = &full {
            let ip = message.yiaddr();
            let in_pool = (u32::from(s.pool.start)..=u32::from(s.pool.end)).contains(&u32::from(ip));
            assert!(
                ip.is_unspecified() || in_pool || ip == Ipv4Addr::new(10, 99, 0, 50),
                "handed out {ip}"
            );
            let mut out = Vec::new();
            let _ = dhcproto::Encodable::encode(&**message, &mut dhcproto::Encoder::new(&mut out));
        }
        table.sweep(now);
        assert!(table.quarantined() <= QUARANTINE_MAX);
        // One lease per address: the range, the fixed address.
        assert!(table.len() <= pool_size(&s.pool) + 1, "{} leases", table.len());
        let _ = handle_proxy(&msg, ProxyPort::Dhcp, &s, &Registered);
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 7), 68);
        let _ = handle_proxy(&msg, ProxyPort::BootServer { from }, &s, &Registered);
    }
});
