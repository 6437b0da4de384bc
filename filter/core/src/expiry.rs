//! Expiry (ddns-service): a host that has not sent a successful update within its zone's
//! `expiry_ttl_s` has its A and AAAA records removed; its next update puts them back.
//!
//! The adapter's timer starts a [`Sweep`] and performs its steps like an exchange. Several
//! workers may sweep at once: the work is idempotent (a removed RRset reads as empty and is not
//! written again), so no lock is needed.

use crate::backends::{CalloutResult, RrType};
use crate::config::Config;
use crate::exchange::{CalloutId, Env, Outcome, Step};
use crate::job::{HostJob, Job, Progress, Target};
use crate::kv::{keys, KvWrite};
use crate::reply::Code;
use crate::request::Request;

pub struct Sweep {
    job: Box<Job>,
    names: Vec<String>,
}

fn read_s(env: &Env, key: &str) -> Option<u64> {
    String::from_utf8(env.kv.get(key)?).ok()?.parse().ok()
}

/// Hosts whose time is up, or `None` when there is nothing to do.
pub fn start(cfg: &Config, env: &Env) -> Option<(Sweep, Step)> {
    let now = env.now_s();
    let mut hosts = Vec::new();
    let mut names = Vec::new();
    for name in cfg.host_owner.keys() {
        let Some(zone) = cfg.zone_of(name).filter(|z| z.expiry_ttl_s > 0) else {
            continue;
        };
        let Some(seen) = read_s(env, &keys::seen(name.as_str())) else {
            continue; // never updated through us: nothing of ours to expire
        };
        let expired_at = read_s(env, &keys::expired(name.as_str()));
        if seen.saturating_add(zone.expiry_ttl_s) > now || expired_at.is_some_and(|e| e >= seen) {
            continue;
        }
        let Some(backend) = cfg.backends.get(&zone.backend).cloned() else {
            continue;
        };
        names.push(name.to_string());
        hosts.push(HostJob::update(Target {
            name: name.clone(),
            zone: zone.name.clone(),
            backend,
            ttl: zone.ttl,
            want: vec![(RrType::A, vec![]), (RrType::Aaaa, vec![])],
            edits: vec![],
        }));
    }
    if hosts.is_empty() {
        return None;
    }
    let mut job = Job::new(
        cfg,
        "expiry",
        crate::pipeline::Authorized::sweep(),
        &Request::default(),
        hosts,
        env,
    );
    job.track_seen = false;
    job.without_group_commit();
    let mut sweep = Sweep { job, names };
    let step = sweep.advance_with(|job| job.advance(env), env);
    Some((sweep, step))
}

impl Sweep {
    pub fn on_callout(&mut self, id: CalloutId, result: CalloutResult, env: &Env) -> Step {
        self.advance_with(|job| job.on_callout(id, result, env), env)
    }

    fn advance_with(&mut self, f: impl FnOnce(&mut Job) -> Progress, env: &Env) -> Step {
        match f(&mut self.job) {
            Progress::Call(calls) => Step::Call(calls),
            // Never: the sweep's job sends its writes as calls (`without_group_commit`).
            Progress::Commit(_) | Progress::Wait => Step::Wait,
            // A sweep answers nobody: no reply.
            Progress::Done(mut out, _) => {
                self.mark(&mut out, env);
                Step::Done(out)
            }
        }
    }

    /// Hosts whose records are gone are marked, so the sweep leaves them alone until they
    /// update again; failed ones are retried on the next tick.
    fn mark(&self, out: &mut Outcome, env: &Env) {
        for (name, h) in self.names.iter().zip(&self.job.hosts) {
            if matches!(h.code, Some(Code::Good | Code::Nochg)) {
                out.writes.push(KvWrite::put(
                    keys::expired(name),
                    env.now_s().to_string().into_bytes(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{get, Driver, RequestExt};

    fn drive(d: &mut Driver) -> Option<Vec<String>> {
        let env = Env {
            now_ms: d.now_ms,
            random: 1,
            kv: &d.kv,
        };
        let (mut sweep, mut step) = start(&d.cfg, &env)?;
        let mut queue = Vec::new();
        loop {
            match step {
                Step::Call(calls) => {
                    for (id, c) in calls {
                        queue.push((id, d.pdns.answer(&c)));
                        d.calls.push(c);
                    }
                    step = Step::Wait;
                }
                Step::Wait => {
                    let (id, r) = queue.pop()?;
                    let env = Env {
                        now_ms: d.now_ms,
                        random: 1,
                        kv: &d.kv,
                    };
                    step = sweep.on_callout(id, r, &env);
                }
                Step::Done(out) => {
                    assert!(out.reply.is_none());
                    d.kv.apply(&out.writes);
                    return Some(out.log);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn update(d: &mut Driver, ip: &str) -> String {
        let r = d
            .send(
                get(&format!(
                    "/nic/update?hostname=home.dyn.example.test&myip={ip}"
                ))
                .basic("demo", "demo-password"),
            )
            .unwrap();
        r.body_text().to_string()
    }

    fn with_expiry(ttl: u64) -> Driver {
        let mut d = Driver::demo();
        d.cfg.zones[0].expiry_ttl_s = ttl;
        d
    }

    #[test]
    fn a_silent_host_loses_its_records_and_a_later_update_restores_them() {
        let mut d = with_expiry(3600);
        update(&mut d, "192.0.2.7");
        d.advance_ms(3_599_000);
        assert!(drive(&mut d).is_none(), "not yet due");
        d.advance_ms(2_000);
        let log = drive(&mut d).expect("due");
        assert!(log[0].contains("\"dialect\":\"expiry\""), "{}", log[0]);
        assert!(d.pdns.records("home.dyn.example.test", "A").is_empty());
        assert!(drive(&mut d).is_none(), "an expired host is left alone");
        assert_eq!(
            update(&mut d, "192.0.2.7"),
            "good 192.0.2.7\n",
            "not a stale nochg"
        );
        assert_eq!(
            d.pdns.records("home.dyn.example.test", "A"),
            vec!["192.0.2.7"]
        );
    }

    #[test]
    fn nochg_updates_keep_a_host_alive() {
        let mut d = with_expiry(3600);
        update(&mut d, "192.0.2.7");
        d.advance_ms(3_000_000);
        assert_eq!(update(&mut d, "192.0.2.7"), "nochg 192.0.2.7\n");
        d.advance_ms(3_000_000);
        assert!(drive(&mut d).is_none());
    }

    #[test]
    fn updates_record_seen_only_when_a_zone_expires() {
        use crate::kv::KvView as _;
        let seen = keys::seen("home.dyn.example.test");
        let mut d = with_expiry(0);
        update(&mut d, "192.0.2.7");
        assert_eq!(update(&mut d, "192.0.2.7"), "nochg 192.0.2.7\n");
        assert!(
            d.kv.get(&seen).is_none(),
            "no zone expires: nothing reads it"
        );
        let mut d = with_expiry(3600);
        update(&mut d, "192.0.2.7");
        assert!(d.kv.get(&seen).is_some());
    }

    #[test]
    fn expiry_ttl_zero_disables_it() {
        let mut d = with_expiry(0);
        update(&mut d, "192.0.2.7");
        d.advance_ms(100 * 86_400_000);
        assert!(drive(&mut d).is_none());
        assert_eq!(
            d.pdns.records("home.dyn.example.test", "A"),
            vec!["192.0.2.7"]
        );
    }

    #[test]
    fn a_failed_removal_is_retried_on_the_next_sweep() {
        let mut d = with_expiry(60);
        update(&mut d, "192.0.2.7");
        d.advance_ms(61_000 + d.cfg.record_cache_ttl_s * 1000);
        d.pdns.fault = crate::testing::Fault::WritesFail;
        let log = drive(&mut d).unwrap();
        assert!(log[0].contains("dnserr"));
        d.pdns.fault = crate::testing::Fault::None;
        drive(&mut d).unwrap();
        assert!(d.pdns.records("home.dyn.example.test", "A").is_empty());
    }
}
