//! Prometheus metrics of the webhook (`GET /metrics`), in the format the
//! scraper asks for: OpenMetrics 1.0.0 or the Prometheus text format 0.0.4
//! ([`exposition`]).

mod exposition;

use std::fmt::Write as _;

pub use self::exposition::Format;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label value, escaped when it is written (prometheus-client 0.24 writes
/// label values as they are, and a validator may be named `we"ird\name`).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Label(String);

impl From<&str> for Label {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&exposition::escape_label_value(&self.0))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    validator: Label,
    outcome: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    validator: Label,
    kind: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: Label,
    code: Label,
}

/// Every metric the webhook exports.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    latency: Histogram,
    cache: Family<ResultLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    identity_refusals: Family<FailureLabels, Counter>,
    validators: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credbroker");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "TokenReviews answered, by the validator that decided and the outcome (authenticated, denied, transient)",
            reviews.clone(),
        );
        // 100 µs .. ~3.3 s
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register("review_duration_seconds", "Time to answer a TokenReview", latency.clone());
        let cache = Family::<ResultLabels, Counter>::default();
        registry.register("review_cache", "Response cache lookups, by result (hit, miss)", cache.clone());
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "plugin_failures",
            "Validator plugin failures: traps, limits hit, timeouts, plugin errors",
            failures.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("reloads", "Configuration reloads, by result (success, failure)", reloads.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests, by path and status code", requests.clone());
        let identity_refusals = Family::<FailureLabels, Counter>::default();
        registry.register(
            "identity_refusals",
            "Identities a validator or login backend asserted without the grant, by kind (username, group, extra attribute, uid)",
            identity_refusals.clone(),
        );
        let validators = Gauge::default();
        registry.register("validators", "Validators in the active configuration", validators.clone());
        Self { registry, reviews, latency, cache, failures, reloads, requests, identity_refusals, validators }
    }

    /// Count a review's outcome.
    pub fn review(&self, validator: &str, outcome: &str, seconds: f64) {
        self.reviews.get_or_create(&ReviewLabels { validator: validator.into(), outcome: outcome.into() }).inc();
        self.latency.observe(seconds);
    }

    /// Count a cache lookup.
    pub fn cache(&self, hit: bool) {
        self.cache.get_or_create(&ResultLabels { result: (if hit { "hit" } else { "miss" }).into() }).inc();
    }

    /// Count a plugin failure.
    pub fn plugin_failure(&self, validator: &str, kind: &str) {
        self.failures.get_or_create(&FailureLabels { validator: validator.into(), kind: kind.into() }).inc();
    }

    /// Count an identity refused.
    pub fn identity_refusal(&self, validator: &str, kind: &str) {
        self.identity_refusals.get_or_create(&FailureLabels { validator: validator.into(), kind: kind.into() }).inc();
    }

    /// Count a reload attempt.
    pub fn reload(&self, success: bool) {
        self.reloads
            .get_or_create(&ResultLabels { result: (if success { "success" } else { "failure" }).into() })
            .inc();
    }

    /// Count an HTTP request.
    pub fn request(&self, path: &str, code: u16) {
        self.requests.get_or_create(&RequestLabels { path: path.into(), code: Label(code.to_string()) }).inc();
    }

    /// Set the number of active validators.
    pub fn set_validators(&self, count: usize) {
        self.validators.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut open_metrics = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry);
        match format {
            Format::OpenMetrics => open_metrics,
            Format::PrometheusText => exposition::prometheus_text(&open_metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the two formats say about a counter with an awkward label, and a gauge.
    #[test]
    fn both_formats_escape_and_name_counters_their_way() {
        let metrics = Metrics::new();
        metrics.plugin_failure("we\"ird\\name\n", "trap");
        metrics.set_validators(2);
        let open_metrics = metrics.render(Format::OpenMetrics);
        let failure = r#"credbroker_plugin_failures_total{validator="we\"ird\\name\n",kind="trap"} 1"#;
        assert!(open_metrics.contains("# TYPE credbroker_plugin_failures counter\n"), "{open_metrics}");
        assert!(open_metrics.contains(failure), "{open_metrics}");
        assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
        let text = metrics.render(Format::PrometheusText);
        assert!(text.contains("# HELP credbroker_plugin_failures_total Validator plugin failures"), "{text}");
        assert!(text.contains("# TYPE credbroker_plugin_failures_total counter\n"), "{text}");
        assert!(text.contains(failure), "{text}");
        assert!(text.contains("# TYPE credbroker_validators gauge\ncredbroker_validators 2\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
