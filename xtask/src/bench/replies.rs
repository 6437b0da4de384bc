//! What a reply said: the first word of its body (`good`, `nochg`, `abuse`, ...), counted per
//! run, and the address of a `good`. Every row's notes come from these counts, never from HTTP
//! statuses alone (`/nic/update` answers 200 for `abuse` too).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The reply word of `body`: its first run of ASCII letters and digits if the body starts with
/// one (`good 192.0.2.1` → `good`, `911` → `911`), else `HTTP <status>`. The Lua counter in
/// `wrk.rs` (`COUNT_REPLIES_LUA`) applies the same rule inside wrk.
pub(super) fn reply_word(status: u16, body: &str) -> String {
    let word: String = body
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    if word.is_empty() {
        format!("HTTP {status}")
    } else {
        word
    }
}

/// The IPv4 address after the word of a `good`/`nochg` reply (`good 10.0.0.7`).
pub(super) fn reply_v4(body: &str) -> Option<Ipv4Addr> {
    body.split_whitespace().nth(1)?.parse().ok()
}

/// Counts of reply words, sorted by word.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Tally(pub BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, word: String) {
        *self.0.entry(word).or_insert(0) += 1;
    }

    #[cfg(test)]
    pub fn get(&self, word: &str) -> u64 {
        self.0.get(word).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `12 good, 3 abuse` (most frequent first).
    pub fn note(&self) -> String {
        let mut v: Vec<(&String, &u64)> = self.0.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The marker curl's `-w` writes after each reply body (`-w '\n@@ %{http_code} %{time_total}\n'`):
/// bodies end in a newline or not, so the body is everything since the previous marker line.
pub(super) const CURL_MARK: &str = "@@ ";

/// The good client's curl output: each reply's body, then a [`CURL_MARK`] line with its status
/// and the seconds it took.
pub(super) fn parse_curl_lines(text: &str) -> (Tally, Vec<f64>) {
    let mut tally = Tally::default();
    let mut times = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(CURL_MARK) else {
            body.push_str(line);
            body.push('\n');
            continue;
        };
        let mut it = rest.split_whitespace();
        let status = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let secs: f64 = it.next().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN);
        tally.add(reply_word(status, &body));
        times.push(secs * 1000.0);
        body.clear();
    }
    (tally, times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_is_the_body_not_the_status() {
        assert_eq!(reply_word(200, "good 192.0.2.1"), "good");
        assert_eq!(reply_word(200, "abuse\n"), "abuse");
        assert_eq!(reply_word(200, "nochg"), "nochg");
        assert_eq!(reply_word(500, "911"), "911");
        assert_eq!(reply_word(404, "not found\n"), "not");
        assert_eq!(reply_word(401, ""), "HTTP 401");
        assert_eq!(reply_word(200, "{\"status\":\"ok\"}"), "HTTP 200");
    }

    #[test]
    fn the_good_client_counts_bodies_so_a_200_abuse_is_not_a_success() {
        // Bodies with and without a final newline, and an empty one.
        let out = "nochg 192.0.2.1\n\n@@ 200 0.001\nabuse\n@@ 200 0.002\nnochg 192.0.2.1\n@@ 200 0.003\n\n@@ 429 0.001\n";
        let (tally, times) = parse_curl_lines(out);
        assert_eq!(tally.get("nochg"), 2);
        assert_eq!(tally.get("abuse"), 1);
        assert_eq!(tally.get("HTTP 429"), 1);
        assert_eq!(tally.total(), 4);
        assert_eq!(times.len(), 4);
        assert_eq!(tally.note(), "2 nochg, 1 HTTP 429, 1 abuse");
    }

    #[test]
    fn a_good_reply_names_its_address() {
        assert_eq!(reply_v4("good 10.0.0.7"), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(reply_v4("good"), None);
        assert_eq!(reply_v4("dnserr"), None);
    }
}
