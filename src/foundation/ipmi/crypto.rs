//! RMCP+ cipher suites 3 and 17: the RAKP key-exchange codes, session key
//! derivation (SIK, K1, K2), message integrity and AES-CBC-128
//! confidentiality, as IPMI 2.0 §13.28–13.32 defines them. Pure functions.

use aes::cipher::{block_padding::NoPadding, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The cipher suites rackboot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    /// RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Three,
    /// RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Seventeen,
}

impl CipherSuite {
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Three => 3,
            CipherSuite::Seventeen => 17,
        }
    }

    pub fn from_id(id: u8) -> Option<CipherSuite> {
        match id {
            3 => Some(CipherSuite::Three),
            17 => Some(CipherSuite::Seventeen),
            _ => None,
        }
    }

    /// Authentication algorithm number of the Open Session Request.
    pub fn auth_alg(self) -> u8 {
        match self {
            CipherSuite::Three => 0x01,
            CipherSuite::Seventeen => 0x03,
        }
    }

    /// Integrity algorithm number.
    pub fn integrity_alg(self) -> u8 {
        match self {
            CipherSuite::Three => 0x01,
            CipherSuite::Seventeen => 0x04,
        }
    }

    /// Confidentiality algorithm number (AES-CBC-128 for both).
    pub fn confidentiality_alg(self) -> u8 {
        0x01
    }

    /// Length of an HMAC of the suite's hash.
    pub fn hmac_len(self) -> usize {
        match self {
            CipherSuite::Three => 20,
            CipherSuite::Seventeen => 32,
        }
    }

    /// Length of the truncated integrity codes (RAKP4 ICV and per-message AuthCode).
    pub fn icv_len(self) -> usize {
        match self {
            CipherSuite::Three => 12,
            CipherSuite::Seventeen => 16,
        }
    }

    /// HMAC of the concatenated `parts` under `key` with the suite's hash.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes any key length");
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            CipherSuite::Three => run::<Hmac<Sha1>>(key, parts),
            CipherSuite::Seventeen => run::<Hmac<Sha256>>(key, parts),
        }
    }
}

/// The user key Kuid: the password, zero-padded to 20 bytes.
pub fn user_key(password: &str) -> Vec<u8> {
    let mut k = password.as_bytes().to_vec();
    k.resize(20.max(k.len()), 0);
    k
}

/// What both sides know once RAKP2 has arrived.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    pub suite: CipherSuite,
    /// Kuid.
    pub user_key: &'a [u8],
    /// Kg (BMC key) if configured, else Kuid is used.
    pub bmc_key: Option<&'a [u8]>,
    pub console_session_id: u32,
    pub bmc_session_id: u32,
    pub console_random: [u8; 16],
    pub bmc_random: [u8; 16],
    pub bmc_guid: [u8; 16],
    /// The role byte sent in RAKP1 (privilege | name-only lookup bit).
    pub role: u8,
    pub user: &'a [u8],
}

impl Exchange<'_> {
    /// The key-exchange code the BMC must send in RAKP2.
    pub fn rakp2_code(&self) -> Vec<u8> {
        self.suite.hmac(
            self.user_key,
            &[
                &self.console_session_id.to_le_bytes(),
                &self.bmc_session_id.to_le_bytes(),
                &self.console_random,
                &self.bmc_random,
                &self.bmc_guid,
                &[self.role, self.user.len() as u8],
                self.user,
            ],
        )
    }

    /// The key-exchange code we send in RAKP3.
    pub fn rakp3_code(&self) -> Vec<u8> {
        self.suite.hmac(
            self.user_key,
            &[
                &self.bmc_random,
                &self.console_session_id.to_le_bytes(),
                &[self.role, self.user.len() as u8],
                self.user,
            ],
        )
    }

    /// The session integrity key SIK.
    pub fn sik(&self) -> Vec<u8> {
        self.suite.hmac(
            self.bmc_key.unwrap_or(self.user_key),
            &[
                &self.console_random,
                &self.bmc_random,
                &[self.role, self.user.len() as u8],
                self.user,
            ],
        )
    }

    /// The integrity check value the BMC must send in RAKP4.
    pub fn rakp4_icv(&self, sik: &[u8]) -> Vec<u8> {
        let mut v = self.suite.hmac(
            sik,
            &[
                &self.console_random,
                &self.bmc_session_id.to_le_bytes(),
                &self.bmc_guid,
            ],
        );
        v.truncate(self.suite.icv_len());
        v
    }
}

/// The keys of an active session.
#[derive(Clone)]
pub struct SessionKeys {
    pub suite: CipherSuite,
    /// K1: integrity.
    pub k1: Vec<u8>,
    /// First 16 bytes of K2: AES-128.
    pub aes: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(…)")
    }
}

impl SessionKeys {
    /// K1 = HMAC_SIK(0x01 × 20), K2 = HMAC_SIK(0x02 × 20): the constants
    /// are 20 bytes for every algorithm (IPMI 2.0 §13.32; ipmitool agrees).
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> SessionKeys {
        let k1 = suite.hmac(sik, &[&[0x01; 20]]);
        let k2 = suite.hmac(sik, &[&[0x02; 20]]);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&k2[..16]);
        SessionKeys { suite, k1, aes }
    }

    /// The AuthCode of an outgoing or incoming message (truncated HMAC-K1).
    pub fn auth_code(&self, covered: &[u8]) -> Vec<u8> {
        let mut v = self.suite.hmac(&self.k1, &[covered]);
        v.truncate(self.suite.icv_len());
        v
    }

    /// AES-CBC-128 encryption of a payload: IV, then the payload with the
    /// confidentiality trailer (pad bytes 1, 2, …, pad length) encrypted.
    pub fn encrypt(&self, payload: &[u8], iv: [u8; 16]) -> Vec<u8> {
        let pad = (16 - (payload.len() + 1) % 16) % 16;
        let mut buf = payload.to_vec();
        buf.extend((1..=pad as u8).collect::<Vec<_>>());
        buf.push(pad as u8);
        let len = buf.len();
        let enc = cbc::Encryptor::<aes::Aes128>::new(&self.aes.into(), &iv.into());
        let ct = enc
            .encrypt_padded::<NoPadding>(&mut buf, len)
            .expect("buffer is a whole number of blocks");
        let mut out = iv.to_vec();
        out.extend_from_slice(ct);
        out
    }

    /// Reverses [`SessionKeys::encrypt`]; `None` when the data is malformed.
    pub fn decrypt(&self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < 32 || !data.len().is_multiple_of(16) {
            return None;
        }
        let (iv, ct) = data.split_at(16);
        let mut buf = ct.to_vec();
        let iv: [u8; 16] = iv.try_into().ok()?;
        let dec = cbc::Decryptor::<aes::Aes128>::new(&self.aes.into(), &iv.into());
        let pt = dec.decrypt_padded::<NoPadding>(&mut buf).ok()?;
        let pad = *pt.last()? as usize;
        if pad + 1 > pt.len() || pad > 15 {
            return None;
        }
        Some(pt[..pt.len() - 1 - pad].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Vectors computed with an independent implementation (Python's hmac
    /// and hashlib) of IPMI 2.0 §13.31–13.32 for user "admin", password
    /// "password", role 0x14, SIDm 0x12345678, SIDc 0x04030201, Rm = 00..0f,
    /// Rc = 10..1f, GUIDc = 20..2f.
    fn exchange(suite: CipherSuite, key: &[u8]) -> Exchange<'_> {
        let mut rm = [0u8; 16];
        let mut rc = [0u8; 16];
        let mut guid = [0u8; 16];
        for i in 0..16u8 {
            rm[i as usize] = i;
            rc[i as usize] = 16 + i;
            guid[i as usize] = 32 + i;
        }
        Exchange {
            suite,
            user_key: key,
            bmc_key: None,
            console_session_id: 0x1234_5678,
            bmc_session_id: 0x0403_0201,
            console_random: rm,
            bmc_random: rc,
            bmc_guid: guid,
            role: 0x14,
            user: b"admin",
        }
    }

    #[test]
    fn suite_3_vectors() {
        let key = user_key("password");
        let x = exchange(CipherSuite::Three, &key);
        assert_eq!(
            hex(&x.rakp2_code()),
            "9a43977cd9158b936d3c4f9034e2fdb7e81aa582"
        );
        assert_eq!(
            hex(&x.rakp3_code()),
            "ce8b3694b277e28b66236c1f8ed4833006b6331f"
        );
        let sik = x.sik();
        assert_eq!(hex(&sik), "122c77c4b11ccd93251cbae6c34a9cb6310da154");
        assert_eq!(hex(&x.rakp4_icv(&sik)), "19b5745886fad7d4fcbdb9ab");
        let keys = SessionKeys::derive(CipherSuite::Three, &sik);
        assert_eq!(hex(&keys.k1), "e4472be78f9a81fa68297aab696a7be8c97fc9f8");
        assert_eq!(hex(&keys.aes), "2b6552012a2517cb3b5713901d757a6e");
    }

    #[test]
    fn suite_17_vectors() {
        let key = user_key("password");
        let x = exchange(CipherSuite::Seventeen, &key);
        assert_eq!(
            hex(&x.rakp2_code()),
            "bb4301e9b9258bafa43a6f617db68eb29a6b1da2dc2d0ae5862462cce9e5baa9"
        );
        assert_eq!(
            hex(&x.rakp3_code()),
            "bd76e48de7902dd62641091b67cbd7b44637cf1663fc273dc0d440d62849165b"
        );
        let sik = x.sik();
        assert_eq!(
            hex(&sik),
            "e5935f7199865ad961063477b0662684e2ce9b1da8f2b8d41c5ce127d37e9bcf"
        );
        assert_eq!(hex(&x.rakp4_icv(&sik)), "5e78156223c4d8067c003386e0c5b4b8");
        let keys = SessionKeys::derive(CipherSuite::Seventeen, &sik);
        assert_eq!(
            hex(&keys.k1),
            "dc4fe73d075306f6897115dd63257385e845c10404fa1d73991790c6a101bec2"
        );
        assert_eq!(hex(&keys.aes), "2a4f969ea6dfa83066f36674fdc2fea2");
    }

    #[test]
    fn aes_round_trips_every_length_and_rejects_garbage() {
        let keys = SessionKeys::derive(CipherSuite::Three, b"sik");
        for len in 0..40 {
            let payload: Vec<u8> = (0..len as u8).collect();
            let ct = keys.encrypt(&payload, [7; 16]);
            assert_eq!(ct.len() % 16, 0);
            assert_eq!(keys.decrypt(&ct).unwrap(), payload);
        }
        assert!(keys.decrypt(&[0; 20]).is_none());
        assert!(keys.decrypt(&[]).is_none());
    }
}
