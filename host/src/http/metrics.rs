//! Prometheus metrics: requests by route and outcome, latency per route, pool occupancy
//! per group (read at scrape time), and the plugin's counters.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// Labels of a request count.
pub struct RequestLabels {
    /// The route's name.
    pub route: &'static str,
    /// `ok`, or the error's code.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// Labels of a latency histogram.
pub struct RouteLabels {
    /// The route's name.
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// Labels of a pool gauge.
pub struct GroupLabels {
    /// The resource group.
    pub group: String,
}

/// The service's metrics and the registry that encodes them.
pub struct Metrics {
    /// Requests by route and outcome.
    pub requests: Family<RequestLabels, prometheus_client::metrics::counter::Counter>,
    /// Latency by route.
    pub latency: Family<RouteLabels, Histogram>,
    /// Numbers per group.
    pub pool_size: Family<GroupLabels, Gauge>,
    /// Live reservations per group.
    pub pool_live: Family<GroupLabels, Gauge>,
    /// Share of each group held.
    pub pool_utilisation: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    /// Offered traffic per group on this node, in Erlangs.
    pub pool_offered: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    /// Erlang B's blocking probability per group at that traffic.
    pub pool_blocking: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    /// Numbers each group needs for the blocking target.
    pub pool_needed: Family<GroupLabels, Gauge>,
    /// Where everything above is registered, with the runtime's counters.
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, _>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 50 us .. ~1.6 s
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.000_05, 2.0, 16,
            ))
        });
        let pool_size = Family::<GroupLabels, Gauge>::default();
        let pool_live = Family::<GroupLabels, Gauge>::default();
        let pool_utilisation = Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        let pool_offered = Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        let pool_blocking = Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        let pool_needed = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "request_access_http_requests",
            "HTTP requests by route and outcome",
            requests.clone(),
        );
        registry.register(
            "request_access_http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "request_access_pool_size",
            "Numbers in each resource group",
            pool_size.clone(),
        );
        registry.register(
            "request_access_pool_live",
            "Numbers held by live reservations",
            pool_live.clone(),
        );
        registry.register(
            "request_access_pool_utilisation",
            "Share of each resource group held by live reservations (0..1)",
            pool_utilisation.clone(),
        );
        registry.register(
            "request_access_pool_offered_erlangs",
            "Traffic offered to each group on this node: creates per second x seconds each holds a number (lease and rest), over the last 15 minutes",
            pool_offered.clone(),
        );
        registry.register(
            "request_access_pool_blocking_probability",
            "Erlang B probability that a create finds the group exhausted at the offered traffic (0..1)",
            pool_blocking.clone(),
        );
        registry.register(
            "request_access_pool_numbers_needed",
            "Numbers each group needs to keep the blocking probability at most [options] blocking_target",
            pool_needed.clone(),
        );
        Metrics {
            requests,
            latency,
            pool_size,
            pool_live,
            pool_utilisation,
            pool_offered,
            pool_blocking,
            pool_needed,
            registry,
        }
    }

    /// Count one request and its latency.
    pub fn observe(&self, route: &'static str, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, outcome })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// Record a group's occupancy.
    pub fn set_pool(&self, group: &str, size: u32, live: u32) {
        let labels = GroupLabels {
            group: group.to_string(),
        };
        self.pool_size.get_or_create(&labels).set(i64::from(size));
        self.pool_live.get_or_create(&labels).set(i64::from(live));
        self.pool_utilisation
            .get_or_create(&labels)
            .set(request_access_wire::answer::utilisation(size, live));
    }

    /// Record a group's sizing.
    pub fn set_sizing(&self, group: &str, sizing: &super::sizing::Sizing) {
        let labels = GroupLabels {
            group: group.to_string(),
        };
        self.pool_offered
            .get_or_create(&labels)
            .set(sizing.offered_erlangs);
        self.pool_blocking
            .get_or_create(&labels)
            .set(sizing.blocking);
        if let Some(needed) = sizing.numbers_needed {
            self.pool_needed
                .get_or_create(&labels)
                .set(i64::try_from(needed).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
