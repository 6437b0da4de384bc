//! Metric names and labels: the one place they are spelled (docs/metrics.md lists them).
//!
//! A metric reaches its host as one flat name (proxy-wasm `define_metric` takes a string), so
//! the labels ride in the name, in the stat-tag encoding Istio uses, `label=.=value;.;`, ahead
//! of the family name:
//!
//! ```text
//! dialect=.=dyndns2;.;result=.=good;.;backend=.=powerdns;.;dynedge_updates_total
//! ```
//!
//! Envoy's `stats_tags` (one regex `(label=\.=(.*?);\.;)` per label in [`LABELS`], which is
//! also what Istio's `extraStatTags` generates) cut the labels out again, and Envoy's
//! `/stats/prometheus` prints `dynedge_updates_total{dialect="dyndns2",result="good",...}`.
//! The Pingora module splits the same names with [`split`] and prints the same text.

use crate::reply::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word of the Prometheus `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its name, type, labels (in the order they are encoded) and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

pub const UPDATES: Family = Family {
    name: "dynedge_updates_total",
    kind: Kind::Counter,
    labels: &["dialect", "result", "backend"],
    help: "Results of update requests: one per host answered, or one per request refused before any host (backend \"none\").",
};

pub const BACKEND_LATENCY: Family = Family {
    name: "dynedge_backend_latency_ms",
    kind: Kind::Histogram,
    labels: &["dialect", "backend"],
    help: "Milliseconds from the start of an update that called its backend to its reply (backend of its first host).",
};

pub const RATE_LIMITED: Family = Family {
    name: "dynedge_rate_limited_total",
    kind: Kind::Counter,
    labels: &["dialect", "limit"],
    help: "Refusals by a rate limit: limit \"client\" (a whole request, before any password check) or \"host\" (one host updated too often).",
};

pub const CONFIG_LOADS: Family = Family {
    name: "dynedge_config_loads_total",
    kind: Kind::Counter,
    labels: &["result"],
    help: "Configurations loaded (result \"applied\") or refused (result \"rejected\"; the previous one stays).",
};

pub const CONFIG_GENERATION: Family = Family {
    name: "dynedge_config_generation",
    kind: Kind::Gauge,
    labels: &[],
    help: "The configuration in force: the first 48 bits of its SHA-256, the 12 hex digits of the \"configured\" log line.",
};

pub const WEBHOOKS_QUEUED: Family = Family {
    name: "dynedge_webhooks_queued_total",
    kind: Kind::Counter,
    labels: &[],
    help:
        "Webhook deliveries handed to the proxy; minus the delivered and given-up ones: the queue.",
};

pub const WEBHOOK_ATTEMPTS: Family = Family {
    name: "dynedge_webhook_attempts_total",
    kind: Kind::Counter,
    labels: &["result"],
    help: "Webhook delivery attempts by result: delivered, retried (scheduled again), given_up.",
};

pub const GROUP_COMMIT_BATCH: Family = Family {
    name: "dynedge_group_commit_batch_hosts",
    kind: Kind::Histogram,
    labels: &["backend"],
    help: "Hosts carried by one backend write (group commit); 1 when nothing else was waiting.",
};

pub const GROUP_COMMIT_WAIT: Family = Family {
    name: "dynedge_group_commit_wait_ms",
    kind: Kind::Histogram,
    labels: &["backend"],
    help: "Milliseconds an update waited behind its zone's write in flight before its own write was sent.",
};

/// Every family, for exporters and documentation.
pub const FAMILIES: &[Family] = &[
    UPDATES,
    BACKEND_LATENCY,
    RATE_LIMITED,
    CONFIG_LOADS,
    CONFIG_GENERATION,
    WEBHOOKS_QUEUED,
    WEBHOOK_ATTEMPTS,
    GROUP_COMMIT_BATCH,
    GROUP_COMMIT_WAIT,
];

/// Every label any family has: each needs a `stats_tags` entry in Envoy (an `extraStatTags`
/// entry in Istio).
pub const LABELS: &[&str] = &["dialect", "result", "backend", "limit"];

/// Histogram bucket bounds (milliseconds): Envoy's default buckets, so that the Pingora module
/// exports the same `le` series as Envoy.
pub const BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

const VALUE_SEP: &str = "=.=";
const FIELD_SEP: &str = ";.;";

/// The flat name of `family` with `values` for its labels (in order). A value keeps only
/// `[A-Za-z0-9_-]`; anything else becomes `_`, so no value can forge a separator.
pub fn name(family: &Family, values: &[&str]) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    // Built for every counter of every request: one allocation, and the values (dialect,
    // result, backend: almost always plain already) copied whole rather than char by char.
    let mut out = String::with_capacity(96);
    for (label, value) in family.labels.iter().zip(values) {
        out.push_str(label);
        out.push_str(VALUE_SEP);
        if value.chars().all(plain) {
            out.push_str(value);
        } else {
            out.extend(value.chars().map(|c| if plain(c) { c } else { '_' }));
        }
        out.push_str(FIELD_SEP);
    }
    out.push_str(family.name);
    out
}

/// A flat name split into its family and its labels (what Envoy's `stats_tags` do); `None`
/// for a name that is not one of [`FAMILIES`].
pub fn split(flat: &str) -> Option<(&'static Family, Vec<(&str, &str)>)> {
    let (tags, base) = match flat.rsplit_once(FIELD_SEP) {
        Some((tags, base)) => (Some(tags), base),
        None => (None, flat),
    };
    let family = FAMILIES.iter().find(|f| f.name == base)?;
    let labels = tags
        .into_iter()
        .flat_map(|t| t.split(FIELD_SEP))
        .map(|p| p.split_once(VALUE_SEP))
        .collect::<Option<Vec<_>>>()?;
    Some((family, labels))
}

/// The counters of one host's result in an update: [`UPDATES`], and [`RATE_LIMITED`] for a
/// host refused by its update limit (`abuse` is decided for a host only there). `backend`:
/// the kind of the host's backend (`Backend::kind`), `none` without one.
pub fn host_result(dialect: &str, code: Code, backend: &str) -> Vec<String> {
    let mut out = vec![name(&UPDATES, &[dialect, code.as_str(), backend])];
    if code == Code::Abuse {
        out.push(name(&RATE_LIMITED, &[dialect, "host"]));
    }
    out
}

/// The counters of a request refused before any host, with `code` (`pipeline::Refused`).
pub fn refused(dialect: &str, code: Code) -> Vec<String> {
    let mut out = vec![name(&UPDATES, &[dialect, code.as_str(), "none"])];
    if code == Code::Abuse {
        out.push(name(&RATE_LIMITED, &[dialect, "client"]));
    }
    out
}

/// `backend`: the kind of the backend (`Backend::kind`).
pub fn backend_latency(dialect: &str, backend: &str) -> String {
    name(&BACKEND_LATENCY, &[dialect, backend])
}

/// `backend`: the kind of the backend (`Backend::kind`).
pub fn group_commit_batch(backend: &str) -> String {
    name(&GROUP_COMMIT_BATCH, &[backend])
}

pub fn group_commit_wait(backend: &str) -> String {
    name(&GROUP_COMMIT_WAIT, &[backend])
}

pub fn config_load(applied: bool) -> String {
    name(
        &CONFIG_LOADS,
        &[if applied { "applied" } else { "rejected" }],
    )
}

pub fn config_generation() -> String {
    name(&CONFIG_GENERATION, &[])
}

/// The [`CONFIG_GENERATION`] value of a configuration fingerprint (`config::fingerprint`).
pub fn generation(fingerprint: &str) -> u64 {
    fingerprint
        .get(..12)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

pub fn webhooks_queued() -> String {
    name(&WEBHOOKS_QUEUED, &[])
}

/// [`WEBHOOK_ATTEMPTS`] by result, spelled out: the adapters' effect lists hold
/// `&'static str` (a test checks them against [`name`]).
pub const WEBHOOK_DELIVERED: &str = "result=.=delivered;.;dynedge_webhook_attempts_total";
pub const WEBHOOK_RETRIED: &str = "result=.=retried;.;dynedge_webhook_attempts_total";
pub const WEBHOOK_GIVEN_UP: &str = "result=.=given_up;.;dynedge_webhook_attempts_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_carries_its_labels_in_the_istio_encoding_and_splits_back() {
        let flat = name(&UPDATES, &["dyndns2", "good", "powerdns"]);
        assert_eq!(
            flat,
            "dialect=.=dyndns2;.;result=.=good;.;backend=.=powerdns;.;dynedge_updates_total"
        );
        let (family, labels) = split(&flat).unwrap();
        assert_eq!(family.name, "dynedge_updates_total");
        assert_eq!(
            labels,
            [
                ("dialect", "dyndns2"),
                ("result", "good"),
                ("backend", "powerdns")
            ]
        );
        assert_eq!(split(&config_generation()).unwrap().1, []);
    }

    #[test]
    fn a_value_cannot_forge_a_separator_or_a_label() {
        let flat = name(&RATE_LIMITED, &["x;.;limit=.=y", "client"]);
        let (_, labels) = split(&flat).unwrap();
        assert_eq!(labels, [("dialect", "x___limit___y"), ("limit", "client")]);
    }

    #[test]
    fn the_spelled_out_webhook_names_are_the_built_ones() {
        for (spelled, result) in [
            (WEBHOOK_DELIVERED, "delivered"),
            (WEBHOOK_RETRIED, "retried"),
            (WEBHOOK_GIVEN_UP, "given_up"),
        ] {
            assert_eq!(spelled, name(&WEBHOOK_ATTEMPTS, &[result]));
        }
    }

    #[test]
    fn unknown_or_malformed_names_do_not_split() {
        assert!(split("dynedge.dyndns2.good").is_none());
        assert!(split("dialect=dyndns2;.;dynedge_updates_total").is_none());
    }

    #[test]
    fn every_family_is_prefixed_and_labelled_from_the_label_list() {
        for f in FAMILIES {
            assert!(f.name.starts_with("dynedge_"), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            for l in f.labels {
                assert!(LABELS.contains(l), "{l} of {}", f.name);
            }
        }
    }

    #[test]
    fn a_client_over_its_limit_counts_as_abuse_and_as_a_rate_limit_refusal() {
        let c = refused("dyndns2", Code::Abuse);
        assert_eq!(
            c,
            [
                name(&UPDATES, &["dyndns2", "abuse", "none"]),
                name(&RATE_LIMITED, &["dyndns2", "client"])
            ]
        );
        assert_eq!(refused("dyndns2", Code::Badauth).len(), 1);
        let host = host_result("custom", Code::Abuse, "none");
        assert_eq!(host[1], name(&RATE_LIMITED, &["custom", "host"]));
        assert_eq!(host_result("custom", Code::Good, "powerdns").len(), 1);
    }

    #[test]
    fn the_generation_is_the_fingerprints_first_twelve_hex_digits() {
        assert_eq!(generation("00000000002a"), 42);
        // SHA-256("{}") = 44136fa355b3678a...
        assert_eq!(
            generation(&crate::config::fingerprint(b"{}")),
            0x4413_6fa3_55b3
        );
        assert_eq!(generation("short"), 0);
    }
}
