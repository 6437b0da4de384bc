//! wrk runs: the Lua scripts that shape the load, and the figures read from wrk's output.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Result;

/// What one wrk run measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// The run's length as wrk reports it (`N requests in 3.00s`).
    pub elapsed_s: f64,
    pub non2xx: u64,
    pub socket_errors: u64,
    /// Reply words counted by the Lua `response` hook (`good`, `nochg`, ...), when asked for.
    pub replies: Vec<(String, u64)>,
    /// CPU time of the server process (and its children) per request, when known.
    pub cpu_us_per_req: Option<f64>,
}

/// wrk's units and their length in milliseconds, each tried before any it ends with (`ms`
/// before `s`); `m` is a run's length past a minute (`2000 requests in 1.01m`).
const UNITS_MS: &[(&str, f64)] = &[
    ("us", 0.001),
    ("ms", 1.0),
    ("s", 1000.0),
    ("m", 60_000.0),
    ("h", 3_600_000.0),
];

/// A latency as wrk prints it (`812.00us`, `1.23ms`, `2.01s`) in milliseconds.
pub(super) fn parse_latency(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = UNITS_MS
        .iter()
        .find_map(|(unit, scale)| Some((t.strip_suffix(unit)?, scale)))?;
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// The figures in wrk's `--latency` output (and the `reply WORD N` lines our Lua prints).
pub fn parse_wrk(out: &str) -> Result<Figures> {
    let mut f = Figures::default();
    let mut seen_rps = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            f.rps = v.trim().parse().map_err(|_| format!("wrk: bad line {t}"))?;
            seen_rps = true;
        } else if let Some(v) = t.strip_prefix("50%") {
            f.p50_ms = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            f.p99_ms = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            f.non2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            f.socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some((n, rest)) = t.split_once(" requests in ") {
            f.requests = n.trim().parse().unwrap_or(0);
            f.elapsed_s = rest
                .split(',')
                .next()
                .and_then(parse_latency)
                .map_or(0.0, |ms| ms / 1000.0);
        } else if let Some(rest) = t.strip_prefix("reply ") {
            let mut it = rest.split_whitespace();
            if let (Some(w), Some(n)) = (it.next(), it.next().and_then(|n| n.parse().ok())) {
                f.replies.push((w.replace('_', " "), n));
            }
        }
    }
    if !seen_rps {
        return Err(format!("wrk printed no Requests/sec:\n{out}"));
    }
    Ok(f)
}

/// The Lua that counts reply words per thread and prints them at the end (`reply good 12`).
pub(super) const COUNT_REPLIES_LUA: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  local w = string.match(body or "", "^%s*(%w+)") or ("HTTP_" .. tostring(status))
  counts[w] = (counts[w] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write("reply ", k, " ", v, "\n") end
end
"#;

/// The wrk arguments of an ordinary row: a request unanswered for 5 s counts as a timeout.
pub(super) const TIMEOUT_5S: &[&str] = &["--timeout", "5s"];

/// Runs wrk (one thread, `conns` connections, `duration_s`, `--latency`) with `lua` and
/// `extra` wrk arguments ([`TIMEOUT_5S`], or `--timeout 30s` for a storm).
#[allow(clippy::too_many_arguments)]
pub(super) fn wrk_with(
    server: Option<u32>,
    dir: &Path,
    name: &str,
    url: &str,
    lua: &str,
    conns: u32,
    duration_s: u64,
    extra: &[&str],
) -> Result<Figures> {
    let script = dir.join(format!("{name}.lua"));
    fs::write(&script, lua).map_err(|e| format!("{}: {e}", script.display()))?;
    let cpu_before = server.map(cpu_ticks);
    let out = Command::new("wrk")
        .args(["-t1", "-c", &conns.to_string(), "-d"])
        .arg(format!("{duration_s}s"))
        .args(extra)
        .args(["--latency", "-s"])
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::write(dir.join(format!("{name}.out")), &text);
    // A Lua error does not fail wrk: it falls back to GET of the bare URL. Refuse that.
    if text.contains(".lua:") || text.to_lowercase().contains("script error") {
        return Err(format!("wrk {name}: Lua error:\n{text}"));
    }
    let mut f = parse_wrk(&text)?;
    if let (Some(pid), Some(before)) = (server, cpu_before) {
        let ticks = cpu_ticks(pid).saturating_sub(before);
        if f.requests > 0 {
            f.cpu_us_per_req = Some(ticks as f64 * 1e6 / CLOCK_TICKS_PER_S / f.requests as f64);
        }
    }
    Ok(f)
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
pub(super) const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU time (user + system, clock ticks) of process `root` and its children, reaped or not
/// (gunicorn's workers, sftdyn's nsupdate runs): robust to the load of other processes.
pub(super) fn cpu_ticks(root: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the `(comm)`: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1).and_then(|v| v.parse::<u32>().ok());
        if pid == root || ppid == Some(root) {
            total += (11..=14)
                .filter_map(|i| f.get(i)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    total
}

/// A fixed request: `path` with `headers`.
pub(super) fn fixed_lua(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut s = format!("wrk.method = \"{method}\"\nwrk.path = \"{path}\"\n");
    for (k, v) in headers {
        let _ = writeln!(s, "wrk.headers[\"{k}\"] = \"{v}\"");
    }
    if let Some(b) = body {
        let _ = writeln!(s, "wrk.body = [[{b}]]");
    }
    s
}

/// A script whose `request()` returns `request` (a Lua expression, after the lines of
/// `prelude` run once), with `ip` a new address every request (198.51.100.1–250,
/// 203.0.113.1–250, in turn).
pub(super) fn new_address_lua(prelude: &str, request: &str) -> String {
    format!(
        r#"local n = 0
{prelude}function request()
  n = n + 1
  local net = (n % 2 == 0) and "198.51.100." or "203.0.113."
  local ip = net .. tostring(math.floor(n / 2) % 250 + 1)
  return {request}
end
"#
    )
}

/// An update whose `myip` changes every request ([`new_address_lua`]).
pub(super) fn varying_update_lua(
    path_prefix: &str,
    headers: &[(&str, &str)],
    count: bool,
) -> String {
    let mut prelude = String::from("local hdrs = {}\n");
    for (k, v) in headers {
        let _ = writeln!(prelude, "hdrs[\"{k}\"] = \"{v}\"");
    }
    let mut s = new_address_lua(
        &prelude,
        &format!(r#"wrk.format("GET", "{path_prefix}" .. ip, hdrs)"#),
    );
    if count {
        s.push_str(COUNT_REPLIES_LUA);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 3s test @ http://127.0.0.1:27443/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  200.00us   5.00ms   90.00%
  Latency Distribution
     50%  750.00us
     75%    0.90ms
     90%    1.10ms
     99%    2.31ms
  30000 requests in 3.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  10000.50
Transfer/sec:      1.33MB
reply nochg 29993
";

    #[test]
    fn wrk_output_gives_rate_percentiles_errors_and_reply_counts() {
        let f = parse_wrk(WRK).unwrap();
        assert!((f.rps - 10000.5).abs() < 1e-9);
        assert!((f.p50_ms - 0.75).abs() < 1e-9);
        assert!((f.p99_ms - 2.31).abs() < 1e-9);
        assert_eq!(f.requests, 30000);
        assert!((f.elapsed_s - 3.0).abs() < 1e-9);
        assert_eq!(f.non2xx, 7);
        assert_eq!(f.socket_errors, 3);
        assert_eq!(f.replies, vec![("nochg".to_string(), 29993)]);
    }

    #[test]
    fn a_run_longer_than_a_minute_has_its_length_in_minutes() {
        let f =
            parse_wrk("  2000 requests in 1.50m, 1.00MB read\nRequests/sec:     22.22\n").unwrap();
        assert!((f.elapsed_s - 90.0).abs() < 1e-9, "{}", f.elapsed_s);
        assert_eq!(parse_latency("2.00ms"), Some(2.0));
    }

    #[test]
    fn every_unit_wrk_prints_is_read_in_milliseconds() {
        for (text, ms) in [
            ("500.00us", 0.5),
            (" 2.00ms ", 2.0),
            ("1.50s", 1500.0),
            ("2.00m", 120_000.0),
            ("1.00h", 3_600_000.0),
        ] {
            assert_eq!(parse_latency(text), Some(ms), "{text}");
        }
        for text in ["12", "1.2ns", "ms", "fast"] {
            assert_eq!(parse_latency(text), None, "{text}");
        }
    }

    #[test]
    fn wrk_output_without_a_rate_is_an_error() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:27443 Connection refused").is_err());
    }

    #[test]
    fn the_new_address_script_sets_its_headers_once_and_builds_each_request() {
        let lua = varying_update_lua("/u?ip=", &[("A", "b")], false);
        assert_eq!(
            lua,
            "local n = 0\nlocal hdrs = {}\nhdrs[\"A\"] = \"b\"\nfunction request()\n  n = n + 1\n  \
             local net = (n % 2 == 0) and \"198.51.100.\" or \"203.0.113.\"\n  \
             local ip = net .. tostring(math.floor(n / 2) % 250 + 1)\n  \
             return wrk.format(\"GET\", \"/u?ip=\" .. ip, hdrs)\nend\n"
        );
        assert!(varying_update_lua("/u?ip=", &[], true).ends_with(COUNT_REPLIES_LUA));
    }
}
