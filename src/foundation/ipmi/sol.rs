//! Serial over LAN (IPMI v2.0 §15 and §24), sans-I/O: the SOL payload's
//! wire format, the Activate/Deactivate Payload commands' data, and
//! [`SolLink`], which turns BMC packets into console bytes and
//! acknowledgements, and typed input into numbered packets with
//! retransmission and partial-accept handling. The caller owns the session,
//! the socket and the clock.

use std::collections::VecDeque;

/// Payload type of SOL in RMCP+ packets.
pub const PAYLOAD_SOL: u8 = 0x01;

/// Status bits of a BMC-to-console packet.
pub mod status {
    pub const NACK: u8 = 0x40;
    pub const TRANSFER_UNAVAILABLE: u8 = 0x20;
    pub const DEACTIVATING: u8 = 0x10;
    pub const OVERRUN: u8 = 0x08;
    pub const BREAK: u8 = 0x04;
}

/// One SOL payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolPacket {
    /// 1–15; 0 for an acknowledgement that carries no characters.
    pub seq: u8,
    /// The packet this one acknowledges (0: none).
    pub ack_seq: u8,
    /// Characters of the acknowledged packet that were accepted.
    pub accepted: u8,
    /// Operation (console → BMC) or status (BMC → console) bits.
    pub status: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolError {
    #[error("SOL packet shorter than its 4-byte header")]
    Truncated,
    #[error("the BMC stopped acknowledging typed characters")]
    NotAcknowledged,
}

impl SolPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![
            self.seq & 0x0f,
            self.ack_seq & 0x0f,
            self.accepted,
            self.status,
        ];
        v.extend_from_slice(&self.data);
        v
    }

    pub fn parse(d: &[u8]) -> Result<SolPacket, SolError> {
        if d.len() < 4 {
            return Err(SolError::Truncated);
        }
        Ok(SolPacket {
            seq: d[0] & 0x0f,
            ack_seq: d[1] & 0x0f,
            accepted: d[2],
            status: d[3],
            data: d[4..].to_vec(),
        })
    }
}

/// Activate Payload (netfn App 0x06, cmd 0x48) request data for SOL
/// instance 1: encrypted and authenticated, serial alerts deferred while
/// SOL is active, CTS asserted by the BMC: what ipmitool sends (0xC6).
pub fn activate_request() -> [u8; 6] {
    [PAYLOAD_SOL, 1, 0xC0 | 0x04 | 0x02, 0, 0, 0]
}

/// Deactivate Payload (cmd 0x49) request data for SOL instance 1.
pub fn deactivate_request() -> [u8; 6] {
    [PAYLOAD_SOL, 1, 0, 0, 0, 0]
}

/// What the BMC granted on activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// Largest SOL payload the BMC accepts from us (header included).
    pub inbound_max: u16,
    /// Largest SOL payload the BMC sends.
    pub outbound_max: u16,
    /// UDP port for SOL packets (usually the session's port).
    pub port: u16,
}

/// Why SOL could not be activated, from Activate Payload's completion code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActivateError {
    #[error("another session already holds this BMC's serial console (SOL)")]
    AlreadyActive,
    #[error("SOL is disabled on the BMC (enable it, e.g. `ipmitool sol set enabled true 1`)")]
    Disabled,
    #[error("the BMC allows no more SOL sessions")]
    Limit,
    #[error("the BMC refuses SOL with encryption")]
    NoEncryption,
    #[error("the BMC's Activate Payload answer is malformed")]
    Malformed,
    #[error("Activate Payload failed with completion code {0:#04x}")]
    Other(u8),
}

/// Reads Activate Payload's completion code and data.
pub fn parse_activation(completion: u8, data: &[u8]) -> Result<Activation, ActivateError> {
    match completion {
        0 => {}
        0x80 => return Err(ActivateError::AlreadyActive),
        0x81 => return Err(ActivateError::Disabled),
        0x82 => return Err(ActivateError::Limit),
        0x83 => return Err(ActivateError::NoEncryption),
        c => return Err(ActivateError::Other(c)),
    }
    if data.len() < 10 {
        return Err(ActivateError::Malformed);
    }
    let u = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    Ok(Activation {
        inbound_max: u(4),
        outbound_max: u(6),
        port: u(8),
    })
}

/// What one BMC packet meant.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Console characters, new ones only (a retransmission yields none).
    pub data: Vec<u8>,
    /// The acknowledgement to send back (payload bytes), if any.
    pub ack: Option<Vec<u8>>,
    /// The BMC is ending SOL (another session took it, or it was deactivated).
    pub deactivating: bool,
    /// The BMC dropped characters it could not send (overrun).
    pub overrun: bool,
}

/// How many times a packet of ours is sent before the link is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// One SOL conversation's sequencing.
pub struct SolLink {
    next_seq: u8,
    queue: VecDeque<u8>,
    /// Our packet waiting for its ACK: (seq, characters, times sent).
    in_flight: Option<(u8, Vec<u8>, u32)>,
    last_in: Option<u8>,
    max_chars: usize,
}

impl SolLink {
    pub fn new(activation: &Activation) -> SolLink {
        SolLink {
            next_seq: 1,
            queue: VecDeque::new(),
            in_flight: None,
            last_in: None,
            // A BMC announcing nothing usable still takes a few characters.
            max_chars: (activation.inbound_max as usize)
                .saturating_sub(4)
                .clamp(8, 255),
        }
    }

    /// Takes one packet from the BMC.
    pub fn on_packet(&mut self, p: &SolPacket) -> Incoming {
        let mut out = Incoming {
            deactivating: p.status & status::DEACTIVATING != 0,
            overrun: p.status & status::OVERRUN != 0,
            ..Incoming::default()
        };
        if p.ack_seq != 0 {
            self.on_ack(p);
        }
        if p.seq != 0 {
            if self.last_in != Some(p.seq) {
                out.data = p.data.clone();
                self.last_in = Some(p.seq);
            }
            out.ack = Some(
                SolPacket {
                    seq: 0,
                    ack_seq: p.seq,
                    accepted: p.data.len().min(255) as u8,
                    status: 0,
                    data: Vec::new(),
                }
                .encode(),
            );
        }
        out
    }

    fn on_ack(&mut self, p: &SolPacket) {
        let Some((seq, chars, _)) = self.in_flight.as_ref() else {
            return;
        };
        if *seq != p.ack_seq {
            return;
        }
        let chars = chars.clone();
        self.in_flight = None;
        let accepted =
            if p.status & status::NACK != 0 && p.status & status::TRANSFER_UNAVAILABLE != 0 {
                0
            } else {
                (p.accepted as usize).min(chars.len())
            };
        // What the BMC did not take goes first in the next packet.
        for &c in chars[accepted..].iter().rev() {
            self.queue.push_front(c);
        }
    }

    /// Queues typed characters.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.queue.extend(bytes);
    }

    /// The next data packet to send, when none waits for its ACK.
    pub fn next_to_send(&mut self) -> Option<Vec<u8>> {
        if self.in_flight.is_some() || self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(self.max_chars);
        let chars: Vec<u8> = self.queue.drain(..n).collect();
        let seq = self.next_seq;
        self.next_seq = if seq >= 15 { 1 } else { seq + 1 };
        let packet = SolPacket {
            seq,
            ack_seq: 0,
            accepted: 0,
            status: 0,
            data: chars.clone(),
        };
        self.in_flight = Some((seq, chars, 1));
        Some(packet.encode())
    }

    /// Whether a packet of ours waits for its ACK.
    pub fn waiting(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The ACK did not come in time: the packet to send again, or `Err`
    /// once it was sent [`MAX_ATTEMPTS`] times.
    pub fn on_timeout(&mut self) -> Result<Option<Vec<u8>>, SolError> {
        let Some((seq, chars, sent)) = self.in_flight.as_mut() else {
            return Ok(None);
        };
        if *sent >= MAX_ATTEMPTS {
            return Err(SolError::NotAcknowledged);
        }
        *sent += 1;
        Ok(Some(
            SolPacket {
                seq: *seq,
                ack_seq: 0,
                accepted: 0,
                status: 0,
                data: chars.clone(),
            }
            .encode(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(inbound_max: u16) -> SolLink {
        SolLink::new(&Activation {
            inbound_max,
            outbound_max: 255,
            port: 623,
        })
    }

    fn bmc(seq: u8, ack_seq: u8, accepted: u8, status: u8, data: &[u8]) -> SolPacket {
        SolPacket {
            seq,
            ack_seq,
            accepted,
            status,
            data: data.to_vec(),
        }
    }

    #[test]
    fn console_data_is_delivered_once_and_acknowledged_every_time() {
        let mut l = link(255);
        let a = l.on_packet(&bmc(3, 0, 0, 0, b"login: "));
        assert_eq!(a.data, b"login: ");
        assert_eq!(a.ack, Some(vec![0, 3, 7, 0]));
        // The BMC did not see our ACK and sends the same packet again.
        let b = l.on_packet(&bmc(3, 0, 0, 0, b"login: "));
        assert!(b.data.is_empty());
        assert_eq!(b.ack, Some(vec![0, 3, 7, 0]));
        let c = l.on_packet(&bmc(4, 0, 0, status::DEACTIVATING, b"x"));
        assert_eq!(c.data, b"x");
        assert!(c.deactivating);
    }

    #[test]
    fn input_is_numbered_split_to_the_bmc_size_and_resent_in_part_when_partly_accepted() {
        let mut l = link(12); // 8 characters per packet
        l.push_input(b"root\npassword\n");
        let p1 = SolPacket::parse(&l.next_to_send().unwrap()).unwrap();
        assert_eq!((p1.seq, p1.data.as_slice()), (1, &b"root\npas"[..]));
        // Nothing more until the ACK.
        assert_eq!(l.next_to_send(), None);
        // The BMC takes 5 of 8.
        l.on_packet(&bmc(0, 1, 5, 0, b""));
        let p2 = SolPacket::parse(&l.next_to_send().unwrap()).unwrap();
        assert_eq!((p2.seq, p2.data.as_slice()), (2, &b"password"[..]));
        // An ACK for another packet changes nothing.
        l.on_packet(&bmc(0, 1, 8, 0, b""));
        assert!(l.waiting());
        l.on_packet(&bmc(0, 2, 8, 0, b""));
        let p3 = SolPacket::parse(&l.next_to_send().unwrap()).unwrap();
        assert_eq!((p3.seq, p3.data.as_slice()), (3, &b"\n"[..]));
    }

    #[test]
    fn a_nack_for_transfer_unavailable_keeps_every_character_and_timeouts_give_up() {
        let mut l = link(255);
        l.push_input(b"abc");
        l.next_to_send().unwrap();
        l.on_packet(&bmc(
            0,
            1,
            0,
            status::NACK | status::TRANSFER_UNAVAILABLE,
            b"",
        ));
        let again = SolPacket::parse(&l.next_to_send().unwrap()).unwrap();
        assert_eq!((again.seq, again.data.as_slice()), (2, &b"abc"[..]));
        for _ in 1..MAX_ATTEMPTS {
            let p = SolPacket::parse(&l.on_timeout().unwrap().unwrap()).unwrap();
            assert_eq!(p.seq, 2);
        }
        assert_eq!(l.on_timeout(), Err(SolError::NotAcknowledged));
    }

    #[test]
    fn sequence_numbers_wrap_from_15_to_1() {
        let mut l = link(255);
        for want in (1..=15).chain(1..=2) {
            l.push_input(b"x");
            let p = SolPacket::parse(&l.next_to_send().unwrap()).unwrap();
            assert_eq!(p.seq, want);
            l.on_packet(&bmc(0, want, 1, 0, b""));
        }
    }

    #[test]
    fn activation_answers_become_typed_errors() {
        assert_eq!(
            parse_activation(0x80, &[]),
            Err(ActivateError::AlreadyActive)
        );
        assert_eq!(parse_activation(0x81, &[]), Err(ActivateError::Disabled));
        assert_eq!(parse_activation(0, &[0; 3]), Err(ActivateError::Malformed));
        let a =
            parse_activation(0, &[0, 0, 0, 0, 0xff, 0, 0xff, 0, 0x6f, 0x02, 0xff, 0xff]).unwrap();
        assert_eq!((a.inbound_max, a.outbound_max, a.port), (255, 255, 623));
        assert!(SolPacket::parse(&[1, 2]).is_err());
    }
}
