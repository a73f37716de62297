//! IPMI over LAN: RMCP/IPMI 1.5 and 2.0 packet parsing (with and without
//! session keys), IPMI response parsing, the Open Session/RAKP handshake
//! fed BMC answers, and replies inside an established session — raw, and
//! wrapped in a correctly authenticated and encrypted packet so that the
//! checks past the integrity code are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::foundation::ipmi::crypto::{CipherSuite, SessionKeys};
use rackboot::foundation::ipmi::packet::{
    parse_ipmi_response, parse_v15, parse_v20, payload, v20_packet,
};
use rackboot::foundation::ipmi::session::{
    ActiveSession, Credentials, Handshake, Pending, Privilege,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let suite = if mode & 1 == 0 {
        CipherSuite::Three
    } else {
        CipherSuite::Seventeen
    };
    let keys = SessionKeys::derive(suite, b"fuzz session integrity key");
    let _ = parse_v15(body);
    let _ = parse_v20(body, None);
    let _ = parse_v20(body, Some(&keys));
    let _ = parse_ipmi_response(body);

    // The handshake, each answer a slice of the input.
    let creds = Credentials {
        user: "admin".into(),
        password: "password".into(),
        bmc_key: None,
        privilege: Privilege::Administrator,
    };
    let parts: Vec<&[u8]> = body.splitn(3, |b| *b == 0xA5).collect();
    let mut hs = Handshake::new(suite, creds, 0x1111, [1; 16]);
    let _ = hs.open_session_request();
    if hs.on_open_session_response(parts[0]).is_ok() {
        if let Some(p) = parts.get(1) {
            if hs.on_rakp2(p).is_ok() {
                if let Some(p) = parts.get(2) {
                    let _ = hs.on_rakp4(p);
                }
            }
        }
    }

    // Replies inside a session: raw, and authenticated around the input.
    let mut s = ActiveSession::established(suite, b"fuzz session integrity key", 77, 88);
    let (_, pending) = s.request(0x00, 0x01, &[], [0; 16]);
    let _ = s.reply(body, pending);
    let seq = u32::from(mode >> 1);
    let wrapped = v20_packet(payload::IPMI, 77, seq, body, Some(&keys), [5; 16]);
    let _ = s.reply(&wrapped, pending);
    let other = Pending {
        netfn: mode & 0x3f,
        cmd: mode,
        rq_seq: mode >> 2,
    };
    let _ = s.reply(&wrapped, other);
});
