//! Structured JSON logs. Each function opens a span per request carrying the request id and the
//! exercise (and upload) id, so every line a request logs names them.

use tracing::level_filters::LevelFilter;

/// Installs the JSON subscriber once. Level from `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced
/// logging controls) or `RUST_LOG`, default INFO; an unknown value falls back to INFO.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// One CloudWatch metric as an Embedded Metric Format line on stdout (namespace `exvid`):
/// CloudWatch Logs extracts it, no API call, no extra latency. `dimensions` become one
/// dimension set.
pub fn metric(name: &str, value: f64, dimensions: &[(&str, &str)]) {
    println!("{}", metric_line(name, value, dimensions, now_ms()));
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The EMF document of [`metric`].
pub fn metric_line(name: &str, value: f64, dimensions: &[(&str, &str)], at_ms: u128) -> String {
    let unit = if name.starts_with("Seconds") {
        "Seconds"
    } else {
        "Count"
    };
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": at_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": "exvid",
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
    });
    doc[name] = serde_json::json!(value);
    for (k, v) in dimensions {
        doc[*k] = serde_json::json!(v);
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_are_embedded_metric_format() {
        let line = metric_line(
            "UploadsFailed",
            1.0,
            &[("provider", "bunny_stream"), ("error_code", "timeout")],
            1_790_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "exvid");
        assert_eq!(
            m["Dimensions"],
            serde_json::json!([["provider", "error_code"]])
        );
        assert_eq!(
            m["Metrics"][0],
            serde_json::json!({"Name": "UploadsFailed", "Unit": "Count"})
        );
        assert_eq!(v["UploadsFailed"], 1.0);
        assert_eq!(v["error_code"], "timeout");
        assert_eq!(v["_aws"]["Timestamp"], 1_790_000_000_000u64);
        let secs: serde_json::Value =
            serde_json::from_str(&metric_line("SecondsToReady", 42.5, &[], 0)).unwrap();
        assert_eq!(
            secs["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Seconds"
        );
    }
}
