//! Prometheus metrics of the webhook (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    validator: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    validator: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    code: String,
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
        self.cache.get_or_create(&ResultLabels { result: if hit { "hit" } else { "miss" }.into() }).inc();
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
        self.reloads.get_or_create(&ResultLabels { result: if success { "success" } else { "failure" }.into() }).inc();
    }

    /// Count an HTTP request.
    pub fn request(&self, path: &str, code: u16) {
        self.requests.get_or_create(&RequestLabels { path: path.into(), code: code.to_string() }).inc();
    }

    /// Set the number of active validators.
    pub fn set_validators(&self, count: usize) {
        self.validators.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
