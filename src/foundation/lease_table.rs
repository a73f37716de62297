//! The DHCP lease table in memory ([`LeaseTable`], the responder's
//! [`Leases`]): indexed by MAC, by address and by expiry, counting
//! quarantined addresses and what discovery clients hold, and remembering
//! which rows the store must change. Offers live in memory only (RFC 2131
//! lets a server forget them); bound leases, quarantines and removals are
//! what the caller writes before it answers.

use super::dhcp::{Lease, Leases, Pool};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

/// Leases, indexed both ways and by expiry.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: HashMap<String, Lease>,
    by_ip: HashMap<Ipv4Addr, String>,
    /// (expires, mac) of every lease: sweeping and "oldest first".
    by_expiry: BTreeSet<(i64, String)>,
    /// (expires, mac) of quarantined addresses.
    quarantine: BTreeSet<(i64, String)>,
    /// (expires, mac) of discovery clients' offers (not bound).
    discovery_offers: BTreeSet<(i64, String)>,
    /// How many leases discovery clients hold (offers included).
    discovery: usize,
    /// MACs whose row in the store may have to change.
    touched: HashSet<String>,
    /// Where the search for a free address resumes (allocation stays O(1)
    /// while the range has never-used addresses, whatever the lease count).
    cursor: u32,
}

impl LeaseTable {
    /// A table holding `leases` (as loaded from the store).
    pub fn new(leases: impl IntoIterator<Item = Lease>) -> LeaseTable {
        let mut t = LeaseTable::default();
        for l in leases {
            t.insert(l);
        }
        t.touched.clear();
        t
    }

    /// How many leases (offers and quarantines included) the table holds.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn insert(&mut self, lease: Lease) {
        let key = (lease.expires, lease.mac.clone());
        self.by_expiry.insert(key.clone());
        if lease.is_quarantine() {
            self.quarantine.insert(key.clone());
        }
        if lease.discovery {
            self.discovery += 1;
            if !lease.bound {
                self.discovery_offers.insert(key);
            }
        }
        self.by_ip.insert(lease.ip, lease.mac.clone());
        self.touched.insert(lease.mac.clone());
        self.leases.insert(lease.mac.clone(), lease);
    }

    fn take(&mut self, mac: &str) -> Option<Lease> {
        let l = self.leases.remove(mac)?;
        let key = (l.expires, l.mac.clone());
        self.by_expiry.remove(&key);
        self.quarantine.remove(&key);
        self.discovery_offers.remove(&key);
        if l.discovery {
            self.discovery -= 1;
        }
        if self.by_ip.get(&l.ip).is_some_and(|m| m == mac) {
            self.by_ip.remove(&l.ip);
        }
        self.touched.insert(mac.to_string());
        Some(l)
    }

    /// Drops every lease that expired before `now` (the store's rows of
    /// bound ones are deleted with the next [`LeaseTable::changes`]).
    pub fn sweep(&mut self, now: i64) {
        while let Some((expires, mac)) = self.by_expiry.first().cloned() {
            if expires > now {
                break;
            }
            self.take(&mac);
        }
    }

    /// What the store must write, and forgets it: per MAC changed, its
    /// bound lease (or quarantine) to insert or replace, or `None` to
    /// delete its row. Offers are not written.
    pub fn changes(&mut self) -> Vec<(String, Option<Lease>)> {
        let touched = std::mem::take(&mut self.touched);
        touched
            .into_iter()
            .filter_map(|mac| match self.leases.get(&mac) {
                Some(l) if l.bound => Some((mac, Some(l.clone()))),
                // An offer: the row of an older bound lease of this MAC
                // stays until the client is bound or the lease is swept.
                Some(_) => None,
                None => Some((mac, None)),
            })
            .collect()
    }
}

impl Leases for LeaseTable {
    fn by_mac(&self, mac: &str) -> Option<Lease> {
        self.leases.get(mac).cloned()
    }

    fn by_ip(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.by_ip
            .get(&ip)
            .and_then(|mac| self.leases.get(mac))
            .cloned()
    }

    fn put(&mut self, lease: Lease) {
        // One lease per address: a new holder replaces the old one.
        if let Some(old) = self
            .by_ip
            .get(&lease.ip)
            .filter(|m| **m != lease.mac)
            .cloned()
        {
            self.take(&old);
        }
        self.take(&lease.mac);
        self.insert(lease);
    }

    fn remove(&mut self, mac: &str) {
        self.take(mac);
        self.touched.insert(mac.to_string());
    }

    fn free_address(&mut self, pool: &Pool, mac: &str, now: i64) -> Option<Ipv4Addr> {
        let (start, end) = (u32::from(pool.start), u32::from(pool.end));
        if end < start {
            return None;
        }
        let from = self.cursor.clamp(start, end);
        let free = |ip: u32| {
            let ip = Ipv4Addr::from(ip);
            match self.by_ip.get(&ip).and_then(|m| self.leases.get(m)) {
                None => true,
                Some(l) => l.expires <= now || l.mac == mac,
            }
        };
        let found = (from..=end).chain(start..from).find(|ip| free(*ip))?;
        self.cursor = found.saturating_add(1);
        Some(Ipv4Addr::from(found))
    }

    fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    fn oldest_quarantine(&self) -> Option<Lease> {
        let (_, mac) = self.quarantine.first()?;
        self.leases.get(mac).cloned()
    }

    fn discovery_held(&self, now: i64) -> usize {
        // Expired offers are not swept between two packets of a batch:
        // they do not count.
        let expired_offers = self
            .discovery_offers
            .iter()
            .take_while(|(e, _)| *e <= now)
            .count();
        self.discovery - expired_offers
    }

    fn reclaimable(&self, _now: i64) -> Option<Ipv4Addr> {
        let (_, mac) = self.discovery_offers.first()?;
        self.leases.get(mac).map(|l| l.ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::dhcp::{
        handle, message_type, Decision, NodeInfo, Nodes, Settings, QUARANTINE_MAX,
    };
    use crate::foundation::firmware::BootFiles;
    use dhcproto::v4::{DhcpOption, Message, MessageType};

    struct One(&'static str);
    impl Nodes for One {
        fn by_mac(&self, mac: &str) -> Option<NodeInfo> {
            (mac == self.0).then(|| NodeInfo {
                node_id: "n-Jr8KE6cf".into(),
                fixed_address: None,
            })
        }
    }

    fn settings(end: u8) -> Settings {
        Settings {
            server: Ipv4Addr::new(10, 99, 0, 1),
            pool: Pool {
                start: Ipv4Addr::new(10, 99, 0, 100),
                end: Ipv4Addr::new(10, 99, 0, end),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                router: None,
                lease_time: 3600,
            },
            files: BootFiles::default(),
            http_base: "http://10.99.0.1:8080".into(),
            discovery: true,
        }
    }

    fn packet(mac: [u8; 6], kind: MessageType, ip: Option<Ipv4Addr>) -> Message {
        let mut m = Message::new_with_id(
            9,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut().insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ));
        if let Some(ip) = ip {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 99, 0, 1)));
        }
        m
    }

    fn offered(d: Decision) -> Option<Ipv4Addr> {
        match d {
            Decision::Reply { message, .. }
                if message_type(&message) == Some(MessageType::Offer) =>
            {
                Some(message.yiaddr())
            }
            _ => None,
        }
    }

    fn random_mac(i: u32) -> [u8; 6] {
        let b = i.to_be_bytes();
        [0x02, 0xaa, b[0], b[1], b[2], b[3]]
    }

    const NODE: [u8; 6] = [0x52, 0x54, 0, 0x99, 0, 0x10];

    #[test]
    fn a_registered_node_gets_an_address_during_a_discover_flood() {
        let s = settings(131); // 32 addresses
        let node = One("52:54:00:99:00:10");
        let mut t = LeaseTable::default();
        let mut answered = 0;
        for i in 0..5_000u32 {
            let d = handle(
                &packet(random_mac(i), MessageType::Discover, None),
                1000,
                &s,
                &node,
                &mut t,
            );
            answered += usize::from(offered(d).is_some());
        }
        // Discovery clients got the range less the registered nodes' reserve.
        assert_eq!(answered, 32 - 8, "offers to unknown clients");
        assert_eq!(t.discovery_held(1000), 24);
        let ip = offered(handle(
            &packet(NODE, MessageType::Discover, None),
            1000,
            &s,
            &node,
            &mut t,
        ))
        .expect("the registered node is offered an address");
        let d = handle(
            &packet(NODE, MessageType::Request, Some(ip)),
            1001,
            &s,
            &node,
            &mut t,
        );
        match d {
            Decision::Reply { message, .. } => {
                assert_eq!(message_type(&message), Some(MessageType::Ack));
                assert_eq!(message.yiaddr(), ip);
            }
            other => panic!("{other:?}"),
        }
        // With every address offered to unknown clients, the node still
        // gets one: it takes over the oldest offer.
        let mut full = LeaseTable::default();
        for k in 0..32u32 {
            full.put(Lease {
                mac: format!("02:bb:00:00:00:{k:02x}"),
                ip: Ipv4Addr::from(u32::from(s.pool.start) + k),
                expires: 1005 + i64::from(k),
                bound: false,
                discovery: true,
            });
        }
        let got = offered(handle(
            &packet(NODE, MessageType::Discover, None),
            1000,
            &s,
            &node,
            &mut full,
        ));
        assert_eq!(got, Some(s.pool.start));
        // Unknown clients' leases are short.
        let mut t = LeaseTable::default();
        let mac = random_mac(7);
        let ip = offered(handle(
            &packet(mac, MessageType::Discover, None),
            1000,
            &s,
            &node,
            &mut t,
        ))
        .unwrap();
        let _ = handle(
            &packet(mac, MessageType::Request, Some(ip)),
            1000,
            &s,
            &node,
            &mut t,
        );
        let l = t.by_mac("02:aa:00:00:00:07").unwrap();
        assert!(l.bound && l.discovery && l.expires == 1000 + 300, "{l:?}");
    }

    #[test]
    fn declines_count_only_from_the_holder_of_an_address_of_the_range() {
        let s = settings(131);
        let node = One("52:54:00:99:00:10");
        let mut t = LeaseTable::default();
        let ip = offered(handle(
            &packet(NODE, MessageType::Discover, None),
            1000,
            &s,
            &node,
            &mut t,
        ))
        .unwrap();
        let _ = handle(
            &packet(NODE, MessageType::Request, Some(ip)),
            1000,
            &s,
            &node,
            &mut t,
        );
        // Someone else declines the node's address, or one outside the range.
        for (mac, what) in [
            (random_mac(1), ip),
            (
                [0x52, 0x54, 0, 0x99, 0, 0x10],
                Ipv4Addr::new(10, 99, 0, 120),
            ),
            ([0x52, 0x54, 0, 0x99, 0, 0x10], Ipv4Addr::new(8, 8, 8, 8)),
            (random_mac(2), Ipv4Addr::new(192, 168, 1, 1)),
        ] {
            let d = handle(
                &packet(mac, MessageType::Decline, Some(what)),
                1001,
                &s,
                &node,
                &mut t,
            );
            assert!(matches!(d, Decision::Ignore(_)));
        }
        assert_eq!(t.quarantined(), 0);
        assert_eq!(t.len(), 1, "no lease rows from foreign declines");
        assert!(t
            .by_mac("52:54:00:99:00:10")
            .is_some_and(|l| l.ip == ip && l.bound));
        // The holder declines: the address is quarantined, the node gets another.
        let _ = handle(
            &packet(NODE, MessageType::Decline, Some(ip)),
            1002,
            &s,
            &node,
            &mut t,
        );
        assert_eq!(t.quarantined(), 1);
        let other = offered(handle(
            &packet(NODE, MessageType::Discover, None),
            1003,
            &s,
            &node,
            &mut t,
        ))
        .unwrap();
        assert_ne!(other, ip);
        // Quarantines are capped: a client declining over and over never
        // keeps more than QUARANTINE_MAX addresses out of the pool.
        let big = settings(250);
        let mut t = LeaseTable::default();
        for i in 0..500u32 {
            let mac = random_mac(i);
            let Some(ip) = offered(handle(
                &packet(mac, MessageType::Discover, None),
                1000,
                &big,
                &node,
                &mut t,
            )) else {
                continue;
            };
            let _ = handle(
                &packet(mac, MessageType::Request, Some(ip)),
                1000,
                &big,
                &node,
                &mut t,
            );
            let _ = handle(
                &packet(mac, MessageType::Decline, Some(ip)),
                1000,
                &big,
                &node,
                &mut t,
            );
        }
        assert_eq!(t.quarantined(), QUARANTINE_MAX);
        assert!(t.len() <= dhcp_pool_size(&big));
    }

    fn dhcp_pool_size(s: &Settings) -> usize {
        crate::foundation::dhcp::pool_size(&s.pool)
    }

    fn lease(mac: &str, ip: [u8; 4], expires: i64, bound: bool, discovery: bool) -> Lease {
        Lease {
            mac: mac.into(),
            ip: Ipv4Addr::from(ip),
            expires,
            bound,
            discovery,
        }
    }

    #[test]
    fn indexes_follow_puts_removes_and_sweeps() {
        let mut t = LeaseTable::new([lease("a", [10, 0, 0, 1], 100, true, false)]);
        assert!(t.changes().is_empty(), "loaded leases are not written back");
        t.put(lease("b", [10, 0, 0, 2], 20, false, true));
        t.put(lease("c", [10, 0, 0, 3], 30, false, true));
        assert_eq!(t.discovery_held(0), 2);
        assert_eq!(t.discovery_held(25), 1, "an expired offer does not count");
        assert_eq!(t.reclaimable(0), Some(Ipv4Addr::new(10, 0, 0, 2)));
        // Offers are not written; a bound lease is.
        assert!(t.changes().is_empty());
        t.put(lease("b", [10, 0, 0, 2], 50, true, true));
        assert_eq!(
            t.changes(),
            vec![("b".into(), Some(lease("b", [10, 0, 0, 2], 50, true, true)))]
        );
        assert_eq!(t.reclaimable(0), Some(Ipv4Addr::new(10, 0, 0, 3)));
        // A new holder of an address replaces the old one (deleted).
        t.put(lease("d", [10, 0, 0, 2], 60, true, false));
        let mut ch = t.changes();
        ch.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(ch[0], ("b".into(), None));
        assert_eq!(t.discovery_held(0), 1);
        t.put(Lease::quarantine(Ipv4Addr::new(10, 0, 0, 9), 40));
        assert_eq!(t.quarantined(), 1);
        assert_eq!(
            t.oldest_quarantine().unwrap().ip,
            Ipv4Addr::new(10, 0, 0, 9)
        );
        t.sweep(45);
        assert_eq!(t.quarantined(), 0);
        assert_eq!(t.discovery_held(0), 0, "c's offer expired at 30");
        assert_eq!(t.len(), 2);
        assert!(t.by_ip(Ipv4Addr::new(10, 0, 0, 9)).is_none());
    }
}
