//! The results: one row per workload, printed as it is measured and written as markdown.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::thread;

use super::wrk::Figures;
use super::Opts;
use crate::Result;

/// One line of the results table.
struct Row {
    workload: String,
    server: String,
    figures: Option<Figures>,
    note: String,
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

pub(super) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub(super) fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let envoy = dynedge_envoy::envoy_binary()
        .ok()
        .and_then(|e| Command::new(e).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let envoy = envoy.rsplit(": ").next().unwrap_or(&envoy).to_string();
    format!(
        "{cpu}, {cores} logical CPUs, {} GiB RAM, Linux {}; Envoy {envoy}; wrk 4.1.0 (Debian)",
        mem / 1024 / 1024,
        kernel.trim()
    )
}

/// The rows measured so far and the load average between sections.
#[derive(Default)]
pub(super) struct Report {
    rows: Vec<Row>,
    loads: Vec<(String, String)>,
}

impl Report {
    /// Prints one row and keeps it; a failed run is kept with the first line of its error.
    /// The reply words the run counted (and any non-2xx or socket errors) end the note.
    pub fn push(&mut self, workload: &str, server: &str, f: Result<Figures>, note: String) {
        match f {
            Ok(f) => {
                let counted = replies_note(&f);
                let note = match (note.is_empty(), counted.is_empty()) {
                    (_, true) => note,
                    (true, false) => counted,
                    (false, false) => format!("{counted}; {note}"),
                };
                println!(
                    "    {workload:<44} {server:<34} {:>9.0} req/s  p50 {:>7} ms  p99 {:>7} ms  cpu {:>6} µs/req  {note}",
                    f.rps,
                    fmt_ms(f.p50_ms),
                    fmt_ms(f.p99_ms),
                    f.cpu_us_per_req.map_or("–".into(), |c| format!("{c:.0}"))
                );
                self.rows.push(Row {
                    workload: workload.into(),
                    server: server.into(),
                    figures: Some(f),
                    note,
                });
            }
            Err(e) => {
                println!("    {workload:<44} {server:<34} FAILED: {e}");
                self.rows.push(Row {
                    workload: workload.into(),
                    server: server.into(),
                    figures: None,
                    note: format!("failed: {}", e.lines().next().unwrap_or("")),
                });
            }
        }
    }

    /// Notes the load average now, `when` naming the moment.
    pub fn load(&mut self, when: &str) {
        self.loads.push((when.into(), loadavg()));
    }

    /// The table, with the machine, the load and the wrk settings above it.
    pub fn markdown(&self, machine: &str, opts: &Opts) -> String {
        markdown(&self.rows, machine, &self.loads, opts)
    }

    /// `dynedge nochg (plain) is N× this`, for a peer's figures.
    pub fn nochg_ratio_note(&self, peer: &Result<Figures>) -> String {
        nochg_ratio_note(&self.rows, peer)
    }
}

/// `, N% by CPU per request`: the ceiling's server CPU per request over ours.
pub(super) fn cpu_ratio(ours: &Figures, ceiling: &Figures) -> String {
    match (ours.cpu_us_per_req, ceiling.cpu_us_per_req) {
        (Some(a), Some(b)) if a > 0.0 => format!(", {:.0}% by CPU per request", 100.0 * b / a),
        _ => String::new(),
    }
}

/// The reply words counted by the Lua, and any non-2xx answers or socket errors.
pub(super) fn replies_note(f: &Figures) -> String {
    let mut r = f.replies.clone();
    r.sort();
    let parts: Vec<String> = r.iter().map(|(w, n)| format!("{n} {w}")).collect();
    let mut s = parts.join(", ");
    if f.non2xx > 0 {
        let _ = write!(s, "; {} non-2xx", f.non2xx);
    }
    if f.socket_errors > 0 {
        let _ = write!(s, "; {} socket errors/timeouts", f.socket_errors);
    }
    s
}

fn nochg_ratio_note(rows: &[Row], peer: &Result<Figures>) -> String {
    let ours = rows
        .iter()
        .find(|r| r.workload.starts_with("dynedge nochg") && r.server.contains("plain"))
        .and_then(|r| r.figures.as_ref());
    match (ours, peer) {
        (Some(o), Ok(p)) if p.rps > 0.0 => {
            format!("dynedge nochg (plain) is {:.1}× this", o.rps / p.rps)
        }
        _ => String::new(),
    }
}

fn markdown(rows: &[Row], machine: &str, loads: &[(String, String)], opts: &Opts) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Machine: {machine}.  ");
    let _ = writeln!(
        s,
        "Load: wrk -t1 -c{} -d{}s --latency (Lua scripts), on the same machine as the servers; Envoy --concurrency 1.  ",
        opts.connections, opts.duration_s
    );
    let _ = writeln!(
        s,
        "Load average (1/5/15 min): {}.\n",
        loads
            .iter()
            .map(|(w, l)| format!("{w} {l}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    s.push_str(
        "| workload | server | req/s | p50 ms | p99 ms | server CPU µs/req | notes |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        match &r.figures {
            Some(f) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {} | {} | {} | {} |",
                    r.workload,
                    r.server,
                    f.rps,
                    fmt_ms(f.p50_ms),
                    fmt_ms(f.p99_ms),
                    f.cpu_us_per_req.map_or("–".into(), |c| format!("{c:.0}")),
                    r.note
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | {} | – | – | – | – | {} |",
                    r.workload, r.server, r.note
                );
            }
        }
    }
    s
}
