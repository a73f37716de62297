//! "Why didn't it boot?": rules over one network-boot attempt of a machine
//! (its boot timeline since the power cycle), its registration and what its
//! BMC said, naming the likely cause when the boot stalled. Pure: the
//! provisioner (at a step2/step3 timeout) and DescribeBootEvents hand it
//! what they read.

/// One timeline line of the attempt (oldest first): `kind` is `dhcp`,
/// `tftp`, `http`, `callback` or `bmc`.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub kind: &'a str,
    pub detail: &'a str,
}

/// What is known about the attempt.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'a> {
    /// The machine's PXE MAC.
    pub mac: &'a str,
    /// Its timeline since the power cycle, oldest first.
    pub lines: &'a [Line<'a>],
    /// The BMC's power state read after the wait (`None`: not read).
    pub power_on: Option<bool>,
    /// Whether the boot device read back from the BMC is PXE (`None`: not
    /// read).
    pub boot_pxe: Option<bool>,
    /// Unregistered MACs whose PXE firmware asked DHCP during the attempt.
    pub strangers: &'a [String],
}

/// The likely cause: a stable name (`cause`, for scripts) and a sentence
/// for people that says what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub cause: &'static str,
    pub text: String,
}

fn diag(cause: &'static str, text: String) -> Option<Diagnosis> {
    Some(Diagnosis { cause, text })
}

/// Names the stage where the attempt stalled, furthest stage first: the
/// ramdisk's own failure, a ramdisk that never called back, a boot script
/// whose kernel was never requested, a transfer that stopped, DHCP that did
/// not complete (firmware mode, another server, no answer), no DHCP at all
/// (power, boot flags, wrong MAC). `None` when the attempt ended well or
/// nothing stands out.
pub fn diagnose(f: &Facts) -> Option<Diagnosis> {
    // An attempt that began with a boot from disk (or CD) is no network boot.
    if f.lines
        .first()
        .is_some_and(|l| l.kind == "bmc" && !l.detail.contains("boot device pxe"))
    {
        return None;
    }
    let of = |kinds: &[&str]| -> Vec<&str> {
        f.lines
            .iter()
            .filter(|l| kinds.contains(&l.kind))
            .map(|l| l.detail)
            .collect()
    };
    let dhcp = of(&["dhcp"]);
    let files = of(&["tftp", "http"]);
    let callbacks = of(&["callback"]);

    if let Some(last) = callbacks.last() {
        if let Some(message) = last.strip_prefix("failed: ") {
            return diag(
                "ramdisk_failed",
                format!("the deploy ramdisk reported a failure: {message}"),
            );
        }
        return None;
    }
    // Told to boot from its disk: no deploy to wait for.
    if files.iter().any(|d| d.contains("local-disk boot script")) {
        return None;
    }
    let stopped = |d: &&str| {
        d.contains(": not sent (") || d.contains(": stopped after") || d.ends_with(" (incomplete)")
    };
    let begun = |d: &&str| d.contains(": started (");
    let done = |d: &&str| !stopped(d) && !begun(d);
    let fetched = |what: &str| files.iter().any(|d| d.contains(what) && done(d));
    if fetched("kernel") && fetched("initrd") {
        return diag(
            "no_callback",
            "the node fetched the deploy kernel and initrd but the ramdisk never called back: it did not come up or cannot reach rackboot's HTTP address (see the node's console)".to_string(),
        );
    }
    // A transfer that stopped and was not completed later (firmware often
    // aborts a first TFTP request after reading the size).
    let file_of = |d: &str| d.split(": ").next().unwrap_or("").to_string();
    if let Some(line) = files
        .iter()
        .rev()
        .filter(|d| stopped(d))
        .find(|d| !files.iter().any(|ok| done(ok) && file_of(ok) == file_of(d)))
    {
        return diag(
            "transfer_stopped",
            format!(
                "a file transfer to the node did not complete ({line}): check the MTU on the path, the firmware's timeouts and any firewall between the node and rackboot"
            ),
        );
    }
    // A transfer that began and has not ended (no later line of its file).
    if let Some((i, line)) = files.iter().enumerate().rev().find(|(_, d)| begun(d)) {
        if !files[i + 1..].iter().any(|d| file_of(d) == file_of(line)) {
            return diag(
                "transfer_stalled",
                format!(
                    "a file transfer to the node began and has not ended ({line}): the link or a firewall between the node and rackboot may drop it mid-way; check the MTU too"
                ),
            );
        }
    }
    if fetched("kernel") {
        return diag(
            "initrd_not_requested",
            "the node fetched the deploy kernel but never the initrd: check the boot loader's output on the node's console and that the initrd file exists on the deploy host".to_string(),
        );
    }
    let scripts = ["boot script", "install config", "grub.cfg", "pxelinux.cfg"];
    if files.iter().any(|d| scripts.iter().any(|s| d.contains(s))) {
        return diag(
            "kernel_not_requested",
            "the boot script was served but the kernel was never requested: check the boot loader's output on the node's console and that the kernel file exists on the deploy host".to_string(),
        );
    }
    if !files.is_empty() {
        return diag(
            "script_not_requested",
            format!(
                "the node fetched its boot loader ({}) but never asked for its boot script: check the loader's output on the node's console (under Secure Boot, firmware refuses an unsigned loader)",
                files[files.len() - 1]
            ),
        );
    }
    if let Some(mode) = dhcp.iter().rev().find_map(|d| {
        let at = d.find("(asked as ")?;
        let rest = &d[at + 1..];
        Some(&rest[..rest.find(')')?])
    }) {
        return diag(
            "firmware_mode",
            format!(
                "its firmware {mode}: set boot_mode (ModifyBMNodeAttributes) or the firmware's boot mode"
            ),
        );
    }
    if !dhcp.is_empty() {
        let acked = dhcp.iter().any(|d| d.contains("→ ACK"));
        let offered = dhcp.iter().any(|d| d.contains("→ OFFER"));
        // A REQUEST naming another server took that server's offer.
        let elsewhere = dhcp
            .iter()
            .any(|d| d.contains("(request for another server)"));
        let requested = dhcp
            .iter()
            .any(|d| d.starts_with("REQUEST") && !d.contains("(request for another server)"));
        if acked {
            return diag(
                "boot_file_not_requested",
                "the node got its address and boot file name (DHCP ACK) but never requested the file: check that TFTP/HTTP from the node to rackboot is not filtered".to_string(),
            );
        }
        if offered && !requested {
            let what = if elsewhere {
                "the node took another DHCP server's offer (its REQUEST named another server)"
            } else {
                "another DHCP server probably answered first"
            };
            return diag(
                "offer_not_taken",
                format!("rackboot offered an address but the node never requested it: {what}; stop that server, or run rackboot beside it in proxy mode (dhcp.mode = \"proxy\")"),
            );
        }
        if let Some(why) = dhcp
            .iter()
            .rev()
            .find_map(|d| d.split_once(": no answer ("))
        {
            return diag(
                "dhcp_not_answered",
                format!("the node asked DHCP but rackboot did not answer ({}", why.1),
            );
        }
        return None;
    }
    if f.power_on == Some(false) {
        return diag(
            "power_off",
            "the BMC reports the power still off after the power cycle: check the BMC's power control and the chassis".to_string(),
        );
    }
    if f.boot_pxe == Some(false) {
        return diag(
            "boot_flags",
            "no DHCP from the node, and the boot device read back from its BMC is not PXE: the BMC ignored the boot override or the firmware used it for another device".to_string(),
        );
    }
    let mut text = format!(
        "no DHCP request from {} since the power cycle: check the PXE MAC, that the NIC network-boots, the switch port and the VLAN",
        f.mac
    );
    if !f.strangers.is_empty() {
        text.push_str(&format!(
            "; meanwhile PXE firmware of unregistered MAC(s) {} asked: is one of them this node's PXE MAC?",
            f.strangers.join(", ")
        ));
    }
    diag("no_dhcp", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines<'a>(l: &'a [(&'a str, &'a str)]) -> Vec<Line<'a>> {
        l.iter()
            .map(|(kind, detail)| Line { kind, detail })
            .collect()
    }

    fn cause(
        l: &[(&str, &str)],
        power_on: Option<bool>,
        boot_pxe: Option<bool>,
        strangers: &[String],
    ) -> Option<Diagnosis> {
        let lines = lines(l);
        diagnose(&Facts {
            mac: "52:54:00:00:00:01",
            lines: &lines,
            power_on,
            boot_pxe,
            strangers,
        })
    }

    const CYCLE: (&str, &str) = ("bmc", "step1: boot device pxe (next boot), power cycle");
    const DISCOVER: (&str, &str) = (
        "dhcp",
        "DISCOVER, arch 0 → OFFER 10.0.0.5, boot undionly.kpxe",
    );
    const ACK: (&str, &str) = ("dhcp", "REQUEST, arch 0 → ACK 10.0.0.5, boot undionly.kpxe");

    #[test]
    fn no_dhcp_names_the_mac_and_unregistered_pxe_clients_seen_meanwhile() {
        let d = cause(
            &[CYCLE],
            Some(true),
            Some(true),
            &["52:54:00:00:00:99".to_string()],
        )
        .unwrap();
        assert_eq!(d.cause, "no_dhcp");
        assert!(
            d.text.contains("no DHCP request from 52:54:00:00:00:01"),
            "{}",
            d.text
        );
        assert!(d.text.contains("52:54:00:00:00:99"), "{}", d.text);
        let d = cause(&[CYCLE], None, None, &[]).unwrap();
        assert!(!d.text.contains("unregistered"), "{}", d.text);
    }

    #[test]
    fn power_and_boot_flags_explain_a_silent_node() {
        assert_eq!(
            cause(&[CYCLE], Some(false), Some(true), &[]).unwrap().cause,
            "power_off"
        );
        assert_eq!(
            cause(&[CYCLE], Some(true), Some(false), &[]).unwrap().cause,
            "boot_flags"
        );
    }

    #[test]
    fn an_offer_never_requested_points_at_another_dhcp_server() {
        let d = cause(&[CYCLE, DISCOVER, DISCOVER], None, None, &[]).unwrap();
        assert_eq!(d.cause, "offer_not_taken");
        assert!(d.text.contains("proxy"), "{}", d.text);
    }

    #[test]
    fn a_request_for_another_server_is_an_offer_not_taken() {
        let d = cause(
            &[
                CYCLE,
                DISCOVER,
                ("dhcp", "REQUEST: no answer (request for another server)"),
            ],
            None,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(d.cause, "offer_not_taken");
        assert!(
            d.text.contains("took another DHCP server's offer"),
            "{}",
            d.text
        );
    }

    #[test]
    fn a_firmware_in_the_other_mode_is_named() {
        let d = cause(
            &[("dhcp", "DISCOVER, arch 0 (asked as BIOS, registered uefi) → OFFER 10.0.0.5, boot undionly.kpxe")],
            None,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(d.cause, "firmware_mode");
        assert!(
            d.text.contains("asked as BIOS, registered uefi"),
            "{}",
            d.text
        );
    }

    #[test]
    fn an_unanswered_request_says_why() {
        let d = cause(
            &[("dhcp", "DISCOVER, arch 7: no answer (the pool is full)")],
            None,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(d.cause, "dhcp_not_answered");
        assert!(d.text.ends_with("(the pool is full)"), "{}", d.text);
        // A boot from disk is not a network boot: nothing to say.
        let disk = ("bmc", "step4: boot device disk (next boot), power cycle");
        assert_eq!(cause(&[disk], Some(true), None, &[]), None);
        let d = cause(
            &[("dhcp", "DISCOVER, arch 7: no answer (the pool is full)")],
            None,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(d.cause, "dhcp_not_answered");
        assert!(d.text.ends_with("(the pool is full)"), "{}", d.text);
    }

    #[test]
    fn each_later_stage_is_named() {
        let tftp_ok = ("tftp", "undionly.kpxe: 100000 bytes in 40 ms");
        assert_eq!(
            cause(&[DISCOVER, ACK], None, None, &[]).unwrap().cause,
            "boot_file_not_requested"
        );
        assert_eq!(
            cause(
                &[
                    DISCOVER,
                    ACK,
                    ("tftp", "undionly.kpxe: not sent (no ACK for 30 s)")
                ],
                None,
                None,
                &[]
            )
            .unwrap()
            .cause,
            "transfer_stopped"
        );
        assert_eq!(
            cause(
                &[
                    DISCOVER,
                    ACK,
                    (
                        "http",
                        "GET /files/deploy/initrd: 1000 of 5000 bytes in 9 ms (incomplete)"
                    )
                ],
                None,
                None,
                &[]
            )
            .unwrap()
            .cause,
            "transfer_stopped"
        );
        assert_eq!(
            cause(&[DISCOVER, ACK, tftp_ok], None, None, &[])
                .unwrap()
                .cause,
            "script_not_requested"
        );
        // A size probe aborted by the firmware, then the whole file: fine.
        let probe = (
            "tftp",
            "undionly.kpxe: not sent (the client ended the transfer)",
        );
        assert_eq!(
            cause(&[DISCOVER, ACK, probe, tftp_ok], None, None, &[])
                .unwrap()
                .cause,
            "script_not_requested"
        );
        let script = ("http", "GET /boot/n-abcdefgh.ipxe: deploy boot script");
        assert_eq!(
            cause(&[DISCOVER, ACK, tftp_ok, script], None, None, &[])
                .unwrap()
                .cause,
            "kernel_not_requested"
        );
        let kernel = ("http", "GET /files/deploy/kernel: 9000 bytes in 3 ms");
        let initrd = ("http", "GET /files/deploy/initrd: 9000 bytes in 3 ms");
        let d = cause(
            &[DISCOVER, ACK, tftp_ok, script, kernel, initrd],
            None,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(d.cause, "no_callback");
        let begun = ("http", "GET /files/deploy/kernel: started (9000 bytes)");
        assert_eq!(
            cause(&[DISCOVER, ACK, tftp_ok, script, begun], None, None, &[])
                .unwrap()
                .cause,
            "transfer_stalled"
        );
        assert_eq!(
            cause(
                &[DISCOVER, ACK, tftp_ok, script, begun, kernel],
                None,
                None,
                &[]
            )
            .unwrap()
            .cause,
            "initrd_not_requested",
            "a kernel that came whole, no initrd: not the transfer's fault"
        );
        let failed = (
            "callback",
            "failed: sha256 mismatch: expected 1234, got 5678",
        );
        let d = cause(
            &[DISCOVER, ACK, tftp_ok, script, kernel, initrd, failed],
            None,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(d.cause, "ramdisk_failed");
        assert!(d.text.contains("expected 1234, got 5678"), "{}", d.text);
        let local = ("http", "GET /boot/n-abcdefgh.ipxe: local-disk boot script");
        assert_eq!(
            cause(&[DISCOVER, ACK, tftp_ok, local], None, None, &[]),
            None
        );
        let done = ("callback", "done");
        assert_eq!(
            cause(
                &[DISCOVER, ACK, tftp_ok, script, kernel, initrd, done],
                None,
                None,
                &[]
            ),
            None
        );
    }
}
