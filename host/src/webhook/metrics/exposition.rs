//! The two text formats `/metrics` speaks, and which one a scraper gets.
//!
//! prometheus-client (0.24) encodes OpenMetrics 1.0.0 only, and writes label
//! values as they are. The Prometheus text format 0.0.4 is derived here from
//! its OpenMetrics output. For what this server exports (counters, gauges, a
//! histogram; no units, no exemplars) the two differ in three ways: 0.0.4 names
//! a counter family after its samples (`# TYPE x_total counter`, where
//! OpenMetrics has `# TYPE x counter` over samples named `x_total`; a 0.0.4
//! parser reads the OpenMetrics form as an empty counter and a stray untyped
//! sample), it has no `# UNIT` lines, and no `# EOF`. Label values are escaped
//! alike in both ([`escape_label_value`]); the `# HELP` texts are this
//! server's own and hold nothing either format would escape.

use std::borrow::Cow;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, for scrapers that ask for `application/openmetrics-text`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: what everything else gets.
    PrometheusText,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when the
    /// scraper lists `application/openmetrics-text` (version 1.0.0 or none) at
    /// a quality no lower than any range the text format matches
    /// (`text/plain`, `text/*`, `*/*`), else the text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut open_metrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut quality, mut version) = (Some(1.0_f32), None);
            for parameter in parts {
                let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "q" => quality = value.parse().ok().filter(|q| (0.0..=1.0).contains(q)),
                    "version" => version = Some(value.to_string()),
                    _ => {}
                }
            }
            // A malformed quality makes the range unusable, not preferred.
            let Some(quality) = quality else { continue };
            match media_type.as_str() {
                "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0") => {
                    open_metrics = open_metrics.max(quality);
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text { Self::OpenMetrics } else { Self::PrometheusText }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// `value` as both formats want a label value written between its quotes:
/// `\` as `\\`, `"` as `\"`, a line feed as `\n`.
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition (as
/// prometheus-client writes it: each family's `# HELP` line, then `# TYPE`,
/// then its samples).
pub fn prometheus_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len() + 256);
    // The `# HELP` line waits for its `# TYPE` line, which may rename the family.
    let mut help: Option<(&str, &str)> = None;
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), None);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind): (Cow<'_, str>, &str) = match kind {
                "counter" => (format!("{name}_total").into(), "counter"),
                "gauge" | "histogram" | "summary" => (name.into(), kind),
                _ => (name.into(), "untyped"),
            };
            flush_help(&mut out, help.take(), Some(&name));
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        flush_help(&mut out, help.take(), None);
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help, None);
    out
}

/// Write a pending `# HELP` line, under the name its `# TYPE` line gave the family.
fn flush_help(out: &mut String, help: Option<(&str, &str)>, renamed: Option<&str>) {
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {} {text}\n", renamed.unwrap_or(name)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapers_get_what_they_ask_for() {
        use Format::*;
        let cases = [
            (None, PrometheusText),
            (Some(""), PrometheusText),
            (Some("*/*"), PrometheusText),
            (Some("text/plain"), PrometheusText),
            (Some("text/plain;version=0.0.4"), PrometheusText),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("Application/OpenMetrics-Text; Version=1.0.0"), OpenMetrics),
            (Some("application/openmetrics-text;version=0.0.1"), PrometheusText),
            (Some("application/openmetrics-text;q=0"), PrometheusText),
            (Some("application/openmetrics-text;q=x"), PrometheusText),
            (Some("application/openmetrics-text;q=0.5,text/plain;q=0.6"), PrometheusText),
            (Some("application/openmetrics-text, text/plain"), OpenMetrics),
            (Some("application/json"), PrometheusText),
            // Prometheus 2.x's default scrape header.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                     text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus 3.x's, protobuf first.
            (
                Some(
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,\
                     application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                     application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
                     text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus configured for the text format only.
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), PrometheusText),
        ];
        for (accept, format) in cases {
            assert_eq!(Format::negotiate(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("plain"), "plain");
        assert!(matches!(escape_label_value("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_label_value("we\"ird\\name\nx"), "we\\\"ird\\\\name\\nx");
    }

    #[test]
    fn counters_are_renamed_and_open_metrics_lines_dropped() {
        let open_metrics = "# HELP app_requests Requests.\n# TYPE app_requests counter\n\
                            app_requests_total{path=\"/\"} 2\n# HELP app_up Up.\n# TYPE app_up gauge\napp_up 1\n\
                            # HELP app_size Size.\n# TYPE app_size unknown\n# UNIT app_size bytes\napp_size 3\n# EOF\n";
        assert_eq!(
            prometheus_text(open_metrics),
            "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\n\
             app_requests_total{path=\"/\"} 2\n# HELP app_up Up.\n# TYPE app_up gauge\napp_up 1\n\
             # HELP app_size Size.\n# TYPE app_size untyped\napp_size 3\n"
        );
    }
}
