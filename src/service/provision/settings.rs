//! What one provision or unprovision of a node is asked for beyond its
//! record: for an image deploy, the cloud-init data the installed OS gets
//! on its first boot (SSH keys, user data, a hostname), and for an
//! unprovision, how its disks are wiped. Held in memory by the node's task
//! for the length of the job only (user data may carry secrets: it is never
//! stored, logged or described).
//!
//! The cloud-init seed is a NoCloud seed the deploy ramdisk writes into the
//! image's root file system (`/var/lib/cloud/seed/nocloud/`): `meta-data`,
//! `network-config` (v2, from the node's management network) and
//! `user-data` — rackboot's own cloud-config (hostname, keys, the first-boot
//! callback) and, when given, the caller's user data, as one MIME multipart
//! document. The texts come from `pxe-templates/cloud-init/`.

use crate::foundation::templates::{BootVars, Templates};
use serde::Serialize;

/// How UnprovisionBMNodes wipes the disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wipe {
    /// Partition tables at both ends of every disk, and the first and last
    /// MiB of every partition (file-system, LVM and RAID signatures), as
    /// Ironic's `erase_devices_metadata`.
    #[default]
    Metadata,
    /// Every byte (the device zeroes without moving data when it can).
    Zero,
    /// No wipe: the node is only powered off.
    None,
}

impl Wipe {
    pub fn parse(s: &str) -> Option<Wipe> {
        match s {
            "metadata" => Some(Wipe::Metadata),
            "zero" => Some(Wipe::Zero),
            "none" => Some(Wipe::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Wipe::Metadata => "metadata",
            Wipe::Zero => "zero",
            Wipe::None => "none",
        }
    }
}

/// The settings of one node's run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploySettings {
    /// OpenSSH public keys for root (and the image's default user).
    pub ssh_keys: Vec<String>,
    /// The caller's cloud-init user data (at most [`MAX_USER_DATA`]).
    pub user_data: String,
    /// The installed OS's host name ("" = the node's).
    pub hostname: String,
    /// UnprovisionBMNodes' wipe.
    pub wipe: Wipe,
}

/// Largest user data accepted.
pub const MAX_USER_DATA: usize = 64 * 1024;

/// The seed's three files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seed {
    #[serde(rename = "meta-data")]
    pub meta_data: String,
    #[serde(rename = "user-data")]
    pub user_data: String,
    #[serde(rename = "network-config")]
    pub network_config: String,
}

/// The MIME type cloud-init reads a user-data part as.
fn part_type(text: &str) -> &'static str {
    let first = text.lines().next().unwrap_or("").trim();
    if first.starts_with("#cloud-config") {
        "text/cloud-config"
    } else if first.starts_with("#!") {
        "text/x-shellscript"
    } else if first.starts_with("#include") {
        "text/x-include-url"
    } else if first.starts_with("#cloud-boothook") {
        "text/cloud-boothook"
    } else {
        "text/plain"
    }
}

/// Renders the seed for `vars` (mode deploy, with the node, its image and
/// its callback URL), `keys` (the caller's and rackboot's own) and the
/// caller's `user_data`.
pub fn seed(
    templates: &Templates,
    vars: &BootVars,
    hostname: &str,
    instance_id: &str,
    keys: &[String],
    user_data: &str,
) -> Result<Seed, String> {
    #[derive(Serialize)]
    struct CloudVars<'a> {
        hostname: &'a str,
        instance_id: &'a str,
        ssh_keys: &'a [String],
    }
    let extra = CloudVars {
        hostname,
        instance_id,
        ssh_keys: keys,
    };
    let meta = templates.render_with("cloud-init/meta-data", vars, &extra)?;
    let network = templates.render_with("cloud-init/network-config", vars, &extra)?;
    let ours = templates.render_with("cloud-init/user-data", vars, &extra)?;
    let user = if user_data.trim().is_empty() {
        ours
    } else {
        // The caller's part first; rackboot's part appends its keys and
        // callback without replacing what the caller set.
        let boundary = format!("==rackboot-{instance_id}==");
        format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n\
             --{boundary}\nContent-Type: {}; charset=\"utf-8\"\n\n{}\n\
             --{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMerge-Type: list(append)+dict(recurse_array,no_replace)+str()\n\n{ours}\n\
             --{boundary}--\n",
            part_type(user_data),
            user_data.trim_end()
        )
    };
    Ok(Seed {
        meta_data: meta,
        user_data: user,
        network_config: network,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_parts_are_typed_by_their_first_line() {
        assert_eq!(part_type("#cloud-config\nusers: []"), "text/cloud-config");
        assert_eq!(part_type("#!/bin/sh\necho hi"), "text/x-shellscript");
        assert_eq!(part_type("hello"), "text/plain");
        assert_eq!(Wipe::parse("zero"), Some(Wipe::Zero));
        assert_eq!(Wipe::parse("shred"), None);
    }
}
