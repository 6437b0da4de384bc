//! The storm's bookkeeping: which address each host is sent, which host a reply belongs to, and
//! whether DNS ends up holding, for every host, the address of its last `good`.
//!
//! Every host `i` of a phase `p` gets its own address, `10.0.0.0 + p·2²⁰ + i`, so a reply
//! (`good 10.1.0.7`) names its host and phase by itself and wrk's Lua need not pair replies
//! with requests.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::replies::{reply_v4, reply_word, Tally};

/// Hosts per phase the address plan has room for.
pub(super) const MAX_HOSTS: usize = 1 << 20;

/// The address host `i` sends in phase `phase` (phase < 16, i < [`MAX_HOSTS`]).
pub(super) fn storm_addr(phase: u32, i: usize) -> Ipv4Addr {
    let i = (i % MAX_HOSTS) as u32;
    Ipv4Addr::from((10u32 << 24) | ((phase & 0xf) << 20) | i)
}

/// `(phase, host)` of an address made by [`storm_addr`].
pub(super) fn host_of(ip: Ipv4Addr) -> Option<(u32, usize)> {
    let v = u32::from(ip);
    (v >> 24 == 10).then_some(((v >> 20) & 0xf, (v & 0xf_ffff) as usize))
}

/// The name of storm host `i` in `zone`.
pub(super) fn host_name(i: usize, zone: &str) -> String {
    format!("h{i}.{zone}")
}

/// What one phase's replies said: the words, and per host the address of its `good`.
#[derive(Debug, Default)]
pub(super) struct PhaseReplies {
    pub tally: Tally,
    pub good: BTreeMap<usize, Ipv4Addr>,
    /// `good` replies whose address is not this phase's address of any host.
    pub foreign: u64,
}

/// Reads the replies file the storm Lua writes: one `status<TAB>body` line per reply.
pub(super) fn parse_replies(text: &str, phase: u32) -> PhaseReplies {
    let mut r = PhaseReplies::default();
    for line in text.lines() {
        let (status, body) = line.split_once('\t').unwrap_or((line, ""));
        let word = reply_word(status.trim().parse().unwrap_or(0), body);
        if word == "good" {
            match reply_v4(body).and_then(|ip| Some((ip, host_of(ip)?))) {
                Some((ip, (p, host))) if p == phase => {
                    r.good.insert(host, ip);
                }
                _ => r.foreign += 1,
            }
        }
        r.tally.add(word);
    }
    r
}

/// The A records of an AXFR (`dig AXFR +noall +answer`): owner name (no final dot, lower
/// case) to addresses.
pub(super) fn parse_axfr(text: &str) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut out: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [name, _ttl, "IN", "A", addr] = f.as_slice() {
            if let Ok(ip) = addr.parse() {
                out.entry(name.trim_end_matches('.').to_ascii_lowercase())
                    .or_default()
                    .push(ip);
            }
        }
    }
    out
}

/// DNS against the last `good` of every host.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Hosts whose last reply was `good` and whose only A record is its address.
    pub matched: usize,
    /// Hosts whose A records are neither their last good's address nor, after a failed last
    /// update, the address it asked for: (name, DNS, the last good's address).
    pub wrong: Vec<(String, Vec<Ipv4Addr>, Ipv4Addr)>,
    /// Hosts whose last update failed (`dnserr`, ...) and whose record still holds their last
    /// good's address.
    pub kept_after_failure: usize,
    /// Hosts whose last update failed but whose record holds the address it asked for (the
    /// write landed after the gateway stopped waiting): never reported as `good`.
    pub landed_after_failure: usize,
    /// Hosts that never got a `good`.
    pub never_good: usize,
}

impl Verdict {
    pub fn holds(&self) -> bool {
        self.wrong.is_empty()
    }

    pub fn note(&self, hosts: usize) -> String {
        let mut s = if self.holds() {
            format!("DNS (AXFR) = last good for {}/{hosts} hosts", self.matched)
        } else {
            let (name, dns, good) = &self.wrong[0];
            format!(
                "DNS (AXFR) ≠ last good for {} hosts (e.g. {name}: DNS {dns:?}, good {good})",
                self.wrong.len()
            )
        };
        let failed = self.kept_after_failure + self.landed_after_failure;
        if failed > 0 {
            s.push_str(&format!(
                "; {failed} last updates failed: {} records kept the last good, {} got the new address without a good",
                self.kept_after_failure, self.landed_after_failure
            ));
        }
        if self.never_good > 0 {
            s.push_str(&format!("; {} hosts never got good", self.never_good));
        }
        s
    }
}

/// Compares, for hosts `0..hosts`, the AXFR's A records with the replies: `last_good` holds
/// every host's last `good` over all phases, `final_good` the `good`s of the last phase
/// (`final_phase`), whose other hosts' updates failed.
pub(super) fn check_dns(
    hosts: usize,
    zone: &str,
    final_phase: u32,
    last_good: &BTreeMap<usize, Ipv4Addr>,
    final_good: &BTreeMap<usize, Ipv4Addr>,
    axfr: &BTreeMap<String, Vec<Ipv4Addr>>,
) -> Verdict {
    let mut v = Verdict::default();
    for i in 0..hosts {
        let Some(good) = last_good.get(&i) else {
            v.never_good += 1;
            continue;
        };
        let name = host_name(i, zone);
        let dns = axfr.get(&name).cloned().unwrap_or_default();
        if final_good.contains_key(&i) {
            if dns == [*good] {
                v.matched += 1;
                continue;
            }
        } else if dns == [*good] {
            v.kept_after_failure += 1;
            continue;
        } else if dns == [storm_addr(final_phase, i)] {
            v.landed_after_failure += 1;
            continue;
        }
        v.wrong.push((name, dns, *good));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "dyn.example.test";

    #[test]
    fn each_host_and_phase_has_its_own_address_and_a_reply_names_them() {
        assert_eq!(storm_addr(0, 0), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(storm_addr(1, 70_000), Ipv4Addr::new(10, 17, 17, 112));
        for (p, i) in [(0, 0), (1, 99_999), (2, 12_345), (15, MAX_HOSTS - 1)] {
            assert_eq!(host_of(storm_addr(p, i)), Some((p, i)));
        }
        assert_eq!(host_of(Ipv4Addr::new(192, 0, 2, 1)), None);
    }

    #[test]
    fn replies_give_words_and_the_good_address_of_each_host() {
        let text = format!(
            "200\tgood {}\n200\tgood {}\n200\tdnserr\n200\tgood 192.0.2.1\n200\tgood {}\n",
            storm_addr(1, 3),
            storm_addr(1, 4),
            storm_addr(0, 5)
        );
        let r = parse_replies(&text, 1);
        assert_eq!(r.tally.get("good"), 4);
        assert_eq!(r.tally.get("dnserr"), 1);
        assert_eq!(r.good.len(), 2);
        assert_eq!(r.good.get(&3), Some(&storm_addr(1, 3)));
        assert_eq!(r.foreign, 2, "another phase's or no storm address");
    }

    fn axfr_of(records: &[(usize, Ipv4Addr)]) -> String {
        let mut s =
            format!("{ZONE}.\t60\tIN\tSOA\tns1.{ZONE}. hostmaster.{ZONE}. 3 3600 600 86400 60\n");
        for (i, ip) in records {
            s.push_str(&format!("H{i}.{ZONE}.\t\t60\tIN\tA\t{ip}\n"));
        }
        s.push_str(&format!("ns1.{ZONE}.\t60\tIN\tA\t127.0.0.1\n"));
        s
    }

    #[test]
    fn dns_matching_every_last_good_holds() {
        let last: BTreeMap<usize, Ipv4Addr> = (0..3).map(|i| (i, storm_addr(1, i))).collect();
        let axfr = parse_axfr(&axfr_of(&[
            (0, storm_addr(1, 0)),
            (1, storm_addr(1, 1)),
            (2, storm_addr(1, 2)),
        ]));
        let v = check_dns(3, ZONE, 1, &last, &last, &axfr);
        assert!(v.holds(), "{v:?}");
        assert_eq!(v.matched, 3);
        assert_eq!(v.note(3), "DNS (AXFR) = last good for 3/3 hosts");
    }

    #[test]
    fn an_older_address_a_missing_record_or_an_extra_record_fails_the_check() {
        let last: BTreeMap<usize, Ipv4Addr> = (0..4).map(|i| (i, storm_addr(1, i))).collect();
        let axfr = parse_axfr(&axfr_of(&[
            (0, storm_addr(1, 0)),
            (1, storm_addr(0, 1)), // the first phase's address: the second good was not applied
            (3, storm_addr(1, 3)),
            (3, storm_addr(0, 3)), // two records where one was reported
        ]));
        let v = check_dns(4, ZONE, 1, &last, &last, &axfr);
        assert!(!v.holds());
        assert_eq!(v.matched, 1);
        let wrong: Vec<&str> = v.wrong.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            wrong,
            [
                "h1.dyn.example.test",
                "h2.dyn.example.test",
                "h3.dyn.example.test"
            ]
        );
        assert!(v.note(4).starts_with("DNS (AXFR) ≠ last good for 3 hosts"));
    }

    #[test]
    fn a_failed_last_update_may_keep_the_last_good_or_land_but_nothing_else() {
        // Phase 0 gave good to hosts 0..3; phase 1 only to host 0.
        let first: BTreeMap<usize, Ipv4Addr> = (0..3).map(|i| (i, storm_addr(0, i))).collect();
        let last_phase: BTreeMap<usize, Ipv4Addr> = [(0, storm_addr(1, 0))].into_iter().collect();
        let mut last = first.clone();
        last.extend(last_phase.clone());
        let axfr = parse_axfr(&axfr_of(&[
            (0, storm_addr(1, 0)),
            (1, storm_addr(0, 1)),
            (2, storm_addr(1, 2)),
        ]));
        let v = check_dns(3, ZONE, 1, &last, &last_phase, &axfr);
        assert!(v.holds(), "{v:?}");
        assert_eq!(
            (v.matched, v.kept_after_failure, v.landed_after_failure),
            (1, 1, 1)
        );
        // A failed update whose record holds a third address is wrong.
        let axfr = parse_axfr(&axfr_of(&[
            (0, storm_addr(1, 0)),
            (1, storm_addr(2, 1)),
            (2, storm_addr(1, 2)),
        ]));
        let v = check_dns(3, ZONE, 1, &last, &last_phase, &axfr);
        assert_eq!(v.wrong.len(), 1);
        assert_eq!(v.wrong[0].0, "h1.dyn.example.test");
    }

    #[test]
    fn hosts_without_a_good_are_counted_not_matched() {
        let last: BTreeMap<usize, Ipv4Addr> = [(0, storm_addr(0, 0))].into_iter().collect();
        let axfr = parse_axfr(&axfr_of(&[(0, storm_addr(0, 0))]));
        let v = check_dns(2, ZONE, 0, &last, &last, &axfr);
        assert!(v.holds());
        assert_eq!((v.matched, v.never_good), (1, 1));
        assert!(v.note(2).ends_with("; 1 hosts never got good"));
    }
}
