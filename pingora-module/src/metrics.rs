//! The gateway's metrics: the counters, gauges and histograms the core names
//! (`dynedge_core::metrics`), kept in process, printed as Envoy's admin `/stats` lines and in
//! the Prometheus text format with the labels Envoy's `stats_tags` extract
//! (docs/metrics.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use dynedge_core::metrics::{self as names, Kind, BUCKETS, FAMILIES};

/// The samples of one histogram: count, sum, max and the count per bucket of
/// [`BUCKETS`] (each bucket counts the samples at or below its bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub count: u64,
    pub sum: u64,
    pub max: u64,
    pub buckets: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            count: 0,
            sum: 0,
            max: 0,
            buckets: vec![0; BUCKETS.len()],
        }
    }
}

impl Histogram {
    fn record(&mut self, value: u64) {
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(value);
        self.max = self.max.max(value);
        for (n, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if value as f64 <= *bound {
                *n = n.saturating_add(1);
            }
        }
    }
}

/// Every metric by its flat name (labels encoded, as the core spells it).
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
    gauges: Mutex<BTreeMap<String, u64>>,
    histograms: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    pub fn increment(&self, name: &str) {
        if let Ok(mut c) = self.counters.lock() {
            let n = c.entry(name.to_string()).or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    pub fn set(&self, name: &str, value: u64) {
        if let Ok(mut g) = self.gauges.lock() {
            g.insert(name.to_string(), value);
        }
    }

    pub fn record(&self, name: &str, value: u64) {
        if let Ok(mut h) = self.histograms.lock() {
            h.entry(name.to_string()).or_default().record(value);
        }
    }

    /// A configuration load: `Ok(fingerprint)` applied, `Err(())` refused (the old one kept).
    /// As in Envoy, an applied load counts only when it changes the configuration.
    pub fn config_loaded(&self, applied: Result<&str, ()>) {
        let Ok(fingerprint) = applied else {
            self.increment(&names::config_load(false));
            return;
        };
        let (gauge, generation) = (names::config_generation(), names::generation(fingerprint));
        if self.gauges().get(&gauge) != Some(&generation) {
            self.increment(&names::config_load(true));
            self.set(&gauge, generation);
        }
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn gauges(&self) -> BTreeMap<String, u64> {
        self.gauges.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn histograms(&self) -> BTreeMap<String, Histogram> {
        self.histograms
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// Envoy admin `/stats` style: `name: value` per counter and gauge, then
    /// `name: count=N sum=S max=M` per histogram.
    pub fn stats_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.counters().iter().chain(self.gauges().iter()) {
            let _ = writeln!(out, "{k}: {v}");
        }
        for (k, h) in self.histograms() {
            let _ = writeln!(out, "{k}: count={} sum={} max={}", h.count, h.sum, h.max);
        }
        out
    }

    /// The Prometheus text exposition format (version 0.0.4): one `# TYPE` per family, the
    /// labels split out of the names. Names the core does not define are left out.
    pub fn prometheus(&self) -> String {
        let (counters, gauges, histograms) = (self.counters(), self.gauges(), self.histograms());
        let mut out = String::new();
        for family in FAMILIES {
            let mut lines = String::new();
            match family.kind {
                Kind::Counter | Kind::Gauge => {
                    let map = if family.kind == Kind::Counter {
                        &counters
                    } else {
                        &gauges
                    };
                    for (name, v) in map {
                        if let Some(labels) = labels_of(name, family.name) {
                            let _ = writeln!(lines, "{}{} {v}", family.name, braces(&labels));
                        }
                    }
                }
                Kind::Histogram => {
                    for (name, h) in &histograms {
                        let Some(labels) = labels_of(name, family.name) else {
                            continue;
                        };
                        for (bound, n) in BUCKETS.iter().zip(&h.buckets) {
                            let mut l = labels.clone();
                            l.push(("le".into(), bound.to_string()));
                            let _ = writeln!(lines, "{}_bucket{} {n}", family.name, braces(&l));
                        }
                        let mut l = labels.clone();
                        l.push(("le".into(), "+Inf".into()));
                        let _ = writeln!(lines, "{}_bucket{} {}", family.name, braces(&l), h.count);
                        let _ = writeln!(lines, "{}_sum{} {}", family.name, braces(&labels), h.sum);
                        let _ = writeln!(
                            lines,
                            "{}_count{} {}",
                            family.name,
                            braces(&labels),
                            h.count
                        );
                    }
                }
            }
            if !lines.is_empty() {
                let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
                let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
                out.push_str(&lines);
            }
        }
        out
    }
}

/// The labels of `name` if it belongs to the family `family`.
fn labels_of(name: &str, family: &str) -> Option<Vec<(String, String)>> {
    let (f, labels) = names::split(name)?;
    (f.name == family).then(|| {
        labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn braces(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynedge_core::metrics::{name, BACKEND_LATENCY, UPDATES};

    #[test]
    fn counters_and_histograms_print_with_their_labels_in_prometheus_text() {
        let m = Metrics::default();
        let good = name(&UPDATES, &["dyndns2", "good", "powerdns"]);
        m.increment(&good);
        m.increment(&good);
        m.record(&name(&BACKEND_LATENCY, &["dyndns2", "powerdns"]), 7);
        m.config_loaded(Ok("00000000002a"));
        m.increment("not.a.dynedge.metric");
        let text = m.prometheus();
        assert!(
            text.contains("# TYPE dynedge_updates_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "dynedge_updates_total{dialect=\"dyndns2\",result=\"good\",backend=\"powerdns\"} 2\n"
            ),
            "{text}"
        );
        let bucket = |le: &str, n: u64| {
            format!("dynedge_backend_latency_ms_bucket{{dialect=\"dyndns2\",backend=\"powerdns\",le=\"{le}\"}} {n}\n")
        };
        assert!(text.contains(&bucket("5", 0)), "{text}");
        assert!(text.contains(&bucket("10", 1)), "{text}");
        assert!(text.contains(&bucket("+Inf", 1)), "{text}");
        assert!(text.contains(
            "dynedge_backend_latency_ms_sum{dialect=\"dyndns2\",backend=\"powerdns\"} 7\n"
        ));
        assert!(text.contains("dynedge_config_generation 42\n"), "{text}");
        assert!(text.contains("dynedge_config_loads_total{result=\"applied\"} 1\n"));
        assert!(!text.contains("not.a"), "{text}");
        m.config_loaded(Ok("00000000002a"));
        m.config_loaded(Err(()));
        let text = m.prometheus();
        assert!(
            text.contains("dynedge_config_loads_total{result=\"applied\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("dynedge_config_loads_total{result=\"rejected\"} 1\n"),
            "{text}"
        );
        assert!(m.stats_text().contains(&format!("{good}: 2\n")));
    }
}
