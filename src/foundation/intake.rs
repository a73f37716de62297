//! Zero-touch intake (ScanBMNodes with `intake: 1`): which BMC-only node a
//! machine that network-booted into the discovery ramdisk is. [`choose`]
//! is the pure rule — the system serial the ramdisk read (DMI) equal to
//! one candidate's FRU serial, else the one machine powered on alone —;
//! [`Desk`] is the round in progress that the discovery callback asks and
//! the DHCP thread reads (discovery answers are on while a round runs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A node waiting to learn its PXE MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: String,
    /// Its BMC's FRU serial ("" when the BMC has none).
    pub serial: String,
    /// Its BMC's LAN MAC as read over the LAN ("" when unknown).
    pub bmc_mac: String,
}

/// How a machine was joined to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinedBy {
    /// The BMC the machine reached in-band (`/dev/ipmi0`) has this LAN MAC,
    /// the one the BMC reported over the LAN.
    BmcAddress(String),
    /// Its system serial (DMI) equals the BMC's FRU serial.
    Serial(String),
    /// It was the only machine powered on by the intake then.
    Order,
}

impl std::fmt::Display for JoinedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinedBy::BmcAddress(m) => write!(
                f,
                "by BMC address (the BMC it reads in-band has LAN MAC {m})"
            ),
            JoinedBy::Serial(s) => write!(
                f,
                "by serial {s} (the system's DMI serial = the BMC's FRU serial)"
            ),
            JoinedBy::Order => write!(f, "by order (the only machine the intake had powered on)"),
        }
    }
}

fn same_serial(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}

/// Which candidate a machine is that reports `bmc_mac` (its BMC's LAN MAC
/// read in-band; "" without an IPMI interface) and `dmi_serial`: the one
/// whose BMC has that MAC, else the one whose FRU serial it equals (when
/// exactly one does), else `alone` — the node the intake powered on by
/// itself — unless the MAC or serial names another candidate.
pub fn choose(
    candidates: &[Candidate],
    alone: Option<&str>,
    bmc_mac: &str,
    dmi_serial: &str,
) -> Option<(String, JoinedBy)> {
    let by_bmc: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !c.bmc_mac.is_empty() && c.bmc_mac.eq_ignore_ascii_case(bmc_mac.trim()))
        .collect();
    if let [one] = by_bmc.as_slice() {
        return Some((
            one.node_id.clone(),
            JoinedBy::BmcAddress(one.bmc_mac.clone()),
        ));
    }
    let matching: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| same_serial(&c.serial, dmi_serial))
        .collect();
    if let [one] = matching.as_slice() {
        return Some((
            one.node_id.clone(),
            JoinedBy::Serial(dmi_serial.trim().to_string()),
        ));
    }
    let alone = alone?;
    if !matching.is_empty() && !matching.iter().any(|c| c.node_id == alone) {
        return None;
    }
    candidates
        .iter()
        .any(|c| c.node_id == alone)
        .then(|| (alone.to_string(), JoinedBy::Order))
}

/// A machine joined to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub node_id: String,
    pub mac: String,
    pub by: JoinedBy,
}

/// One intake round.
pub struct Round {
    pub candidates: Vec<Candidate>,
    /// The node powered on alone (the order phase).
    pub alone: Option<String>,
    pub joined: tokio::sync::mpsc::UnboundedSender<Joined>,
}

/// The intake round in progress, if any (one at a time).
#[derive(Default)]
pub struct Desk {
    round: Mutex<Option<Round>>,
    active: Arc<AtomicBool>,
}

impl Desk {
    /// Opens a round; `false` when one already runs.
    pub fn open(&self, round: Round) -> bool {
        let mut r = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_some() {
            return false;
        }
        *r = Some(round);
        self.active.store(true, Ordering::SeqCst);
        true
    }

    pub fn close(&self) {
        *self.round.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.active.store(false, Ordering::SeqCst);
    }

    /// Whether a round runs (discovery answers are on meanwhile).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// The flag the DHCP thread reads.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.active.clone()
    }

    /// Sets (or clears) the node powered on alone.
    pub fn set_alone(&self, node_id: Option<String>) {
        if let Some(r) = self
            .round
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            r.alone = node_id;
        }
    }

    /// The node a machine with `mac` and `dmi_serial` joins, taken out of
    /// the round, if any; [`Desk::report`] it once recorded.
    pub fn take(&self, mac: &str, bmc_mac: &str, dmi_serial: &str) -> Option<Joined> {
        let mut guard = self.round.lock().unwrap_or_else(|e| e.into_inner());
        let r = guard.as_mut()?;
        let (node_id, by) = choose(&r.candidates, r.alone.as_deref(), bmc_mac, dmi_serial)?;
        r.candidates.retain(|c| c.node_id != node_id);
        if r.alone.as_deref() == Some(node_id.as_str()) {
            r.alone = None;
        }
        Some(Joined {
            node_id,
            mac: mac.to_string(),
            by,
        })
    }

    /// Tells the round's owner (the scan job) a machine was joined.
    pub fn report(&self, joined: Joined) {
        if let Some(r) = self
            .round
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = r.joined.send(joined);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, serial: &str) -> Candidate {
        Candidate {
            node_id: id.into(),
            serial: serial.into(),
            bmc_mac: String::new(),
        }
    }

    #[test]
    fn a_serial_names_its_node_and_order_is_the_fallback() {
        let cands = [c("n-a", "SN-A"), c("n-b", "SN-B"), c("n-c", "")];
        assert_eq!(
            choose(&cands, None, "", " sn-b "),
            Some(("n-b".into(), JoinedBy::Serial("sn-b".into())))
        );
        // No serial match and nobody alone: not joined.
        assert_eq!(choose(&cands, None, "", "OTHER"), None);
        assert_eq!(choose(&cands, None, "", ""), None);
        // Powered on alone: joined by order…
        assert_eq!(
            choose(&cands, Some("n-c"), "", ""),
            Some(("n-c".into(), JoinedBy::Order))
        );
        assert_eq!(
            choose(&cands, Some("n-c"), "", "QEMU-1"),
            Some(("n-c".into(), JoinedBy::Order))
        );
        // …unless its serial says it is another candidate.
        assert_eq!(
            choose(&cands, Some("n-c"), "", "SN-A"),
            Some(("n-a".into(), JoinedBy::Serial("SN-A".into())))
        );
        // Two candidates with the same serial: the serial decides nothing.
        let twins = [c("n-a", "DUP"), c("n-b", "DUP")];
        assert_eq!(choose(&twins, None, "", "DUP"), None);
        assert_eq!(
            choose(&twins, Some("n-b"), "", "DUP"),
            Some(("n-b".into(), JoinedBy::Order))
        );
        assert_eq!(
            choose(&[c("n-x", "DUP"), c("n-y", "DUP")], Some("n-z"), "", "DUP"),
            None
        );
    }

    #[test]
    fn the_bmc_a_machine_reaches_in_band_names_it_first() {
        let mut a = c("n-a", "SN-A");
        a.bmc_mac = "02:00:00:99:01:00".into();
        let cands = [a, c("n-b", "SN-B")];
        // Even with another candidate's serial (a swapped board).
        assert_eq!(
            choose(&cands, Some("n-b"), "02:00:00:99:01:00", "SN-B"),
            Some((
                "n-a".into(),
                JoinedBy::BmcAddress("02:00:00:99:01:00".into())
            ))
        );
        // An unknown BMC MAC decides nothing: the serial does.
        assert_eq!(
            choose(&cands, None, "02:00:00:99:01:99", "SN-B"),
            Some(("n-b".into(), JoinedBy::Serial("SN-B".into())))
        );
    }

    #[test]
    fn a_round_hands_each_node_out_once_and_reports_it() {
        let desk = Desk::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(desk.open(Round {
            candidates: vec![c("n-a", "SN-A"), c("n-b", "")],
            alone: None,
            joined: tx.clone(),
        }));
        assert!(desk.active());
        assert!(!desk.open(Round {
            candidates: vec![],
            alone: None,
            joined: tx,
        }));
        let a = desk.take("52:54:00:00:00:01", "", "SN-A").unwrap();
        assert_eq!(a.node_id, "n-a");
        desk.report(a);
        assert_eq!(desk.take("52:54:00:00:00:02", "", "SN-A"), None);
        desk.set_alone(Some("n-b".into()));
        let j = desk.take("52:54:00:00:00:03", "", "").unwrap();
        assert_eq!((j.node_id.as_str(), &j.by), ("n-b", &JoinedBy::Order));
        desk.report(j);
        assert_eq!(rx.try_recv().unwrap().mac, "52:54:00:00:00:01");
        assert_eq!(rx.try_recv().unwrap().mac, "52:54:00:00:00:03");
        desk.close();
        assert!(!desk.active());
        assert_eq!(desk.take("52:54:00:00:00:04", "", ""), None);
    }
}
