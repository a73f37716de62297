//! The agent's side of rackboot's callback protocol (pxe-templates/README.md):
//! `POST <callback>/<event>` with a form or JSON body; the answer to the
//! inventory is the plan (what to write where) in deploy mode.

use serde::Deserialize;
use std::time::Duration;

/// The HTTP client the agent uses for everything.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// What the daemon wants done after the inventory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Plan {
    /// Write `image` to `/dev/<disk>`.
    Deploy {
        disk: String,
        /// How the disk was chosen (for the console).
        #[serde(default)]
        why: String,
        image: Image,
        /// Leave the callback URL in sector 1 for the installed OS's first
        /// boot (the lab's test image).
        #[serde(default)]
        first_boot: bool,
        /// The cloud-init NoCloud seed for the installed OS's root file
        /// system (image deploys of a Linux image).
        #[serde(default)]
        seed: Option<crate::disks::Seed>,
    },
    /// Wipe `disks` (`how`: `metadata` or `zero`): UnprovisionBMNodes.
    Wipe { disks: Vec<String>, how: String },
    /// Nothing more to do (inspection, discovery).
    Wait,
}

/// The image as rackboot prepared it: a raw disk image served at `path`
/// (on the callback's server), of which only `extents` hold data.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Image {
    pub path: String,
    /// The disk bytes it covers.
    pub virtual_size: u64,
    /// (offset, length) of the data, in order.
    pub extents: Vec<(u64, u64)>,
    /// Bytes in the extents.
    #[serde(default)]
    pub data_bytes: u64,
    /// SHA-256 of the extents' bytes in order.
    #[serde(default)]
    pub digest: String,
}

/// Talks to one callback URL.
pub struct Reporter {
    pub callback: String,
    http: ureq::Agent,
}

impl Reporter {
    pub fn new(callback: &str) -> Reporter {
        Reporter {
            callback: callback.trim_end_matches('/').to_string(),
            http: agent(),
        }
    }

    /// Posts `body` to `<callback>/<event>`; returns the status and body.
    pub fn post(
        &self,
        event: &str,
        content_type: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let url = format!("{}/{event}", self.callback);
        let mut last = String::new();
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            match self
                .http
                .post(&url)
                .header("Content-Type", content_type)
                .send(body)
            {
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    let text = r.body_mut().read_to_string().unwrap_or_default();
                    if status >= 500 {
                        last = format!("HTTP {status}: {}", text.trim());
                        continue;
                    }
                    return Ok((status, text));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("cannot post {event} to {url}: {last}"))
    }

    /// A form-encoded event (`progress`, `failed`, `done`, `booted`).
    pub fn event(&self, event: &str, form: &[(&str, &str)]) -> Result<(), String> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        match self.post(event, "application/x-www-form-urlencoded", &body)? {
            (200..=299, _) => Ok(()),
            (status, text) => Err(format!("{event}: HTTP {status}: {}", text.trim())),
        }
    }

    /// Posts the inventory; the daemon's plan (`Wait` for a plain "ok"),
    /// or why it refused.
    pub fn inventory(&self, json: &str) -> Result<Plan, String> {
        match self.post("inventory", "application/json", json)? {
            (200..=299, text) if text.trim_start().starts_with('{') => serde_json::from_str(&text)
                .map_err(|e| format!("the daemon's plan is not understood ({e}): {text}")),
            (200..=299, _) => Ok(Plan::Wait),
            (status, text) => Err(format!(
                "the daemon refused the inventory (HTTP {status}): {}",
                text.trim()
            )),
        }
    }
}

/// Percent-encodes a form value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse() {
        let p: Plan = serde_json::from_str(r#"{"action":"deploy","disk":"sdb","why":"hints","image":{"path":"/images/x/image","virtual_size":4096,"extents":[[0,512],[1024,512]],"data_bytes":1024,"digest":"ab"},"first_boot":true}"#).unwrap();
        assert_eq!(
            p,
            Plan::Deploy {
                disk: "sdb".into(),
                why: "hints".into(),
                image: Image {
                    path: "/images/x/image".into(),
                    virtual_size: 4096,
                    extents: vec![(0, 512), (1024, 512)],
                    data_bytes: 1024,
                    digest: "ab".into()
                },
                first_boot: true,
                seed: None,
            }
        );
        assert_eq!(
            serde_json::from_str::<Plan>(r#"{"action":"wait"}"#).unwrap(),
            Plan::Wait
        );
        assert_eq!(encode("sha256 mismatch: a/b"), "sha256+mismatch%3A+a%2Fb");
    }
}
