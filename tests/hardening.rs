//! The daemon under attack, as issue 11 tried it (the figures — how fast
//! the well-behaved client still is, how big the tables stay — come from
//! `cargo bench --bench flood`; here: what a user sees):
//! - the API socket: idle and dribbling connections cannot lock it out
//!   (the one idle the longest, of the same uid when that uid is at its
//!   share, is closed for a new one; a head sent a byte at a time is cut
//!   off); password guessing is refused fast with 1300
//!   and logged at WARN with the user and the peer, while the right
//!   password is answered;
//! - the PXE listeners, from a client namespace: 200 idle HTTP connections
//!   and a plain GET still answers (the oldest idle closed first); 64
//!   stalled TFTP read requests and a real read request still gets its
//!   file; DISCOVER and DECLINE floods from random MACs: a node registered
//!   during the flood gets an address, a DECLINE from anyone but the holder
//!   changes nothing, and the lease table stays within the range.

mod common;

#[path = "../benches/common/attack.rs"]
mod attack;

use common::netns::{run_in, Netns};
use common::Daemon;
use dhcproto::v4::MessageType;
use serde_json::json;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Waits (at most `within`) for `cond`.
fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

#[test]
fn the_api_holds_under_idle_connections_and_password_guessing() {
    let d = Daemon::start_with(Some("[api]\nmax_connections = 16\n"), |_| {});
    d.ok(json!({"action": "DescribeUsers"}));
    let sock = d.socket();

    // 7 idle connections and one sending its head a byte at a time: the
    // share of one uid (a quarter of 16, at least 8) is full.
    let held = attack::hold_unix(&sock, 7, Duration::from_secs(10));
    assert_eq!(held.len(), 7);
    let mut dribbler = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    dribbler.write_all(b"P").unwrap();
    // A well-behaved call still answers: the connection idle the longest
    // (the first) was closed for it, the others were not.
    let r = d.ok(json!({"action": "DescribeBMNodes"}));
    assert_eq!(r["total_count"], 0);
    assert!(
        wait_for(Duration::from_secs(10), || attack::closed(&held[0])),
        "the oldest idle connection was not closed"
    );
    assert_eq!(
        attack::still_open(&held[1..]),
        6,
        "only the oldest idle connection goes"
    );
    // The dribbler is cut off (head timeout) however it keeps sending.
    let cut = wait_for(Duration::from_secs(40), || {
        let _ = dribbler.write_all(b"O");
        attack::closed(&dribbler)
    });
    assert!(cut, "a head sent a byte at a time kept its connection");

    // Password guessing from 6 connections at once (within the uid's
    // share, which the right request below shares: the same uid): after a
    // few failures the guesser is refused at once with 1300 and the time to
    // wait.
    let guesses: Vec<_> = (0..6)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|_| {
                        attack::api_call(
                            &sock,
                            &json!({"action": "DescribeUsers", "USER_ID": "admin", "PASSWORD": "guess-guess"}),
                        )
                        .map(|(v, _)| v["ret_code"].as_i64().unwrap_or(0))
                        .unwrap_or(0)
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    // The right password is answered while they run.
    let r = d.ok(json!({"action": "DescribeUsers"}));
    assert_eq!(r["total_count"], 1);
    let codes: Vec<i64> = guesses
        .into_iter()
        .flat_map(|g| g.join().unwrap())
        .collect();
    assert!(codes.iter().all(|c| *c == 1200 || *c == 1300), "{codes:?}");
    assert!(codes.contains(&1300), "no guess was held back: {codes:?}");
    let busy = attack::api_call(
        &sock,
        &json!({"action": "DescribeUsers", "USER_ID": "admin", "PASSWORD": "guess-guess"}),
    )
    .unwrap()
    .0;
    assert_eq!(busy["ret_code"], 1300, "{busy}");
    assert!(
        busy["message"]
            .as_str()
            .unwrap()
            .starts_with("busy, retry in"),
        "{busy}"
    );
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("login failed"))
        .expect("failed logins are logged");
    assert!(
        line.contains("WARN")
            && line.contains("user=\"admin\"")
            && line.contains("peer_uid=Some(")
            && line.contains("peer_pid=Some("),
        "{line}"
    );
    assert!(!log.contains("guess-guess"), "a password reached the log");
}

#[test]
fn pxe_listeners_hold_under_floods() {
    let srv = Netns::new("hsrv");
    let cli = Netns::new("hcli");
    srv.ip(&[
        "link", "add", "rb-srv", "type", "veth", "peer", "name", "cli0", "netns", &cli.name,
    ]);
    srv.ip(&["addr", "add", "10.99.0.1/24", "dev", "rb-srv"]);
    srv.ip(&["link", "set", "rb-srv", "up"]);
    let sources: Vec<IpAddr> = (2..18u8).map(|i| IpAddr::from([10, 99, 0, i])).collect();
    for s in &sources {
        cli.ip(&["addr", "add", &format!("{s}/24"), "dev", "cli0"]);
    }
    cli.ip(&["link", "set", "cli0", "up"]);
    let files = tempfile::tempdir().unwrap();
    let boot: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(files.path().join("undionly.kpxe"), &boot).unwrap();
    let config = format!(
        "[dhcp]\ninterface = \"rb-srv\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.131\"\n\
         discovery = true\nrouter_advertisement = false\n[http]\nmax_connections = 64\n\
         max_connections_per_client = 16\n[boot]\nfiles_dir = \"{}\"\n",
        files.path().display()
    );
    let d = Daemon::start_in_netns(&srv.name, Some(&config), |_| {});
    let server = Ipv4Addr::new(10, 99, 0, 1);

    // HTTP: 200 idle connections from one client; a plain GET still gets
    // the whole file, and the client's oldest idle connections went first.
    let http = SocketAddr::from((server, 8080));
    let (got, first_closed, last_open) = run_in(&cli.name, move || {
        attack::raise_nofile(8192);
        let held = attack::hold_tcp(http, 200, Duration::from_secs(20));
        assert_eq!(held.len(), 200);
        let got = attack::http_get(http, "/files/undionly.kpxe").unwrap();
        let first = wait_for(Duration::from_secs(5), || attack::closed(&held[0]));
        (got, first, !attack::closed(&held[199]))
    });
    assert_eq!((got.0, got.1), (200, 100_000));
    assert!(
        first_closed && last_open,
        "oldest idle first: {first_closed} {last_open}"
    );

    // TFTP: every transfer slot (64) taken by requests that never
    // acknowledge (timeout=255 asked); a real request still gets its file.
    let tftp = SocketAddr::from((server, 69));
    let srcs = sources[1..].to_vec();
    let (fetched, busy) = run_in(&cli.name, move || {
        let stalled = attack::tftp_stall(tftp, "undionly.kpxe", &srcs, 64);
        assert!(
            wait_for(Duration::from_secs(10), || attack::answered(&stalled) == 64),
            "the server did not take all 64 requests"
        );
        let (bytes, _, busy) = attack::tftp_get(
            tftp,
            "undionly.kpxe",
            IpAddr::from([10, 99, 0, 2]),
            Duration::from_secs(10),
        )
        .unwrap();
        drop(stalled);
        (bytes, busy)
    });
    assert!(
        fetched == boot,
        "TFTP file differs ({} bytes, {busy} busy answers)",
        fetched.len()
    );

    // DHCP: DISCOVER and DECLINE floods from random MACs; a node
    // registered meanwhile gets an address.
    run_in(&cli.name, move || {
        attack::dhcp_flood(server, MessageType::Discover, 0, 2000, (server, 1));
        attack::dhcp_flood(
            server,
            MessageType::Decline,
            2000,
            2000,
            (Ipv4Addr::new(10, 99, 0, 100), 32),
        );
    });
    let mac = [0x52, 0x54, 0x00, 0x99, 0x00, 0x42];
    d.ok(json!({
        "action": "RegisterBMNodes", "hostname": "flood01", "os_version": "tiny-1.0", "cpu_arch": "x86_64",
        "ipmi_network_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "password",
        "pxe_network_mac_addr": "52:54:00:99:00:42",
    }));
    let (ip, again) = run_in(&cli.name, move || {
        let client = attack::DhcpClient::new("cli0", server);
        attack::dhcp_flood(server, MessageType::Discover, 10_000, 2000, (server, 1));
        let (ip, _) = client
            .lease(
                mac,
                0x4242,
                Duration::from_millis(500),
                Duration::from_secs(10),
            )
            .expect("the registered node got no address during the flood");
        // A DECLINE of its address from someone else changes nothing.
        let foreign = attack::dhcp_packet(attack::random_mac(7), MessageType::Decline, 7, Some(ip));
        client.send(&foreign);
        let (again, _) = client
            .lease(
                mac,
                0x4343,
                Duration::from_millis(500),
                Duration::from_secs(10),
            )
            .expect("renewal");
        (ip, again)
    });
    assert!((100..=131).contains(&ip.octets()[3]), "{ip}");
    assert_eq!(
        again, ip,
        "the node keeps its address after a foreign DECLINE"
    );
    // The boot timelines: the registered node's exchanges, and the last
    // flood's last DISCOVER (unregistered MACs' lines wait for the flood
    // to end, the newest kept, then reach the store).
    let last = attack::random_mac(10_000 + 1999)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    for (mac, wanted) in [("52:54:00:99:00:42", "→ ACK"), (last.as_str(), "DISCOVER")] {
        let seen = wait_for(Duration::from_secs(10), || {
            d.ok(json!({"action": "DescribeBootEvents", "mac": mac}))["event_set"]
                .to_string()
                .contains(wanted)
        });
        assert!(seen, "no {wanted} in the boot timeline of {mac}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let leases = rt.block_on(async {
        let store =
            rackboot::foundation::store::Store::open(&d.state_dir().join("rackboot.db")).unwrap();
        store.lease_count().await.unwrap()
    });
    assert!(
        leases <= 32 + rackboot::foundation::dhcp::QUARANTINE_MAX as u64,
        "{leases} lease rows"
    );
}

/// The boot timeline is bounded in all: a flood of made-up MACs is purged
/// first, oldest first, and a registered node's events stay.
#[test]
fn boot_events_stay_within_their_global_bound() {
    use rackboot::foundation::store::{BmNode, Store, EVENTS_MAX};
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&dir.path().join("rackboot.db")).unwrap();
        let mut node = BmNode::blank();
        node.node_id = "n-Jr8KE6cf".into();
        node.hostname = "web01".into();
        node.os_version = "tiny-1.0".into();
        node.cpu_arch = "x86_64".into();
        node.ipmi_address = "127.0.0.1".into();
        node.pxe_mac = "52:54:00:99:00:10".into();
        store.insert_bm_nodes(vec![node]).await.unwrap();
        store
            .record_boot_events(vec![(
                "52:54:00:99:00:10".into(),
                "dhcp",
                "DISCOVER → OFFER".into(),
            )])
            .await
            .unwrap();
        // More events than the bound, from made-up MACs, in batches as the
        // DHCP thread writes them.
        let total = EVENTS_MAX as u32 + 5_000;
        for batch in 0..(total / 1000) {
            let events = (0..1000)
                .map(|i| {
                    let n = batch * 1000 + i;
                    (
                        format!(
                            "02:5a:{:02x}:{:02x}:{:02x}:{:02x}",
                            n >> 24,
                            (n >> 16) & 255,
                            (n >> 8) & 255,
                            n & 255
                        ),
                        "dhcp",
                        "DISCOVER → OFFER".to_string(),
                    )
                })
                .collect();
            store.record_boot_events(events).await.unwrap();
            assert!(store.boot_event_count().await.unwrap() <= EVENTS_MAX as u64);
        }
        let node_events = store
            .boot_events("52:54:00:99:00:10".into(), 0, 10)
            .await
            .unwrap();
        assert_eq!(node_events.len(), 1, "the registered node's event went");
        // The newest unknown MACs' events are kept, the oldest went.
        let last = format!(
            "02:5a:00:00:{:02x}:{:02x}",
            ((total - 1) >> 8) & 255,
            (total - 1) & 255
        );
        assert_eq!(store.boot_events(last, 0, 10).await.unwrap().len(), 1);
        assert!(store
            .boot_events("02:5a:00:00:00:00".into(), 0, 10)
            .await
            .unwrap()
            .is_empty());
    });
}
