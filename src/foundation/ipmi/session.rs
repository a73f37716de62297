//! The RMCP+ session as a sans-I/O state machine: Open Session, RAKP 1–4,
//! then protected request/response exchange with sequence checks. The
//! caller owns the socket, the clock and the randomness; this module only
//! turns replies into the next datagram or a typed failure.

use super::crypto::{user_key, CipherSuite, Exchange, SessionKeys};
use super::packet::{self, payload, IpmiResponse, PacketError};

/// Privilege levels of IPMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    User = 2,
    Operator = 3,
    Administrator = 4,
}

/// Who logs in.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// Kg, the BMC key, when the BMC has one.
    pub bmc_key: Option<Vec<u8>>,
    pub privilege: Privilege,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ******)", self.user)
    }
}

/// Why a session could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the BMC does not know user {0}")]
    UnknownUser(String),
    #[error("wrong password for user {0}")]
    WrongPassword(String),
    /// RAKP4 did not check: the BMC derived other session keys, which with a
    /// right password means another BMC key (Kg).
    #[error("the session keys do not match: check the BMC key (Kg)")]
    WrongBmcKey,
    #[error("the BMC refused the requested privilege level")]
    Privilege,
    #[error("the BMC has no free session (insufficient resources)")]
    NoResources,
    #[error("the BMC does not support cipher suite {0}")]
    CipherSuite(u8),
    #[error("the BMC refused the session (RMCP+ status {0:#04x})")]
    Refused(u8),
    #[error("the BMC's reply is malformed: {0}")]
    Malformed(String),
}

impl From<PacketError> for HandshakeError {
    fn from(e: PacketError) -> Self {
        HandshakeError::Malformed(e.to_string())
    }
}

fn status_error(status: u8, user: &str, suite: CipherSuite) -> HandshakeError {
    match status {
        0x01 => HandshakeError::NoResources,
        0x0D => HandshakeError::UnknownUser(user.to_string()),
        0x09 | 0x12 => HandshakeError::Privilege,
        0x03..=0x05 | 0x10 | 0x11 => HandshakeError::CipherSuite(suite.id()),
        other => HandshakeError::Refused(other),
    }
}

/// The handshake in progress.
pub struct Handshake {
    suite: CipherSuite,
    creds: Credentials,
    user_key: Vec<u8>,
    console_session_id: u32,
    console_random: [u8; 16],
    bmc_session_id: u32,
    role: u8,
    sik: Vec<u8>,
    bmc_random: [u8; 16],
    bmc_guid: [u8; 16],
}

const TAG: u8 = 0x00;

impl Handshake {
    /// Starts a handshake; `console_session_id` (non-zero) and
    /// `console_random` come from the caller's randomness.
    pub fn new(
        suite: CipherSuite,
        creds: Credentials,
        console_session_id: u32,
        console_random: [u8; 16],
    ) -> Handshake {
        let user_key = user_key(&creds.password);
        Handshake {
            suite,
            role: creds.privilege as u8 | 0x10, // name-only lookup, as ipmitool
            creds,
            user_key,
            console_session_id,
            console_random,
            bmc_session_id: 0,
            sik: Vec::new(),
            bmc_random: [0; 16],
            bmc_guid: [0; 16],
        }
    }

    pub fn console_session_id(&self) -> u32 {
        self.console_session_id
    }

    /// The Open Session Request datagram.
    pub fn open_session_request(&self) -> Vec<u8> {
        let s = self.suite;
        let mut p = vec![TAG, self.creds.privilege as u8, 0, 0];
        p.extend_from_slice(&self.console_session_id.to_le_bytes());
        p.extend_from_slice(&[0x00, 0, 0, 0x08, s.auth_alg(), 0, 0, 0]);
        p.extend_from_slice(&[0x01, 0, 0, 0x08, s.integrity_alg(), 0, 0, 0]);
        p.extend_from_slice(&[0x02, 0, 0, 0x08, s.confidentiality_alg(), 0, 0, 0]);
        packet::v20_packet(payload::OPEN_SESSION_REQUEST, 0, 0, &p, None, [0; 16])
    }

    fn payload_of(&self, d: &[u8], kind: u8) -> Result<Vec<u8>, HandshakeError> {
        let v = packet::parse_v20(d, None)?;
        if v.payload_type != kind {
            return Err(HandshakeError::Malformed(format!(
                "expected payload {kind:#04x}, got {:#04x}",
                v.payload_type
            )));
        }
        Ok(v.payload)
    }

    fn check_console_id(&self, id: u32) -> Result<(), HandshakeError> {
        if id != self.console_session_id {
            return Err(HandshakeError::Malformed(
                "reply for another session".into(),
            ));
        }
        Ok(())
    }

    /// Takes the Open Session Response; returns the RAKP1 datagram.
    pub fn on_open_session_response(&mut self, d: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let p = self.payload_of(d, payload::OPEN_SESSION_RESPONSE)?;
        if p.len() < 2 {
            return Err(HandshakeError::Malformed(
                "short Open Session Response".into(),
            ));
        }
        if p[1] != 0 {
            return Err(status_error(p[1], &self.creds.user, self.suite));
        }
        if p.len() < 36 {
            return Err(HandshakeError::Malformed(
                "short Open Session Response".into(),
            ));
        }
        self.check_console_id(u32::from_le_bytes([p[4], p[5], p[6], p[7]]))?;
        self.bmc_session_id = u32::from_le_bytes([p[8], p[9], p[10], p[11]]);
        if (p[16], p[24], p[32])
            != (
                self.suite.auth_alg(),
                self.suite.integrity_alg(),
                self.suite.confidentiality_alg(),
            )
        {
            return Err(HandshakeError::CipherSuite(self.suite.id()));
        }
        let user = self.creds.user.as_bytes();
        let mut r = vec![TAG, 0, 0, 0];
        r.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        r.extend_from_slice(&self.console_random);
        r.extend_from_slice(&[self.role, 0, 0, user.len() as u8]);
        r.extend_from_slice(user);
        Ok(packet::v20_packet(payload::RAKP1, 0, 0, &r, None, [0; 16]))
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            suite: self.suite,
            user_key: &self.user_key,
            bmc_key: self.creds.bmc_key.as_deref(),
            console_session_id: self.console_session_id,
            bmc_session_id: self.bmc_session_id,
            console_random: self.console_random,
            bmc_random: self.bmc_random,
            bmc_guid: self.bmc_guid,
            role: self.role,
            user: self.creds.user.as_bytes(),
        }
    }

    /// Takes RAKP2 (checks the BMC knows our password); returns RAKP3.
    pub fn on_rakp2(&mut self, d: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let p = self.payload_of(d, payload::RAKP2)?;
        if p.len() < 2 {
            return Err(HandshakeError::Malformed("short RAKP2".into()));
        }
        if p[1] != 0 {
            return Err(status_error(p[1], &self.creds.user, self.suite));
        }
        let n = self.suite.hmac_len();
        if p.len() < 40 + n {
            return Err(HandshakeError::Malformed("short RAKP2".into()));
        }
        self.check_console_id(u32::from_le_bytes([p[4], p[5], p[6], p[7]]))?;
        self.bmc_random.copy_from_slice(&p[8..24]);
        self.bmc_guid.copy_from_slice(&p[24..40]);
        let expected = self.exchange().rakp2_code();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_slice(),
            &p[40..40 + n],
        )) {
            return Err(HandshakeError::WrongPassword(self.creds.user.clone()));
        }
        self.sik = self.exchange().sik();
        let mut r = vec![TAG, 0, 0, 0];
        r.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        r.extend_from_slice(&self.exchange().rakp3_code());
        Ok(packet::v20_packet(payload::RAKP3, 0, 0, &r, None, [0; 16]))
    }

    /// Takes RAKP4 (checks the BMC derived the same key); the session is open.
    pub fn on_rakp4(self, d: &[u8]) -> Result<ActiveSession, HandshakeError> {
        let p = self.payload_of(d, payload::RAKP4)?;
        if p.len() < 2 {
            return Err(HandshakeError::Malformed("short RAKP4".into()));
        }
        if p[1] != 0 {
            return Err(status_error(p[1], &self.creds.user, self.suite));
        }
        let n = self.suite.icv_len();
        if p.len() < 8 + n {
            return Err(HandshakeError::Malformed("short RAKP4".into()));
        }
        self.check_console_id(u32::from_le_bytes([p[4], p[5], p[6], p[7]]))?;
        let expected = self.exchange().rakp4_icv(&self.sik);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_slice(),
            &p[8..8 + n],
        )) {
            return Err(HandshakeError::WrongBmcKey);
        }
        Ok(ActiveSession {
            keys: SessionKeys::derive(self.suite, &self.sik),
            console_session_id: self.console_session_id,
            bmc_session_id: self.bmc_session_id,
            out_seq: 0,
            rq_seq: 0,
            highest_in_seq: 0,
        })
    }
}

/// An established session.
#[derive(Debug)]
pub struct ActiveSession {
    keys: SessionKeys,
    console_session_id: u32,
    bmc_session_id: u32,
    out_seq: u32,
    rq_seq: u8,
    highest_in_seq: u32,
}

/// Why a reply inside a session was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// For another session, another request, or a replay: ignore and keep waiting.
    #[error("stale or foreign reply")]
    Stale,
}

/// A request that was sent and the reply it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub netfn: u8,
    pub cmd: u8,
    pub rq_seq: u8,
}

impl ActiveSession {
    /// A session whose keys are already known (derived from `sik`): what a
    /// handshake ends in. For tests and the fuzz targets, which check
    /// replies inside a session without a BMC.
    pub fn established(
        suite: CipherSuite,
        sik: &[u8],
        console_session_id: u32,
        bmc_session_id: u32,
    ) -> ActiveSession {
        ActiveSession {
            keys: SessionKeys::derive(suite, sik),
            console_session_id,
            bmc_session_id,
            out_seq: 0,
            rq_seq: 0,
            highest_in_seq: 0,
        }
    }

    /// The BMC's id of this session (what Close Session names).
    pub fn bmc_session_id(&self) -> u32 {
        self.bmc_session_id
    }

    /// A protected request datagram (a fresh rqSeq each call, so a
    /// retransmission is a new request and a late reply to the old one is
    /// recognised as stale).
    pub fn request(&mut self, netfn: u8, cmd: u8, data: &[u8], iv: [u8; 16]) -> (Vec<u8>, Pending) {
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let msg = packet::ipmi_request(netfn, cmd, self.rq_seq, data);
        let d = packet::v20_packet(
            payload::IPMI,
            self.bmc_session_id,
            self.out_seq,
            &msg,
            Some(&self.keys),
            iv,
        );
        (
            d,
            Pending {
                netfn,
                cmd,
                rq_seq: self.rq_seq,
            },
        )
    }

    /// A protected datagram of another payload type (SOL) in this session.
    pub fn payload_packet(&mut self, payload_type: u8, data: &[u8], iv: [u8; 16]) -> Vec<u8> {
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        packet::v20_packet(
            payload_type,
            self.bmc_session_id,
            self.out_seq,
            data,
            Some(&self.keys),
            iv,
        )
    }

    /// Checks a datagram of this session and returns its payload type and
    /// decrypted payload (whatever the type).
    pub fn open_packet(&mut self, d: &[u8]) -> Result<(u8, Vec<u8>), ReplyError> {
        let v = packet::parse_v20(d, Some(&self.keys))?;
        if v.session_id != self.console_session_id {
            return Err(ReplyError::Stale);
        }
        Ok((v.payload_type, v.payload))
    }

    /// Checks and decodes a reply to `pending`.
    pub fn reply(&mut self, d: &[u8], pending: Pending) -> Result<IpmiResponse, ReplyError> {
        let v = packet::parse_v20(d, Some(&self.keys))?;
        if v.payload_type != payload::IPMI || v.session_id != self.console_session_id {
            return Err(ReplyError::Stale);
        }
        let r = packet::parse_ipmi_response(&v.payload)?;
        if r.rq_seq != pending.rq_seq || r.cmd != pending.cmd || r.netfn != pending.netfn + 1 {
            return Err(ReplyError::Stale);
        }
        // Replay protection: a sequence number at or below one already seen
        // (beyond a small reordering window) is refused.
        if v.seq != 0 && v.seq + 8 <= self.highest_in_seq {
            return Err(ReplyError::Stale);
        }
        self.highest_in_seq = self.highest_in_seq.max(v.seq);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::ipmi::packet::v20_packet;

    /// A minimal BMC side of the handshake, from the spec, to drive the client.
    struct FakeBmc {
        suite: CipherSuite,
        password: &'static str,
        bmc_sid: u32,
        rc: [u8; 16],
        guid: [u8; 16],
    }

    impl FakeBmc {
        fn open_response(&self, req: &[u8], status: u8) -> Vec<u8> {
            let p = packet::parse_v20(req, None).unwrap().payload;
            let mut r = vec![p[0], status, 4, 0];
            r.extend_from_slice(&p[4..8]);
            r.extend_from_slice(&self.bmc_sid.to_le_bytes());
            r.extend_from_slice(&p[8..32]);
            v20_packet(payload::OPEN_SESSION_RESPONSE, 0, 0, &r, None, [0; 16])
        }

        fn rakp2(&self, rakp1: &[u8], console_sid: u32, password: &str) -> Vec<u8> {
            let p = packet::parse_v20(rakp1, None).unwrap().payload;
            let rm: [u8; 16] = p[8..24].try_into().unwrap();
            let role = p[24];
            let user = &p[28..28 + p[27] as usize];
            let key = user_key(password);
            let x = Exchange {
                suite: self.suite,
                user_key: &key,
                bmc_key: None,
                console_session_id: console_sid,
                bmc_session_id: self.bmc_sid,
                console_random: rm,
                bmc_random: self.rc,
                bmc_guid: self.guid,
                role,
                user,
            };
            let mut r = vec![0, 0, 0, 0];
            r.extend_from_slice(&console_sid.to_le_bytes());
            r.extend_from_slice(&self.rc);
            r.extend_from_slice(&self.guid);
            r.extend_from_slice(&x.rakp2_code());
            v20_packet(payload::RAKP2, 0, 0, &r, None, [0; 16])
        }
    }

    fn creds(password: &str) -> Credentials {
        Credentials {
            user: "admin".into(),
            password: password.into(),
            bmc_key: None,
            privilege: Privilege::Administrator,
        }
    }

    #[test]
    fn handshake_reaches_rakp3_and_detects_a_wrong_password() {
        for suite in [CipherSuite::Three, CipherSuite::Seventeen] {
            let bmc = FakeBmc {
                suite,
                password: "password",
                bmc_sid: 0xabcd,
                rc: [9; 16],
                guid: [8; 16],
            };
            let mut hs = Handshake::new(suite, creds("password"), 0x1111, [1; 16]);
            let open = hs.open_session_request();
            let rakp1 = hs
                .on_open_session_response(&bmc.open_response(&open, 0))
                .unwrap();
            let rakp3 = hs
                .on_rakp2(&bmc.rakp2(&rakp1, 0x1111, bmc.password))
                .unwrap();
            assert_eq!(
                packet::parse_v20(&rakp3, None).unwrap().payload_type,
                payload::RAKP3
            );

            let mut wrong = Handshake::new(suite, creds("not-the-password"), 0x2222, [1; 16]);
            let open = wrong.open_session_request();
            let rakp1 = wrong
                .on_open_session_response(&bmc.open_response(&open, 0))
                .unwrap();
            let err = wrong
                .on_rakp2(&bmc.rakp2(&rakp1, 0x2222, bmc.password))
                .unwrap_err();
            assert_eq!(err, HandshakeError::WrongPassword("admin".into()));
        }
    }

    #[test]
    fn rmcp_status_codes_become_typed_errors() {
        let bmc = FakeBmc {
            suite: CipherSuite::Seventeen,
            password: "x",
            bmc_sid: 1,
            rc: [0; 16],
            guid: [0; 16],
        };
        for (status, want) in [
            (0x01, HandshakeError::NoResources),
            (0x11, HandshakeError::CipherSuite(17)),
            (0x12, HandshakeError::Privilege),
            (0x0D, HandshakeError::UnknownUser("admin".into())),
        ] {
            let mut hs = Handshake::new(CipherSuite::Seventeen, creds("x"), 5, [0; 16]);
            let open = hs.open_session_request();
            assert_eq!(
                hs.on_open_session_response(&bmc.open_response(&open, status))
                    .unwrap_err(),
                want
            );
        }
    }

    #[test]
    fn session_replies_are_matched_to_their_request() {
        let keys = SessionKeys::derive(CipherSuite::Three, b"sik");
        let mut s = ActiveSession {
            keys: keys.clone(),
            console_session_id: 77,
            bmc_session_id: 88,
            out_seq: 0,
            rq_seq: 0,
            highest_in_seq: 0,
        };
        let (_, pending) = s.request(0x00, 0x01, &[], [0; 16]);
        let reply = |seq: u32, rq_seq: u8, sid: u32| {
            let mut m = vec![0x81, 0x01 << 2];
            m.push(m.iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg());
            let st = m.len();
            m.extend_from_slice(&[0x20, rq_seq << 2, 0x01, 0x00, 0x01, 0, 0]);
            let c = m[st..]
                .iter()
                .fold(0u8, |a, b| a.wrapping_add(*b))
                .wrapping_neg();
            m.push(c);
            v20_packet(payload::IPMI, sid, seq, &m, Some(&keys), [5; 16])
        };
        assert_eq!(
            s.reply(&reply(1, pending.rq_seq + 1, 77), pending),
            Err(ReplyError::Stale)
        );
        assert_eq!(
            s.reply(&reply(1, pending.rq_seq, 78), pending),
            Err(ReplyError::Stale)
        );
        let r = s.reply(&reply(20, pending.rq_seq, 77), pending).unwrap();
        assert_eq!(r.data, vec![0x01, 0, 0]);
        assert_eq!(
            s.reply(&reply(3, pending.rq_seq, 77), pending),
            Err(ReplyError::Stale)
        );
    }
}
