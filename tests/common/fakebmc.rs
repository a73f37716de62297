//! A farm of fake IPMI 2.0 BMCs for benchmarks and the lab: one process,
//! one UDP socket per BMC, RMCP+ with cipher suites 3 and 17, user `admin` /
//! password `password`. Answers Get Channel Authentication Capabilities,
//! Open Session, RAKP 1/3, Set Session Privilege Level, Close Session, Get
//! Device ID, Get Chassis Status, Chassis Control and System Boot Options
//! parameter 5. ipmitool works against it (`ipmitool -I lanplus -C 3 -H ADDR
//! -p PORT -U admin -P password chassis power status`).
//!
//! It exists because pyghmi's BMC serves ~30 sessions/s and stops answering
//! after ~2,500 calls, which makes it the bottleneck of any benchmark of a
//! fast client (see ../shared/lab). It is test equipment, not part of the
//! daemon.
//!
//! Shared by the tests (`mod common`) and `examples/fakebmc.rs` (the farm
//! process the benchmarks start).
#![allow(dead_code)]

use rackboot::foundation::ipmi::crypto::{user_key, CipherSuite, Exchange, SessionKeys};
use rackboot::foundation::ipmi::packet::{self, payload};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

const USER: &[u8] = b"admin";
const PASSWORD: &str = "password";
const MAX_SESSIONS: usize = 16;

struct Pending {
    suite: CipherSuite,
    console_sid: u32,
    rm: [u8; 16],
    rc: [u8; 16],
    role: u8,
    keys: Option<SessionKeys>,
    out_seq: u32,
}

#[derive(Default)]
struct Bmc {
    /// The BMC key Kg, if set (else Kuid keys the session).
    kg: Option<Vec<u8>>,
    power: bool,
    boot: [u8; 2],
    sessions: HashMap<u32, Pending>,
    next_sid: u32,
}

fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x)).wrapping_neg()
}

/// (netfn, rq_seq, cmd, data) of a request message.
fn parse_request(m: &[u8]) -> Option<(u8, u8, u8, Vec<u8>)> {
    if m.len() < 7 || checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return None;
    }
    Some((m[1] >> 2, m[4] >> 2, m[5], m[6..m.len() - 1].to_vec()))
}

fn response(netfn: u8, rq_seq: u8, cmd: u8, cc: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![0x81, (netfn + 1) << 2];
    m.push(checksum(&m));
    let s = m.len();
    m.extend_from_slice(&[0x20, rq_seq << 2, cmd, cc]);
    m.extend_from_slice(data);
    m.push(checksum(&m[s..]));
    m
}

fn suite_of(auth: u8, integrity: u8) -> Option<CipherSuite> {
    match (auth, integrity) {
        (0x01, 0x01) => Some(CipherSuite::Three),
        (0x03, 0x04) => Some(CipherSuite::Seventeen),
        _ => None,
    }
}

const CAPS: [u8; 8] = [0x01, 0x80 | 0x04, 0x04, 0x02, 0, 0, 0, 0];

impl Bmc {
    fn handle(&mut self, d: &[u8], guid: [u8; 16]) -> Option<Vec<u8>> {
        if d.len() > 4 && d[4] == 0x00 {
            let m = packet::parse_v15(d).ok()?;
            let (netfn, seq, cmd, _) = parse_request(m)?;
            let cc = if (netfn, cmd) == (0x06, 0x38) {
                0
            } else {
                0xC1
            };
            return Some(packet::v15_packet(&response(
                netfn,
                seq,
                cmd,
                cc,
                if cc == 0 { &CAPS } else { &[] },
            )));
        }
        let head = packet::parse_v20(d, None);
        match head.as_ref().map(|v| v.payload_type) {
            Ok(payload::OPEN_SESSION_REQUEST) => {
                let p = head.ok()?.payload;
                if p.len() < 32 {
                    return None;
                }
                let console_sid = u32::from_le_bytes(p[4..8].try_into().ok()?);
                let mut r = vec![p[0], 0, 4, 0];
                r.extend_from_slice(&console_sid.to_le_bytes());
                let suite = suite_of(p[12], p[20]).filter(|_| p[28] == 0x01);
                match suite {
                    Some(suite) if self.sessions.len() < MAX_SESSIONS => {
                        self.next_sid = self.next_sid.wrapping_add(1).max(1);
                        let sid = self.next_sid;
                        r.extend_from_slice(&sid.to_le_bytes());
                        r.extend_from_slice(&p[8..32]);
                        self.sessions.insert(
                            sid,
                            Pending {
                                suite,
                                console_sid,
                                rm: [0; 16],
                                rc: rand::random(),
                                role: 0,
                                keys: None,
                                out_seq: 0,
                            },
                        );
                    }
                    Some(_) => r[1] = 0x01, // insufficient resources
                    None => r[1] = 0x11,    // no matching integrity/cipher
                }
                if r[1] != 0 {
                    r.truncate(8);
                }
                Some(packet::v20_packet(
                    payload::OPEN_SESSION_RESPONSE,
                    0,
                    0,
                    &r,
                    None,
                    [0; 16],
                ))
            }
            Ok(payload::RAKP1) => {
                let p = head.ok()?.payload;
                if p.len() < 28 {
                    return None;
                }
                let sid = u32::from_le_bytes(p[4..8].try_into().ok()?);
                let user = p.get(28..28 + p[27] as usize)?.to_vec();
                let s = self.sessions.get_mut(&sid)?;
                s.rm.copy_from_slice(&p[8..24]);
                s.role = p[24];
                let mut r = vec![p[0], 0, 0, 0];
                r.extend_from_slice(&s.console_sid.to_le_bytes());
                if user != USER {
                    r[1] = 0x0D; // unauthorized name
                    self.sessions.remove(&sid);
                    return Some(packet::v20_packet(payload::RAKP2, 0, 0, &r, None, [0; 16]));
                }
                let key = user_key(PASSWORD);
                let x = Exchange {
                    suite: s.suite,
                    user_key: &key,
                    bmc_key: None,
                    console_session_id: s.console_sid,
                    bmc_session_id: sid,
                    console_random: s.rm,
                    bmc_random: s.rc,
                    bmc_guid: guid,
                    role: s.role,
                    user: USER,
                };
                r.extend_from_slice(&s.rc);
                r.extend_from_slice(&guid);
                r.extend_from_slice(&x.rakp2_code());
                Some(packet::v20_packet(payload::RAKP2, 0, 0, &r, None, [0; 16]))
            }
            Ok(payload::RAKP3) => {
                let p = head.ok()?.payload;
                if p.len() < 8 {
                    return None;
                }
                let sid = u32::from_le_bytes(p[4..8].try_into().ok()?);
                let s = self.sessions.get_mut(&sid)?;
                let key = user_key(PASSWORD);
                let x = Exchange {
                    suite: s.suite,
                    user_key: &key,
                    bmc_key: None,
                    console_session_id: s.console_sid,
                    bmc_session_id: sid,
                    console_random: s.rm,
                    bmc_random: s.rc,
                    bmc_guid: guid,
                    role: s.role,
                    user: USER,
                };
                let mut r = vec![p[0], 0, 0, 0];
                r.extend_from_slice(&s.console_sid.to_le_bytes());
                if p.get(8..) != Some(&x.rakp3_code()[..]) {
                    r[1] = 0x0F;
                    self.sessions.remove(&sid);
                    return Some(packet::v20_packet(payload::RAKP4, 0, 0, &r, None, [0; 16]));
                }
                let x = Exchange {
                    bmc_key: self.kg.as_deref(),
                    ..x
                };
                let sik = x.sik();
                r.extend_from_slice(&x.rakp4_icv(&sik));
                s.keys = Some(SessionKeys::derive(s.suite, &sik));
                Some(packet::v20_packet(payload::RAKP4, 0, 0, &r, None, [0; 16]))
            }
            Err(packet::PacketError::Unprotected) => {
                // A protected IPMI message: find its session by id.
                let sid = u32::from_le_bytes(d.get(6..10)?.try_into().ok()?);
                let s = self.sessions.get_mut(&sid)?;
                let keys = s.keys.clone()?;
                let v = packet::parse_v20(d, Some(&keys)).ok()?;
                let (netfn, seq, cmd, data) = parse_request(&v.payload)?;
                let console_sid = s.console_sid;
                s.out_seq += 1;
                let out_seq = s.out_seq;
                let (cc, reply): (u8, Vec<u8>) = match (netfn, cmd) {
                    (0x06, 0x3B) => (0, vec![data.first().copied().unwrap_or(4)]),
                    (0x06, 0x3C) => {
                        self.sessions.remove(&sid);
                        (0, vec![])
                    }
                    (0x06, 0x01) => (
                        0,
                        vec![
                            0x20, 0x01, 0x01, 0x00, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x02, 0x0f,
                        ],
                    ),
                    (0x06, 0x38) => (0, CAPS.to_vec()),
                    (0x00, 0x01) => (0, vec![u8::from(self.power), 0, 0, 0]),
                    (0x00, 0x02) => match data.first() {
                        Some(0) | Some(5) => {
                            self.power = false;
                            (0, vec![])
                        }
                        Some(1) | Some(2) | Some(3) => {
                            self.power = true;
                            (0, vec![])
                        }
                        _ => (0xCC, vec![]),
                    },
                    (0x00, 0x08) => {
                        if data.first() == Some(&5) && data.len() >= 3 {
                            self.boot = [data[1], data[2]];
                        }
                        (0, vec![])
                    }
                    (0x00, 0x09) => (0, vec![0x01, 0x05, self.boot[0], self.boot[1], 0, 0, 0]),
                    _ => (0xC1, vec![]),
                };
                let m = response(netfn, seq, cmd, cc, &reply);
                Some(packet::v20_packet(
                    payload::IPMI,
                    console_sid,
                    out_seq,
                    &m,
                    Some(&keys),
                    rand::random(),
                ))
            }
            _ => None,
        }
    }
}

/// Where the BMCs of a farm listen.
pub fn addresses(
    count: u32,
    addr: Ipv4Addr,
    port: u16,
    spread_ips: Option<u32>,
) -> Vec<SocketAddr> {
    (0..count)
        .map(|i| match spread_ips {
            Some(stride) => SocketAddr::from((Ipv4Addr::from(u32::from(addr) + i * stride), port)),
            None => SocketAddr::from((addr, port + i as u16)),
        })
        .collect()
}

/// Binds every address, then serves them until the process ends. Returns
/// once all are bound (the serving runs in spawned tasks), with a counter of
/// replies sent.
pub async fn serve(at: Vec<SocketAddr>) -> std::io::Result<Arc<AtomicU64>> {
    serve_with_key(at, None).await
}

/// Like [`serve`], with a BMC key Kg on every BMC.
pub async fn serve_with_key(
    at: Vec<SocketAddr>,
    kg: Option<Vec<u8>>,
) -> std::io::Result<Arc<AtomicU64>> {
    let served = Arc::new(AtomicU64::new(0));
    for a in at {
        let sock = UdpSocket::bind(a).await?;
        let served = served.clone();
        let kg = kg.clone();
        tokio::spawn(async move {
            let mut bmc = Bmc {
                kg,
                ..Bmc::default()
            };
            let guid: [u8; 16] = rand::random();
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = bmc.handle(&buf[..n], guid) {
                    served.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        });
    }
    Ok(served)
}

/// Starts a farm on its own thread and runtime (for tests); returns when
/// every BMC is bound.
pub fn spawn(at: Vec<SocketAddr>) {
    spawn_with_key(at, None)
}

/// Like [`spawn`], with a BMC key Kg on every BMC.
pub fn spawn_with_key(at: Vec<SocketAddr>, kg: Option<Vec<u8>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let r = serve_with_key(at, kg).await.map(|_| ());
            let _ = tx.send(r);
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap().expect("fake BMC farm bound");
}
