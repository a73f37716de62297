//! IPMI over LAN: RMCP/IPMI 1.5 and 2.0 packet parsing (with and without
//! session keys), IPMI response parsing, the Open Session/RAKP handshake
//! fed BMC answers, and replies inside an established session — raw, and
//! wrapped in a correctly authenticated and encrypted packet so that the
//! checks past the integrity code are reached too; Serial over LAN:
//! session packets of any payload type, SOL payloads through the
//! sequencing of a console, Activate Payload answers, and the console
//! text they carry into lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::foundation::ipmi::crypto::{CipherSuite, SessionKeys};
use rackboot::foundation::ipmi::packet::{
    parse_ipmi_response, parse_v15, parse_v20, payload, v20_packet,
};
use rackboot::foundation::console_text::{telling_tail, LineAssembler};
use rackboot::foundation::ipmi::session::{
    ActiveSession, Credentials, Handshake, Pending, Privilege,
};
use rackboot::foundation::ipmi::sol::{parse_activation, Activation, SolLink, SolPacket};

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

    // Serial over LAN: the packet in a session, then through a console's
    // sequencing, the input split into SOL payloads at 0x5A.
    let wrapped_sol = v20_packet(0x01, 77, seq, body, Some(&keys), [6; 16]);
    let _ = s.open_packet(&wrapped_sol);
    let _ = parse_activation(mode, body);
    let mut link = SolLink::new(&Activation {
        inbound_max: u16::from(mode),
        outbound_max: 255,
        port: 623,
    });
    let mut text = LineAssembler::new();
    let mut lines = Vec::new();
    for part in body.split(|b| *b == 0x5A) {
        link.push_input(part);
        let _ = link.next_to_send();
        if let Ok(p) = SolPacket::parse(part) {
            let incoming = link.on_packet(&p);
            lines.extend(text.push(&incoming.data));
        }
        let _ = link.on_timeout();
    }
    lines.extend(text.flush());
    let _ = telling_tail(&lines, 3);
});
