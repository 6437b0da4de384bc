//! The metrics as a real Prometheus sees them (docs/metrics.md). Debian's `prometheus`, on
//! loopback, scrapes Envoy's admin `/stats/prometheus` (admin bound to 127.0.0.1) and
//! dynedge-pingora's `--stats` listener while both serve the same updates; the series must
//! exist with their labels and values, and every panel query of
//! examples/grafana/dynedge-dashboard.json must return data.
//!
//! The panels' queries, run over this test's data, are drawn into
//! `target/tmp/hardening/prometheus/dashboard.svg` (our own small plot: Grafana is not in
//! Debian); with `DYNEDGE_DASHBOARD_SVG=PATH` the picture is also written to PATH, which is
//! how docs/metrics-dashboard.svg is made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The suite's fixture; this file uses only part of it.
#[allow(unused_imports)]
mod hard;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use dynedge_core::metrics;
use dynedge_envoy::{pingora_binary, tail, workspace_root, Daemon};
use hard::*;
use serde_json::{json, Value};

/// `curl` over HTTPS (or plain HTTP) with `extra` arguments: status and body.
fn curl(url: &str, cacert: &Path, extra: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-sS", "-i", "-m", "10", "--cacert"])
        .arg(cacert)
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Reply::parse(&out.stdout).unwrap_or_else(|| panic!("no HTTP answer from {url}"))
}

/// dynedge-pingora with the same plugin JSON and backends as the Envoy of [`Gateway`], and
/// its metrics listener on loopback.
struct Pingora {
    daemon: Daemon,
    port: u16,
    stats_port: u16,
}

impl Pingora {
    fn start(dir: &Path, backend: &Backend, plugin_config: &str) -> Pingora {
        fs::create_dir_all(dir).unwrap();
        let plugin = dir.join("dynedge.json");
        fs::write(&plugin, plugin_config).unwrap();
        let (port, stats_port) = (free_port(), free_port());
        let mut cmd = Command::new(pingora_binary().unwrap_or_else(|e| panic!("{e}")));
        cmd.arg("--config")
            .arg(&plugin)
            .args(["--tls", &format!("127.0.0.1:{port}")])
            .arg("--cert")
            .arg(&backend.cert.cert)
            .arg("--key")
            .arg(&backend.cert.key)
            .args([
                "--cluster",
                &format!("pdns_api=127.0.0.1:{},max_requests=1", backend.api_port()),
                // As the Envoy bootstrap's `webhooks` cluster here: a port nobody serves.
                "--cluster",
                "webhooks=127.0.0.1:9,tls=localhost",
            ])
            .arg("--ca")
            .arg(&backend.cert.cert)
            .args(["--stats", &format!("127.0.0.1:{stats_port}")])
            .args(["--threads", "1", "--grace-period", "1"]);
        let mut daemon = Daemon::spawn("dynedge-pingora", cmd, &dir.join("pingora.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        poll(&mut daemon, "dynedge-pingora serving HTTPS", || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-m", "2", "--cacert"])
                .arg(&backend.cert.cert)
                .arg(format!("https://127.0.0.1:{port}/"))
                .status()
                .is_ok_and(|s| s.success())
        });
        Pingora {
            daemon,
            port,
            stats_port,
        }
    }
}

/// Prometheus scraping `targets` (job name, loopback port, both on `/stats/prometheus`)
/// every second.
struct Prometheus {
    daemon: Daemon,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[(&str, u16)]) -> Prometheus {
        fs::create_dir_all(dir).unwrap();
        let mut yaml = String::from(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for (job, port) in targets {
            let _ = writeln!(
                yaml,
                "- job_name: {job}\n  metrics_path: /stats/prometheus\n  static_configs: [{{targets: ['127.0.0.1:{port}']}}]"
            );
        }
        let config = dir.join("prometheus.yml");
        fs::write(&config, yaml).unwrap();
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut daemon = Daemon::spawn("prometheus", cmd, &dir.join("prometheus.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        poll(&mut daemon, "Prometheus ready", || {
            Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "-m", "2"])
                .arg(format!("http://127.0.0.1:{port}/-/ready"))
                .status()
                .is_ok_and(|s| s.success())
        });
        Prometheus { daemon, port }
    }

    fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-m", "10", "-G"]);
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{}/api/v1/{path}", self.port))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
        v["data"]["result"].clone()
    }

    /// An instant query: each series' labels and value.
    fn query(&self, expr: &str) -> Vec<(Labels, f64)> {
        let result = self.api("query", &[("query", expr.to_string())]);
        result
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (labels(&s["metric"]), number(&s["value"][1])))
            .collect()
    }

    /// A range query from `start` to now, one point a second.
    fn query_range(&self, expr: &str, start: f64) -> Vec<(Labels, Vec<(f64, f64)>)> {
        let result = self.api(
            "query_range",
            &[
                ("query", expr.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{:.3}", now_s())),
                ("step", "1".into()),
            ],
        );
        result
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let points = s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_f64().unwrap(), number(&p[1])))
                    .collect();
                (labels(&s["metric"]), points)
            })
            .collect()
    }

    /// The value of the one series `expr` selects, once it equals `want` (Prometheus must
    /// scrape first); the last value seen otherwise.
    fn value_once(&self, expr: &str, want: f64) -> Option<f64> {
        let value = || self.query(expr).first().map(|(_, v)| *v);
        poll_until(within(30), expr, || {
            value().filter(|v| *v == want).map(Some)
        })
        .unwrap_or_else(|_| value())
    }

    /// Waits until every target has been scraped after this call.
    fn next_scrape(&self) {
        let since = now_s();
        poll_until(within(30), "a scrape of both targets", || {
            // `timestamp` of a bare selector is the sample's time, i.e. the scrape's.
            let scraped = self.query("timestamp(up)");
            (scraped.len() == 2 && scraped.iter().all(|(_, t)| *t > since)).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", self.query("up")));
    }
}

type Labels = BTreeMap<String, String>;

fn labels(v: &Value) -> Labels {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

fn number(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn poll(daemon: &mut Daemon, what: &str, mut ready: impl FnMut() -> bool) {
    let waited = poll_until(within(60), what, || {
        if ready() {
            return Some(());
        }
        if let Err(e) = daemon.check_alive() {
            panic!("{e}");
        }
        None
    });
    if let Err(e) = waited {
        panic!("{e}\n{}", tail(&daemon.log_text(), 30));
    }
}

/// The gateways under test, each reached by URL.
struct Gw<'a> {
    job: &'static str,
    base: String,
    cacert: &'a Path,
}

impl Gw<'_> {
    fn update(&self, ip: &str, password: &str) -> String {
        let url = format!("{}/nic/update?hostname={HOME}&myip={ip}", self.base);
        curl(&url, self.cacert, &["-u", &format!("demo:{password}")]).body
    }
}

/// Rounds of an address change and a repeat, and of refused logins, per gateway.
const ROUNDS: usize = 4;
const REFUSALS: usize = 3;

#[test]
fn prometheus_scrapes_the_same_labelled_series_from_envoy_and_pingora_and_every_panel_has_data() {
    let dir = test_dir("prometheus");
    let backend = Backend::start(&dir);
    let cfg = plugin_config(backend.api_port(), 0, |c| {
        // One failed login per client, then refusals: the rate-limit series.
        c["rate_limits"] = json!({"bad_per_client": {"limit": 1, "window_s": 600}});
        // Deliveries to a port nobody serves, given up at once: the webhook series.
        c["webhooks"] = json!({
            "cluster": "webhooks", "allow_ranges": ["127.0.0.0/8"], "max_retries": 0
        });
    });
    let envoy = Gateway::start_envoy(
        &dir.join("envoy"),
        &backend,
        Gateway::options(&backend, cfg.clone()),
    );
    let pingora = Pingora::start(&dir.join("pingora"), &backend, &cfg);
    let prom = Prometheus::start(
        &dir.join("prometheus"),
        &[("envoy", envoy.admin_port), ("pingora", pingora.stats_port)],
    );
    let start = now_s();
    let gws = [
        Gw {
            job: "envoy",
            base: format!("https://127.0.0.1:{}", envoy.opts.listen_port),
            cacert: &backend.cert.cert,
        },
        Gw {
            job: "pingora",
            base: format!("https://127.0.0.1:{}", pingora.port),
            cacert: &backend.cert.cert,
        },
    ];
    for gw in &gws {
        let hook = r#"{"url":"https://127.0.0.1:9/hook","events":["ip_changed"],"secret":"a-webhook-secret-of-at-least-32-characters"}"#;
        let r = curl(
            &format!("{}/api/webhooks", gw.base),
            gw.cacert,
            &[
                "-u",
                &format!("demo:{DEMO_PASSWORD}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                hook,
            ],
        );
        assert_eq!(r.status, 201, "{}: {r:#?}", gw.job);
    }
    // Rounds apart by a scrape, so that rates see the counters move: four rounds of an
    // address change and a repeat, then failed logins (the client is then refused for good).
    for round in 0..ROUNDS {
        prom.next_scrape();
        for (i, gw) in gws.iter().enumerate() {
            let ip = format!("192.0.2.{}", 100 + 10 * i + round);
            assert!(
                gw.update(&ip, DEMO_PASSWORD).starts_with("good"),
                "{}",
                gw.job
            );
            assert!(
                gw.update(&ip, DEMO_PASSWORD).starts_with("nochg"),
                "{}",
                gw.job
            );
        }
    }
    prom.next_scrape();
    for gw in &gws {
        assert_eq!(gw.update("192.0.2.9", "wrong"), "badauth\n", "{}", gw.job);
    }
    for _ in 0..REFUSALS {
        prom.next_scrape();
        for gw in &gws {
            assert!(
                gw.update("192.0.2.9", "wrong").starts_with("abuse"),
                "{}",
                gw.job
            );
        }
    }
    for (job, port) in [("envoy", envoy.admin_port), ("pingora", pingora.stats_port)] {
        let url = format!("http://127.0.0.1:{port}/stats/prometheus");
        let text = curl(&url, &backend.cert.cert, &[]).body;
        fs::write(dir.join(format!("{job}.prom")), text).unwrap();
    }

    let (rounds, refusals) = (ROUNDS as f64, REFUSALS as f64);
    let generation = metrics::generation(&dynedge_core::adapter::fingerprint(cfg.as_bytes()));
    for gw in &gws {
        let job = gw.job;
        let updates = |result: &str, backend: &str| {
            format!(
                r#"dynedge_updates_total{{job="{job}",dialect="dyndns2",result="{result}",backend="{backend}"}}"#
            )
        };
        let expect = [
            (updates("good", "powerdns"), rounds),
            (updates("nochg", "powerdns"), rounds),
            (updates("badauth", "none"), 1.0),
            (updates("abuse", "none"), refusals),
            (
                format!(
                    r#"dynedge_rate_limited_total{{job="{job}",dialect="dyndns2",limit="client"}}"#
                ),
                refusals,
            ),
            // The good updates called PowerDNS; each nochg was answered from the record cache.
            (
                format!(
                    r#"dynedge_backend_latency_ms_count{{job="{job}",dialect="dyndns2",backend="powerdns"}}"#
                ),
                rounds,
            ),
            (
                format!(r#"dynedge_config_loads_total{{job="{job}",result="applied"}}"#),
                1.0,
            ),
            (
                format!(r#"dynedge_config_generation{{job="{job}"}}"#),
                generation as f64,
            ),
            // Each address change is delivered once (tried, given up: nobody listens there).
            (
                format!(r#"dynedge_webhooks_queued_total{{job="{job}"}}"#),
                rounds,
            ),
            (
                format!(r#"dynedge_webhook_attempts_total{{job="{job}",result="given_up"}}"#),
                rounds,
            ),
        ];
        for (expr, want) in expect {
            assert_eq!(prom.value_once(&expr, want), Some(want), "{expr}");
        }
        // Exactly the documented labels: nothing left of the encoding in the names.
        let series = prom.query(&format!(r#"{{job="{job}",__name__=~"dynedge_.*"}}"#));
        for (l, _) in &series {
            let name = &l["__name__"];
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            let family = metrics::FAMILIES
                .iter()
                .find(|f| f.name == name || f.name == base)
                .unwrap_or_else(|| panic!("{name} is not a documented family"));
            let mut keys: Vec<&str> = l
                .keys()
                .map(String::as_str)
                .filter(|k| !["__name__", "job", "instance", "le"].contains(k))
                .collect();
            keys.sort_unstable();
            let mut want = family.labels.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "{l:?}");
        }
    }

    // Every panel of the dashboard returns data from this Prometheus.
    for _ in 0..3 {
        prom.next_scrape();
    }
    let text = fs::read_to_string(workspace_root().join("examples/grafana/dynedge-dashboard.json"))
        .unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut drawn = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let legend = target["legendFormat"].as_str().unwrap_or("");
            let now = prom.query(expr);
            assert!(
                now.iter().any(|(_, v)| v.is_finite()),
                "panel {title:?}: {expr} returned no data: {now:?}"
            );
            let series = prom.query_range(expr, start);
            drawn.push(Panel {
                title: title.to_string(),
                series: series
                    .into_iter()
                    .map(|(l, points)| (legend_of(legend, &l), points))
                    .collect(),
            });
        }
    }
    let svg = render(&drawn, start, now_s());
    fs::write(dir.join("dashboard.svg"), &svg).unwrap();
    if let Some(path) = std::env::var_os("DYNEDGE_DASHBOARD_SVG") {
        fs::write(path, &svg).unwrap();
    }
    drop(prom.daemon);
    drop(pingora.daemon);
}

/// Grafana's `{{label}}` legend format.
fn legend_of(format: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = format.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

// ------------------------------------------------------------------ the picture

struct Panel {
    title: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// The panels in a grid of three columns, each a line chart over `[t0, t1]` with its legend.
fn render(panels: &[Panel], t0: f64, t1: f64) -> String {
    let (w, h, cols) = (360.0, 220.0, 3usize);
    let rows = panels.len().div_ceil(cols);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#ffffff"/>
"##,
        w * cols as f64,
        h * rows as f64 + 24.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="8" y="16" font-size="13">dynedge dashboard panels (examples/grafana/dynedge-dashboard.json) over the Prometheus test's data, {:.0} s; drawn by envoy/tests/prometheus.rs</text>"#,
        t1 - t0
    );
    for (i, p) in panels.iter().enumerate() {
        let (x0, y0) = ((i % cols) as f64 * w, (i / cols) as f64 * h + 24.0);
        let (px, py, pw, ph) = (x0 + 44.0, y0 + 26.0, w - 60.0, h - 80.0);
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#cccccc"/>
<text x="{:.1}" y="{:.1}" font-weight="bold">{}</text>"##,
            x0 + 4.0,
            y0 + 4.0,
            w - 8.0,
            h - 8.0,
            x0 + 10.0,
            y0 + 18.0,
            escape(&p.title)
        );
        let values = p
            .series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|(_, v)| *v))
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let hi = if (hi - lo).abs() < f64::EPSILON {
            lo + 1.0
        } else {
            hi
        };
        let x = |t: f64| px + (t - t0) / (t1 - t0).max(1.0) * pw;
        let y = |v: f64| py + ph - (v - lo) / (hi - lo) * ph;
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999999"/>
<line x1="{px:.1}" y1="{py:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999999"/>
<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>
<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            py + ph,
            px + pw,
            py + ph,
            py + ph,
            px - 4.0,
            py + 8.0,
            short(hi),
            px - 4.0,
            py + ph,
            short(lo)
        );
        for (j, (name, pts)) in p.series.iter().enumerate() {
            let colour = COLOURS[j % COLOURS.len()];
            let path: Vec<String> = pts
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            if !path.is_empty() {
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{}"/>"#,
                    path.join(" ")
                );
            }
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="10" height="3" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                px + (j % 3) as f64 * 105.0,
                py + ph + 18.0 + (j / 3) as f64 * 14.0,
                px + (j % 3) as f64 * 105.0 + 14.0,
                py + ph + 22.0 + (j / 3) as f64 * 14.0,
                escape(name)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn the_bootstrap_and_the_istio_example_extract_every_label_the_core_encodes() {
    let bootstrap = fs::read_to_string(workspace_root().join("envoy/bootstrap.yaml.tmpl")).unwrap();
    let istio = fs::read_to_string(workspace_root().join("examples/istio-metrics.yaml")).unwrap();
    let extra: Vec<&str> = istio
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("extraStatTags:"))
        .skip(1)
        .map_while(|l| l.trim_start().strip_prefix("- "))
        .collect();
    assert_eq!(
        extra,
        metrics::LABELS,
        "extraStatTags of examples/istio-metrics.yaml"
    );
    for label in metrics::LABELS {
        let tag = format!(r#"{{tag_name: {label}, regex: "({label}=\\.=(.*?);\\.;)"}}"#);
        assert!(bootstrap.contains(&tag), "no stats_tags entry {tag}");
    }
}
