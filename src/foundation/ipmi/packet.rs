//! IPMI over LAN wire format: the RMCP header, IPMI 1.5 session-less
//! packets (for Get Channel Authentication Capabilities), IPMI 2.0 RMCP+
//! session packets (integrity trailer, AES payloads) and the IPMI request
//! and response messages inside them with their checksums. Encoding and
//! bounds-checked decoding only; no I/O, no panics on any input.

use super::crypto::SessionKeys;

/// RMCP version 1.0, reserved, sequence 0xFF (no RMCP ACK), class IPMI.
pub const RMCP_IPMI: [u8; 4] = [0x06, 0x00, 0xFF, 0x07];

/// RMCP+ payload types.
pub mod payload {
    pub const IPMI: u8 = 0x00;
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    pub const RAKP1: u8 = 0x12;
    pub const RAKP2: u8 = 0x13;
    pub const RAKP3: u8 = 0x14;
    pub const RAKP4: u8 = 0x15;
}

const AUTH_TYPE_NONE: u8 = 0x00;
const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;
const ENCRYPTED: u8 = 0x80;
const AUTHENTICATED: u8 = 0x40;
/// The requester's software id (remote console), as ipmitool uses.
const RQ_ADDR: u8 = 0x81;
/// The BMC's slave address.
const RS_ADDR: u8 = 0x20;

/// Why a datagram was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("truncated packet")]
    Truncated,
    #[error("not an RMCP IPMI packet")]
    NotIpmi,
    #[error("unexpected authentication type {0:#04x}")]
    AuthType(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("integrity check failed")]
    Integrity,
    #[error("payload cannot be decrypted")]
    Decrypt,
    #[error("packet is not authenticated/encrypted as the session requires")]
    Unprotected,
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// An IPMI request message: rsAddr, netFn/rsLUN, checksum, rqAddr,
/// rqSeq/rqLUN, cmd, data, checksum.
pub fn ipmi_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![RS_ADDR, netfn << 2];
    m.push(checksum(&m));
    let start = m.len();
    m.extend_from_slice(&[RQ_ADDR, (rq_seq & 0x3f) << 2, cmd]);
    m.extend_from_slice(data);
    m.push(checksum(&m[start..]));
    m
}

/// A decoded IPMI response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiResponse {
    /// The response netFn (request netFn + 1).
    pub netfn: u8,
    pub cmd: u8,
    pub rq_seq: u8,
    pub completion_code: u8,
    pub data: Vec<u8>,
}

/// Decodes an IPMI response message, checking both checksums.
pub fn parse_ipmi_response(m: &[u8]) -> Result<IpmiResponse, PacketError> {
    if m.len() < 8 {
        return Err(PacketError::Truncated);
    }
    if checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return Err(PacketError::Checksum);
    }
    Ok(IpmiResponse {
        netfn: m[1] >> 2,
        cmd: m[5],
        rq_seq: m[4] >> 2,
        completion_code: m[6],
        data: m[7..m.len() - 1].to_vec(),
    })
}

/// An IPMI 1.5 packet without a session (auth type none).
pub fn v15_packet(message: &[u8]) -> Vec<u8> {
    let mut p = RMCP_IPMI.to_vec();
    p.push(AUTH_TYPE_NONE);
    p.extend_from_slice(&[0; 8]); // session sequence and id
    p.push(message.len() as u8);
    p.extend_from_slice(message);
    p
}

/// The message inside a session-less IPMI 1.5 packet.
pub fn parse_v15(d: &[u8]) -> Result<&[u8], PacketError> {
    if d.len() < 14 {
        return Err(PacketError::Truncated);
    }
    if d[..4] != RMCP_IPMI {
        return Err(PacketError::NotIpmi);
    }
    if d[4] != AUTH_TYPE_NONE {
        return Err(PacketError::AuthType(d[4]));
    }
    let len = d[13] as usize;
    d.get(14..14 + len).ok_or(PacketError::Truncated)
}

/// A decoded RMCP+ packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V20 {
    pub payload_type: u8,
    pub session_id: u32,
    pub seq: u32,
    /// Decrypted when the packet was encrypted.
    pub payload: Vec<u8>,
}

/// An RMCP+ packet. With `keys`, the payload is encrypted (with `iv`) and
/// an integrity trailer is added.
pub fn v20_packet(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<&SessionKeys>,
    iv: [u8; 16],
) -> Vec<u8> {
    let mut p = RMCP_IPMI.to_vec();
    p.push(AUTH_TYPE_RMCP_PLUS);
    let body = match keys {
        Some(k) => {
            p.push(payload_type | ENCRYPTED | AUTHENTICATED);
            k.encrypt(payload, iv)
        }
        None => {
            p.push(payload_type);
            payload.to_vec()
        }
    };
    p.extend_from_slice(&session_id.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(body.len() as u16).to_le_bytes());
    p.extend_from_slice(&body);
    if let Some(k) = keys {
        // Integrity pad: from the auth type byte to the next-header byte is a
        // multiple of four.
        let covered_so_far = p.len() - 4 + 2; // + pad length + next header
        let pad = (4 - covered_so_far % 4) % 4;
        p.extend(std::iter::repeat_n(0xFF, pad));
        p.push(pad as u8);
        p.push(0x07);
        let code = k.auth_code(&p[4..]);
        p.extend_from_slice(&code);
    }
    p
}

/// Decodes an RMCP+ packet. With `keys` (an active session), the packet
/// must be authenticated and encrypted: its AuthCode is checked and its
/// payload decrypted.
pub fn parse_v20(d: &[u8], keys: Option<&SessionKeys>) -> Result<V20, PacketError> {
    if d.len() < 16 {
        return Err(PacketError::Truncated);
    }
    if d[..4] != RMCP_IPMI {
        return Err(PacketError::NotIpmi);
    }
    if d[4] != AUTH_TYPE_RMCP_PLUS {
        return Err(PacketError::AuthType(d[4]));
    }
    let kind = d[5];
    let session_id = u32::from_le_bytes([d[6], d[7], d[8], d[9]]);
    let seq = u32::from_le_bytes([d[10], d[11], d[12], d[13]]);
    let len = u16::from_le_bytes([d[14], d[15]]) as usize;
    let body = d.get(16..16 + len).ok_or(PacketError::Truncated)?;
    let payload_type = kind & 0x3f;
    let payload = match keys {
        None => {
            if kind & (ENCRYPTED | AUTHENTICATED) != 0 {
                return Err(PacketError::Unprotected);
            }
            body.to_vec()
        }
        Some(k) => {
            if kind & AUTHENTICATED == 0 || kind & ENCRYPTED == 0 {
                return Err(PacketError::Unprotected);
            }
            let icv = k.suite.icv_len();
            if d.len() < 16 + len + 2 + icv {
                return Err(PacketError::Truncated);
            }
            let code_at = d.len() - icv;
            let expected = k.auth_code(&d[4..code_at]);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_slice(),
                &d[code_at..],
            )) {
                return Err(PacketError::Integrity);
            }
            k.decrypt(body).ok_or(PacketError::Decrypt)?
        }
    };
    Ok(V20 {
        payload_type,
        session_id,
        seq,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::ipmi::crypto::CipherSuite;

    #[test]
    fn ipmi_messages_round_trip_with_checksums() {
        // Get Device ID request as ipmitool sends it.
        let req = ipmi_request(0x06, 0x01, 5, &[]);
        assert_eq!(req, vec![0x20, 0x18, 0xc8, 0x81, 0x14, 0x01, 0x6a]);
        // A response: rqAddr, netFn 0x07, chk, rsAddr, seq, cmd, cc, data, chk.
        let mut m = vec![0x81, 0x07 << 2];
        m.push(checksum(&m));
        let s = m.len();
        m.extend_from_slice(&[0x20, 5 << 2, 0x01, 0x00, 0xaa]);
        m.push(checksum(&m[s..]));
        let r = parse_ipmi_response(&m).unwrap();
        assert_eq!(
            (r.netfn, r.cmd, r.rq_seq, r.completion_code, r.data),
            (0x07, 0x01, 5, 0, vec![0xaa])
        );
        let mut bad = m.clone();
        bad[7] ^= 1;
        assert_eq!(parse_ipmi_response(&bad), Err(PacketError::Checksum));
    }

    #[test]
    fn protected_packets_round_trip_and_detect_tampering() {
        for suite in [CipherSuite::Three, CipherSuite::Seventeen] {
            let keys = SessionKeys::derive(suite, b"sik");
            let msg = ipmi_request(0x00, 0x01, 1, &[]);
            let p = v20_packet(payload::IPMI, 0xdeadbeef, 7, &msg, Some(&keys), [3; 16]);
            assert_eq!((p.len() - 4 - icv_free_len(&p, suite)) % 4, 0);
            let back = parse_v20(&p, Some(&keys)).unwrap();
            assert_eq!(
                (back.session_id, back.seq, back.payload),
                (0xdeadbeef, 7, msg)
            );
            for i in 4..p.len() {
                let mut t = p.clone();
                t[i] ^= 0x01;
                assert!(parse_v20(&t, Some(&keys)).is_err(), "flip at {i} accepted");
            }
            // An unauthenticated packet is refused inside a session.
            let plain = v20_packet(payload::IPMI, 1, 1, &[1, 2, 3], None, [0; 16]);
            assert_eq!(
                parse_v20(&plain, Some(&keys)),
                Err(PacketError::Unprotected)
            );
        }
    }

    fn icv_free_len(p: &[u8], suite: CipherSuite) -> usize {
        suite.icv_len().min(p.len())
    }

    #[test]
    fn no_input_panics() {
        let keys = SessionKeys::derive(CipherSuite::Three, b"k");
        let good = v20_packet(
            payload::IPMI,
            1,
            1,
            &ipmi_request(0, 1, 1, &[]),
            Some(&keys),
            [1; 16],
        );
        for cut in 0..good.len() {
            let _ = parse_v20(&good[..cut], Some(&keys));
            let _ = parse_v20(&good[..cut], None);
            let _ = parse_v15(&good[..cut]);
            let _ = parse_ipmi_response(&good[..cut]);
        }
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = parse_v20(&bytes, Some(&keys));
            let _ = parse_v20(&bytes, None);
            let _ = parse_v15(&bytes);
            let _ = parse_ipmi_response(&bytes);
        }
    }
}
