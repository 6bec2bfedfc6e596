//! The recorder behind `/metrics`: what the crates record through the `metrics` facade, kept in
//! memory and rendered in the Prometheus text format (counters, gauges, histograms with fixed
//! buckets in seconds). Installed once by `serve`; read by the admin listener.
//!
//! Main type: [`PrometheusRecorder`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Upper bounds of the histogram buckets (seconds: from a millisecond to a minute).
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0];

#[derive(Debug, Default)]
struct AtomicCounter(AtomicU64);

impl metrics::CounterFn for AtomicCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// A gauge as the bits of an `f64`.
#[derive(Debug, Default)]
struct AtomicGauge(AtomicU64);

impl AtomicGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ =
            self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some(f(f64::from_bits(bits)).to_bits()));
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl metrics::GaugeFn for AtomicGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

#[derive(Debug, Default)]
struct BucketHistogram {
    inner: Mutex<HistogramState>,
}

#[derive(Debug, Default, Clone)]
struct HistogramState {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl metrics::HistogramFn for BucketHistogram {
    fn record(&self, value: f64) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (i, bound) in BUCKETS.iter().enumerate() {
            if value <= *bound {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum += value;
    }
}

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<Key, Arc<AtomicCounter>>,
    gauges: BTreeMap<Key, Arc<AtomicGauge>>,
    histograms: BTreeMap<Key, Arc<BucketHistogram>>,
}

/// Keeps every metric recorded and renders them for Prometheus. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct PrometheusRecorder {
    registry: Arc<Mutex<Registry>>,
}

impl PrometheusRecorder {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything recorded so far, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let r = self.registry();
        let mut out = String::new();
        let typed = |out: &mut String, name: &str, kind: &str, last: &mut String| {
            if last != name {
                let _ = writeln!(out, "# TYPE {name} {kind}");
                *last = name.to_string();
            }
        };
        let mut last = String::new();
        for (key, c) in &r.counters {
            typed(&mut out, key.name(), "counter", &mut last);
            let _ = writeln!(out, "{}{} {}", key.name(), labels(key, None), c.0.load(Ordering::Relaxed));
        }
        for (key, g) in &r.gauges {
            typed(&mut out, key.name(), "gauge", &mut last);
            let _ = writeln!(out, "{}{} {}", key.name(), labels(key, None), number(g.get()));
        }
        for (key, h) in &r.histograms {
            typed(&mut out, key.name(), "histogram", &mut last);
            let s = h.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{}_bucket{} {}", key.name(), labels(key, Some(&number(*bound))), s.buckets[i]);
            }
            let _ = writeln!(out, "{}_bucket{} {}", key.name(), labels(key, Some("+Inf")), s.count);
            let _ = writeln!(out, "{}_sum{} {}", key.name(), labels(key, None), number(s.sum));
            let _ = writeln!(out, "{}_count{} {}", key.name(), labels(key, None), s.count);
        }
        out
    }
}

/// `{a="x",b="y"}` (with `le` for a bucket), or nothing without labels.
fn labels(key: &Key, le: Option<&str>) -> String {
    let mut parts: Vec<String> = key.labels().map(|l| format!("{}=\"{}\"", l.key(), escape(l.value()))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

impl Recorder for PrometheusRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.registry().counters.entry(key.clone()).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.registry().gauges.entry(key.clone()).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.registry().histograms.entry(key.clone()).or_default().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_recorded_is_rendered_for_prometheus() {
        let rec = PrometheusRecorder::default();
        metrics::with_local_recorder(&rec, || {
            metrics::counter!("mxshield_deliveries_total", "result" => "delivered").increment(2);
            metrics::counter!("mxshield_deliveries_total", "result" => "deferred").increment(1);
            metrics::gauge!("mxshield_smtp_sessions").increment(3.0);
            metrics::gauge!("mxshield_smtp_sessions").decrement(1.0);
            metrics::histogram!("mxshield_scan_duration_seconds").record(0.003);
            metrics::histogram!("mxshield_scan_duration_seconds").record(2.0);
        });
        let text = rec.render();
        for line in [
            "# TYPE mxshield_deliveries_total counter",
            "mxshield_deliveries_total{result=\"delivered\"} 2",
            "mxshield_deliveries_total{result=\"deferred\"} 1",
            "# TYPE mxshield_smtp_sessions gauge",
            "mxshield_smtp_sessions 2",
            "# TYPE mxshield_scan_duration_seconds histogram",
            "mxshield_scan_duration_seconds_bucket{le=\"0.001\"} 0",
            "mxshield_scan_duration_seconds_bucket{le=\"0.005\"} 1",
            "mxshield_scan_duration_seconds_bucket{le=\"5\"} 2",
            "mxshield_scan_duration_seconds_bucket{le=\"+Inf\"} 2",
            "mxshield_scan_duration_seconds_count 2",
            "mxshield_scan_duration_seconds_sum 2.003",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
        assert_eq!(text.matches("# TYPE mxshield_deliveries_total").count(), 1, "one TYPE line per name");
    }
}
