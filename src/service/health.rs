//! The daemon's health as a user or a monitor asks for it: the `GetHealth`
//! report (version, schema, whether the store answers, which network
//! services listen where, the last power-sync round, nodes and running
//! jobs), the gauges of the metrics refreshed from the store before a
//! scrape, and the one-line status systemd shows.

use crate::foundation::metrics::metrics;
use crate::foundation::shared::Shared;
use crate::foundation::store::{Counts, StoreError};
use std::collections::BTreeMap;

/// What `GetHealth` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub version: &'static str,
    pub schema_version: i64,
    /// `None`: the store answers and passes its quick check; else why not.
    pub store_error: Option<String>,
    /// Network service → where it listens.
    pub listening: BTreeMap<&'static str, String>,
    pub started_at: i64,
    pub last_power_sync: Option<i64>,
    pub counts: Counts,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.store_error.is_none()
    }

    pub fn nodes(&self) -> i64 {
        self.counts.nodes_by_status.iter().map(|(_, n)| n).sum()
    }

    pub fn running_jobs(&self) -> i64 {
        self.counts
            .jobs
            .iter()
            .filter(|(_, s, _)| s == "running")
            .map(|(_, _, n)| n)
            .sum()
    }

    /// systemd's status line: "42 nodes, 1 job running, PXE on br0".
    pub fn status_line(&self, pxe_interface: &str) -> String {
        let nodes = self.nodes();
        let jobs = self.running_jobs();
        let pxe = if self.listening.contains_key("dhcp") {
            format!("PXE on {pxe_interface}")
        } else if self.listening.contains_key("http") {
            "HTTP boot only".to_string()
        } else {
            "PXE off".to_string()
        };
        let store = match &self.store_error {
            None => String::new(),
            Some(e) => format!(", STORE FAILING: {e}"),
        };
        format!(
            "{nodes} node{}, {jobs} job{} running, {pxe}{store}",
            if nodes == 1 { "" } else { "s" },
            if jobs == 1 { "" } else { "s" },
        )
    }
}

/// Gathers the health report; `check`: with SQLite's quick check of the
/// whole database (what `GetHealth` asks; the periodic status skips it).
pub async fn health(shared: &Shared, check: bool) -> Health {
    let (counts, schema) = (
        shared.store.counts().await,
        shared.store.schema_version().await,
    );
    let check = if check {
        shared.store.quick_check().await
    } else {
        Ok(())
    };
    let store_error = match (&counts, &schema, &check) {
        (Ok(_), Ok(_), Ok(())) => None,
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Some(e.to_string()),
    };
    Health {
        version: env!("CARGO_PKG_VERSION"),
        schema_version: schema.unwrap_or(0),
        store_error,
        listening: shared.listening(),
        started_at: shared.started_at,
        last_power_sync: shared.last_power_sync(),
        counts: counts.unwrap_or_default(),
    }
}

/// Sets the metrics' gauges from the store (before a scrape).
pub async fn refresh_gauges(shared: &Shared) -> Result<(), StoreError> {
    let c = shared.store.counts().await?;
    let m = metrics();
    m.nodes.reset();
    for (status, n) in &c.nodes_by_status {
        m.nodes.with_label_values(&[status]).set(*n);
    }
    m.nodes_power.reset();
    for (state, n) in &c.nodes_by_power {
        m.nodes_power.with_label_values(&[state]).set(*n);
    }
    m.bmcs_unreachable.set(c.bmcs_unreachable);
    m.jobs.reset();
    for (action, status, n) in &c.jobs {
        m.jobs.with_label_values(&[action, status]).set(*n);
    }
    m.dhcp_leases.set(c.leases);
    m.up_since.set(shared.started_at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(nodes: i64, jobs: i64, listening: &[&'static str]) -> Health {
        Health {
            version: "0.1.0",
            schema_version: 8,
            store_error: None,
            listening: listening.iter().map(|n| (*n, "x".to_string())).collect(),
            started_at: 0,
            last_power_sync: None,
            counts: Counts {
                nodes_by_status: vec![("ready".into(), nodes)],
                jobs: vec![("ProvisionBMNodes".into(), "running".into(), jobs)],
                ..Counts::default()
            },
        }
    }

    #[test]
    fn the_status_line_says_nodes_jobs_and_pxe() {
        assert_eq!(
            report(42, 1, &["api", "dhcp", "tftp", "http"]).status_line("br0"),
            "42 nodes, 1 job running, PXE on br0"
        );
        assert_eq!(
            report(1, 0, &["api"]).status_line(""),
            "1 node, 0 jobs running, PXE off"
        );
        let mut sick = report(0, 2, &["api", "http"]);
        sick.store_error = Some("disk I/O error".into());
        assert_eq!(
            sick.status_line(""),
            "0 nodes, 2 jobs running, HTTP boot only, STORE FAILING: disk I/O error"
        );
    }
}
