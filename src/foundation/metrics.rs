//! Prometheus metrics of the whole daemon: one process-wide registry
//! ([`metrics`]) with the counters and histograms that the transports and
//! services add to as things happen (DHCP packets, TFTP/HTTP transfers, API
//! requests, BMC operations, provision steps), and the gauges of what the
//! store holds (nodes by status and power state, unreachable BMCs, jobs,
//! leases), set from the store just before each scrape. [`encode`] writes
//! the text exposition format (0.0.4). The HTTP endpoint is
//! `transport::metrics`.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// DHCP packets taken in, by message type and what was done.
    pub dhcp_packets: IntCounterVec,
    /// TFTP transfers by result (`ok`, `failed`), and their bytes.
    pub tftp_transfers: IntCounterVec,
    pub tftp_bytes: IntCounterVec,
    /// HTTP boot transfers by result (`ok`, `incomplete`, `failed`), and bytes.
    pub http_transfers: IntCounterVec,
    pub http_bytes: IntCounterVec,
    /// API requests by action and ret_code, in seconds.
    pub api_requests: HistogramVec,
    /// BMC operations by operation and result, in seconds.
    pub bmc_operations: HistogramVec,
    /// Provision (and inspect, clean) steps by job action, step and result, in seconds.
    pub provision_steps: HistogramVec,
    /// Set before each scrape from the store.
    pub nodes: IntGaugeVec,
    pub nodes_power: IntGaugeVec,
    pub bmcs_unreachable: IntGauge,
    pub jobs: IntGaugeVec,
    pub dhcp_leases: IntGauge,
    pub up_since: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        // 0.5 ms … 16 s for requests and BMC operations; 1 s … ~2.3 h for steps.
        let fast = exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
        let slow = exponential_buckets(1.0, 2.0, 14).expect("valid buckets");
        Metrics {
            dhcp_packets: counter(
                &r,
                "rackboot_dhcp_packets_total",
                "DHCP packets taken in, by message type and answer (ignored: no answer)",
                &["type", "answer"],
            ),
            tftp_transfers: counter(
                &r,
                "rackboot_tftp_transfers_total",
                "TFTP transfers by result",
                &["result"],
            ),
            tftp_bytes: counter(
                &r,
                "rackboot_tftp_bytes_total",
                "Bytes sent over TFTP, by transfer result",
                &["result"],
            ),
            http_transfers: counter(
                &r,
                "rackboot_http_transfers_total",
                "HTTP boot file transfers by result",
                &["result"],
            ),
            http_bytes: counter(
                &r,
                "rackboot_http_bytes_total",
                "Bytes of boot files sent over HTTP, by transfer result",
                &["result"],
            ),
            api_requests: histogram(
                &r,
                "rackboot_api_request_duration_seconds",
                "API requests by action and ret_code",
                &["action", "ret_code"],
                fast.clone(),
            ),
            bmc_operations: histogram(
                &r,
                "rackboot_bmc_operation_duration_seconds",
                "BMC operations (IPMI or Redfish) by operation and result",
                &["operation", "result"],
                fast,
            ),
            provision_steps: histogram(
                &r,
                "rackboot_provision_step_duration_seconds",
                "Steps of provision, inspection and cleaning jobs, by job action, step and result",
                &["job_action", "step", "result"],
                slow,
            ),
            nodes: gauges(
                &r,
                "rackboot_nodes",
                "Registered nodes by status",
                &["status"],
            ),
            nodes_power: gauges(
                &r,
                "rackboot_nodes_power",
                "Registered nodes by last known power state",
                &["state"],
            ),
            bmcs_unreachable: gauge(
                &r,
                "rackboot_bmcs_unreachable",
                "Nodes whose BMC is marked unreachable by the power sync",
            ),
            jobs: gauges(
                &r,
                "rackboot_jobs",
                "Jobs kept in the store, by action and status",
                &["action", "status"],
            ),
            dhcp_leases: gauge(
                &r,
                "rackboot_dhcp_leases",
                "DHCP leases in use (bound, written to the store)",
            ),
            up_since: gauge(
                &r,
                "rackboot_start_time_seconds",
                "When the daemon started, Unix seconds",
            ),
            registry: r,
        }
    }
}

/// The daemon's metrics (created at first use).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The text exposition of every metric.
pub fn encode() -> String {
    let mut out = Vec::new();
    let families = metrics().registry.gather();
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The Content-Type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Times a piece of work for a histogram: `observe` with its labels when done.
pub struct Timer(std::time::Instant);

impl Timer {
    pub fn start() -> Timer {
        Timer(std::time::Instant::now())
    }

    pub fn observe(&self, h: &HistogramVec, labels: &[&str]) {
        h.with_label_values(labels)
            .observe(self.0.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_with_help_and_type() {
        let m = metrics();
        m.dhcp_packets
            .with_label_values(&["DISCOVER", "offer"])
            .inc();
        m.api_requests
            .with_label_values(&["DescribeBMNodes", "0"])
            .observe(0.002);
        m.nodes.with_label_values(&["ready"]).set(3);
        let text = encode();
        assert!(
            text.contains("# TYPE rackboot_dhcp_packets_total counter"),
            "{text}"
        );
        assert!(
            text.contains("rackboot_dhcp_packets_total{answer=\"offer\",type=\"DISCOVER\"} 1"),
            "{text}"
        );
        assert!(text.contains("rackboot_api_request_duration_seconds_bucket{action=\"DescribeBMNodes\",ret_code=\"0\",le=\"0.004\"} 1"), "{text}");
        assert!(
            text.contains("rackboot_nodes{status=\"ready\"} 3"),
            "{text}"
        );
    }
}
