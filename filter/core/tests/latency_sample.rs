//! The backend latency the core measures reaches the adapter as a histogram sample.
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use dynedge_core::fuzzing::cheap_demo;
use dynedge_core::testing::{get, FakePowerDns, RequestExt};
use dynedge_core::{metrics, Env, Exchange, MemoryKv, Outcome, Step};

/// Runs one request, answering every callout `ms_per_call` later than the previous input.
fn run(req: dynedge_core::Request, ms_per_call: u64) -> (Outcome, usize) {
    let cfg = cheap_demo();
    let kv = MemoryKv::default();
    let mut pdns = FakePowerDns::default();
    let mut now = 1_700_000_000_000;
    let env = |now| Env {
        now_ms: now,
        random: 1,
        kv: &kv,
    };
    let (mut ex, mut step) = Exchange::start(cfg, req, true, &env(now));
    let mut calls = 0;
    loop {
        step = match step {
            Step::Done(out) => return (out, calls),
            Step::Call(cs) => {
                let mut last = Step::Wait;
                for (id, c) in cs {
                    calls += 1;
                    now += ms_per_call;
                    let r = pdns.answer(&c);
                    last = ex.on_callout(id, r, &env(now));
                }
                last
            }
            // Each write sent alone (`ZoneWrite::alone`): no other exchange to batch with.
            Step::Commit(ws) => {
                let mut last = Step::Wait;
                for (id, w) in ws {
                    calls += 1;
                    now += ms_per_call;
                    let answer = match w.alone(now, 1) {
                        Ok((c, check)) => check.judge(&pdns.answer(&c)),
                        Err(answer) => answer,
                    };
                    last = ex.on_write(id, answer, &env(now));
                }
                last
            }
            other => unreachable!("the exchange asked for {other:?}"),
        };
    }
}

#[test]
fn an_update_that_called_the_backend_reports_its_latency_sample() {
    let req = get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.1")
        .basic("demo", "demo-password");
    let (out, calls) = run(req, 37);
    assert_eq!(calls, 2, "a read and a write");
    assert_eq!(
        out.samples,
        vec![(
            "dialect=.=dyndns2;.;backend=.=powerdns;.;dynedge_backend_latency_ms".to_string(),
            74
        )]
    );
    let good = metrics::name(&metrics::UPDATES, &["dyndns2", "good", "powerdns"]);
    assert!(out.counters.contains(&good), "{:?}", out.counters);
}

#[test]
fn a_rejected_request_reports_no_latency_sample() {
    let req =
        get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.1").basic("demo", "wrong");
    let (out, calls) = run(req, 37);
    assert_eq!(calls, 0);
    assert!(out.samples.is_empty(), "{:?}", out.samples);
}

#[test]
fn an_exchange_whose_callouts_are_lost_answers_in_its_dialect() {
    let cfg = cheap_demo();
    let kv = MemoryKv::default();
    let env = Env {
        now_ms: 1_700_000_000_000,
        random: 1,
        kv: &kv,
    };
    let req = get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.1")
        .basic("demo", "demo-password");
    let (mut ex, step) = Exchange::start(cfg, req, true, &env);
    assert!(matches!(step, Step::Call(_)), "{step:?}");
    // The host lost every call: the dialect, not the adapter, words the failure.
    let out = ex.abort(cfg, &env);
    let reply = out.reply.expect("an aborted exchange still answers");
    assert_eq!(String::from_utf8_lossy(&reply.body), "dnserr\n");
    let dnserr = metrics::name(&metrics::UPDATES, &["dyndns2", "dnserr", "powerdns"]);
    assert!(out.counters.contains(&dnserr), "{:?}", out.counters);
    assert!(ex.is_finished());
    let again = ex
        .abort(cfg, &env)
        .reply
        .expect("a finished exchange still answers");
    assert_eq!(again.status, 500);
}
