//! The timer-driven work of a gateway, scheduled once for every adapter: the etcd store's
//! credential sync, the expiry sweep, and webhook deliveries with their retries.
//!
//! Sans-IO like [`crate::Exchange`]: the adapter calls [`Maintenance::tick`] every
//! [`tick_period_ms`], performs the calls it gets back, feeds each result to
//! [`Maintenance::on_callout`], and applies the [`Effects`] (publish a synced configuration,
//! record a sweep's outcome, count, log). Requests hand their webhook deliveries over with
//! [`Maintenance::notify`].

use std::collections::HashMap;

use crate::backends::{Callout, CalloutResult};
use crate::config::{fingerprint, Config};
use crate::exchange::{CalloutId, Env, Outcome, Step};
use crate::expiry::{self, Sweep};
use crate::kv::KvWrite;
use crate::store::etcd;
use crate::webhooks::{Delivery, Notify};

/// How often the adapter's timer fires while webhooks are configured (queued deliveries wait
/// at most this long).
pub const NOTIFY_TICK_MS: u64 = 250;
/// The timer otherwise: the sync and the sweep keep their own intervals, checked this often.
pub const TICK_MS: u64 = 1000;
/// Deliveries waiting (queued or for a retry) at most; more are dropped with an error line.
pub const MAX_WAITING: usize = 4096;

/// How often the adapter's timer must fire for `cfg`, or `None` when nothing is scheduled.
pub fn tick_period_ms(cfg: &Config) -> Option<u64> {
    if cfg.webhooks.is_some() {
        Some(NOTIFY_TICK_MS)
    } else if cfg.store.etcd().is_some() || expires(cfg) {
        Some(TICK_MS.min(cfg.expiry_sweep_interval_s.saturating_mul(1000).max(1)))
    } else {
        None
    }
}

fn expires(cfg: &Config) -> bool {
    cfg.zones.iter().any(|z| z.expiry_ttl_s > 0)
}

/// A credential sync's result: the merged plugin JSON (publish it as is), its fingerprint,
/// and the compiled configuration to serve from now on.
pub struct Synced {
    pub raw: Vec<u8>,
    pub fingerprint: String,
    pub config: Box<Config>,
}

/// What the adapter must do after a tick or a callout result.
#[derive(Default)]
#[must_use = "the adapter must perform the calls and apply the rest"]
pub struct Effects {
    /// Perform each, and feed its result to [`Maintenance::on_callout`] with its id.
    pub calls: Vec<(CalloutId, Callout)>,
    /// A sync succeeded: serve this configuration (when its fingerprint is new).
    pub synced: Option<Synced>,
    /// Shared-KV writes (the sync's time, which updates check for staleness).
    pub writes: Vec<KvWrite>,
    /// A sweep ended: apply it like an exchange's outcome (it has no reply, notifies nobody).
    pub outcome: Option<Outcome>,
    /// Counters to increment by one.
    pub counters: Vec<&'static str>,
    /// Lines for the host's error log; nothing secret in them.
    pub errors: Vec<String>,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.calls.extend(other.calls);
        if other.synced.is_some() {
            self.synced = other.synced;
        }
        self.writes.extend(other.writes);
        if other.outcome.is_some() {
            self.outcome = other.outcome;
        }
        self.counters.extend(other.counters);
        self.errors.extend(other.errors);
    }
}

enum Pending {
    Sync,
    /// One of the sweep's own calls, by its id in the sweep.
    Sweep(CalloutId),
    Notify(Notify),
}

/// The schedule and the work in flight of one gateway (one per process, or per wasm VM).
#[derive(Default)]
pub struct Maintenance {
    /// The plugin JSON as configured; the etcd sync merges its credentials into it.
    base_raw: Vec<u8>,
    next_id: CalloutId,
    pending: HashMap<CalloutId, Pending>,
    sweep: Option<Sweep>,
    last_sweep_ms: u64,
    next_sync_ms: u64,
    sync_in_flight: bool,
    queued: Vec<Notify>,
    retries: Vec<(u64, Notify)>,
}

impl Maintenance {
    /// For the plugin JSON `base_raw` (what the etcd sync merges its credentials into).
    pub fn new(base_raw: Vec<u8>) -> Maintenance {
        Maintenance {
            base_raw,
            ..Maintenance::default()
        }
    }

    /// A new plugin JSON (reload): the next tick syncs at once.
    pub fn reconfigure(&mut self, base_raw: Vec<u8>) {
        self.base_raw = base_raw;
        self.next_sync_ms = 0;
    }

    /// Queues a request's webhook delivery for the next tick.
    pub fn notify(&mut self, n: Notify) -> Effects {
        let mut fx = Effects::default();
        if self.queued.len().saturating_add(self.retries.len()) >= MAX_WAITING {
            fx.errors.push(format!(
                "dynedge: webhook via {} dropped: {MAX_WAITING} deliveries already waiting",
                n.callout.cluster
            ));
        } else {
            self.queued.push(n);
        }
        fx
    }

    /// What is due at `env.now_ms`: queued and retried deliveries, the sync, the sweep.
    pub fn tick(&mut self, cfg: &Config, env: &Env) -> Effects {
        let now = env.now_ms;
        let mut fx = Effects::default();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.retries.drain(..).partition(|(at, _)| *at <= now);
        self.retries = waiting;
        let due: Vec<Notify> = self
            .queued
            .drain(..)
            .chain(ready.into_iter().map(|(_, n)| n))
            .collect();
        for n in due {
            let id = self.id();
            fx.calls.push((id, n.callout.clone()));
            self.pending.insert(id, Pending::Notify(n));
        }
        if let Some(store) = cfg.store.etcd() {
            if !self.sync_in_flight && now >= self.next_sync_ms {
                self.next_sync_ms = now.saturating_add(store.ttl_s.saturating_mul(1000));
                self.sync_in_flight = true;
                let id = self.id();
                fx.calls.push((id, etcd::sync_call(store)));
                self.pending.insert(id, Pending::Sync);
            }
        }
        if self.sweep.is_none() && expires(cfg) && self.sweep_due(cfg, now) {
            self.last_sweep_ms = now;
            if let Some((sweep, step)) = expiry::start(cfg, env) {
                self.sweep = Some(sweep);
                fx.merge(self.sweep_step(step));
            }
        }
        fx
    }

    /// The sweep keeps its interval; half a tick of slack so a timer firing a little early
    /// does not push it a whole tick back.
    fn sweep_due(&self, cfg: &Config, now: u64) -> bool {
        let every = cfg.expiry_sweep_interval_s.saturating_mul(1000);
        let slack = tick_period_ms(cfg).unwrap_or(TICK_MS) / 2;
        self.last_sweep_ms == 0
            || now.saturating_sub(self.last_sweep_ms).saturating_add(slack) >= every
    }

    /// The result of call `id` (an id this maintenance gave out; others are ignored).
    pub fn on_callout(&mut self, id: CalloutId, result: CalloutResult, env: &Env) -> Effects {
        match self.pending.remove(&id) {
            Some(Pending::Sync) => {
                self.sync_in_flight = false;
                self.synced(&result, env)
            }
            Some(Pending::Sweep(inner)) => {
                let step = match self.sweep.as_mut() {
                    Some(sweep) => sweep.on_callout(inner, result, env),
                    None => return Effects::default(),
                };
                self.sweep_step(step)
            }
            Some(Pending::Notify(n)) => self.notified(n, &result, env),
            None => Effects::default(),
        }
    }

    fn synced(&mut self, result: &CalloutResult, env: &Env) -> Effects {
        let mut fx = Effects::default();
        let merged = etcd::sync_apply(&self.base_raw, result).and_then(|raw| {
            Config::from_json(&raw)
                .map(|c| (raw, c))
                .map_err(|e| e.to_string())
        });
        match merged {
            Ok((raw, config)) => {
                fx.writes.push(KvWrite::put(
                    etcd::SYNCED_KEY.into(),
                    env.now_ms.to_string().into_bytes(),
                ));
                fx.synced = Some(Synced {
                    fingerprint: fingerprint(&raw),
                    raw,
                    config: Box::new(config),
                });
            }
            // The previous snapshot stays; without a good sync for max_stale_s, updates
            // answer 911 (fail closed).
            Err(e) => fx.errors.push(format!("dynedge: etcd sync: {e}")),
        }
        fx
    }

    fn sweep_step(&mut self, step: Step) -> Effects {
        let mut fx = Effects::default();
        match step {
            Step::Call(calls) => {
                for (inner, c) in calls {
                    let id = self.id();
                    self.pending.insert(id, Pending::Sweep(inner));
                    fx.calls.push((id, c));
                }
            }
            Step::Done(outcome) => {
                self.sweep = None;
                fx.outcome = Some(outcome);
            }
            // The sweep's writes are calls of their own (`Job::without_group_commit`).
            Step::Commit(_) | Step::Pass | Step::NeedBody { .. } | Step::Wait => {}
        }
        fx
    }

    fn notified(&mut self, n: Notify, result: &CalloutResult, env: &Env) -> Effects {
        let mut fx = Effects::default();
        let delivery = n.next(result);
        if let Some(name) = delivery.counter() {
            fx.counters.push(name);
        }
        match delivery {
            Delivery::Retry { after_ms, again } => {
                self.retries
                    .push((env.now_ms.saturating_add(after_ms), again));
            }
            Delivery::GaveUp { log } => fx.errors.push(log),
            Delivery::Delivered => {}
        }
        fx
    }

    fn id(&mut self) -> CalloutId {
        // Skip ids still pending (after a wrap-around).
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if !self.pending.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{CalloutFailure, Method};
    use crate::kv::MemoryKv;
    use serde_json::json;

    fn config(extra: serde_json::Value) -> (Vec<u8>, Config) {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../examples/dynedge-etcd.json")).unwrap();
        if let (Some(map), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            map.extend(extra);
        }
        let raw = v.to_string().into_bytes();
        let cfg = Config::from_json(&raw).unwrap();
        (raw, cfg)
    }

    fn env(kv: &MemoryKv, now_ms: u64) -> Env<'_> {
        Env {
            now_ms,
            random: 7,
            kv,
        }
    }

    fn etcd_answer(users: &[serde_json::Value]) -> CalloutResult {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kvs: Vec<_> = users
            .iter()
            .map(|u| json!({"key": b64("/dynedge/users/x"), "value": b64(&u.to_string())}))
            .collect();
        let body = json!({
            "header": {"revision": "5"},
            "succeeded": true,
            "responses": [
                {"response_range": {"kvs": kvs}},
                {"response_range": {}},
                {"response_range": {}},
            ]
        });
        CalloutResult::Response {
            status: 200,
            headers: vec![],
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn the_sync_runs_once_per_ttl_and_publishes_the_merged_configuration() {
        let (raw, cfg) = config(json!({}));
        let kv = MemoryKv::default();
        let mut m = Maintenance::new(raw);
        let fx = m.tick(&cfg, &env(&kv, 10_000));
        assert_eq!(fx.calls.len(), 1);
        let (id, call) = &fx.calls[0];
        assert_eq!(call.path, "/v3/kv/txn");
        // In flight, and not due again before ttl_s (2 s) anyway.
        assert!(m.tick(&cfg, &env(&kv, 13_000)).calls.is_empty());
        let demo = &serde_json::from_slice::<serde_json::Value>(include_bytes!(
            "../../../examples/dynedge.json"
        ))
        .unwrap()["users"][0];
        let user = demo.clone();
        let fx = m.on_callout(*id, etcd_answer(&[user]), &env(&kv, 13_000));
        assert!(fx.errors.is_empty(), "{:?}", fx.errors);
        let synced = fx.synced.expect("a synced configuration");
        assert_eq!(synced.config.users.len(), 1);
        assert_eq!(synced.fingerprint, fingerprint(&synced.raw));
        assert_eq!(fx.writes.len(), 1);
        assert_eq!(fx.writes[0].key, etcd::SYNCED_KEY);
        assert!(m.tick(&cfg, &env(&kv, 11_999)).calls.is_empty());
        assert_eq!(m.tick(&cfg, &env(&kv, 12_000)).calls.len(), 1);
    }

    #[test]
    fn a_failed_sync_keeps_the_old_snapshot_and_says_why() {
        let (raw, cfg) = config(json!({}));
        let kv = MemoryKv::default();
        let mut m = Maintenance::new(raw);
        let fx = m.tick(&cfg, &env(&kv, 1));
        let fx = m.on_callout(
            fx.calls[0].0,
            CalloutResult::Failed(CalloutFailure::Connection("refused".into())),
            &env(&kv, 2),
        );
        assert!(fx.synced.is_none() && fx.writes.is_empty());
        assert_eq!(fx.errors.len(), 1, "{:?}", fx.errors);
        // A reload syncs at once.
        m.reconfigure(b"{}".to_vec());
        assert_eq!(m.tick(&cfg, &env(&kv, 3)).calls.len(), 1);
    }

    #[test]
    fn webhook_deliveries_wait_for_the_tick_and_retries_for_their_time() {
        let (raw, cfg) = config(json!({}));
        let kv = MemoryKv::default();
        let mut m = Maintenance::new(raw);
        let _ = m.tick(&cfg, &env(&kv, 1)); // the sync
        let hook = Callout {
            cluster: "webhooks".into(),
            method: Method::Post,
            authority: "hooks".into(),
            path: "/".into(),
            headers: vec![],
            body: vec![],
            timeout_ms: 100,
        };
        let n = Notify {
            callout: hook,
            attempt: 0,
            max_retries: 1,
            retry_base_ms: 1000,
        };
        assert!(m.notify(n).errors.is_empty());
        let fx = m.tick(&cfg, &env(&kv, 100));
        assert_eq!(fx.calls.len(), 1);
        let fx = m.on_callout(
            fx.calls[0].0,
            CalloutResult::Failed(CalloutFailure::NoResponse),
            &env(&kv, 100),
        );
        assert_eq!(fx.counters, vec![crate::metrics::WEBHOOK_RETRIED]);
        assert!(fx.errors.is_empty());
        assert!(m.tick(&cfg, &env(&kv, 150)).calls.is_empty());
        let fx = m.tick(&cfg, &env(&kv, 100_000));
        let hooks: Vec<_> = fx
            .calls
            .iter()
            .filter(|(_, c)| c.cluster == "webhooks")
            .collect();
        assert_eq!(hooks.len(), 1);
        let fx = m.on_callout(
            hooks[0].0,
            CalloutResult::Failed(CalloutFailure::NoResponse),
            &env(&kv, 100_001),
        );
        assert_eq!(fx.counters, vec![crate::metrics::WEBHOOK_GIVEN_UP]);
        assert_eq!(fx.errors.len(), 1);
    }

    #[test]
    fn the_expiry_sweep_keeps_its_interval_and_runs_once_at_a_time() {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../examples/dynedge.json")).unwrap();
        v["zones"][0]["expiry_ttl_s"] = 3.into();
        v["expiry_sweep_interval_s"] = 10.into();
        let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(tick_period_ms(&cfg), Some(TICK_MS));
        let kv = MemoryKv::default();
        kv.apply(&[KvWrite::put(
            crate::kv::keys::seen("home.dyn.example.test"),
            b"1".to_vec(),
        )]);
        let mut m = Maintenance::default();
        let fx = m.tick(&cfg, &env(&kv, 100_000));
        assert!(!fx.calls.is_empty(), "the silent host is swept");
        assert!(fx.calls.iter().all(|(_, c)| c.cluster == "pdns_api"));
        // Still running, and not due before the interval anyway.
        assert!(m.tick(&cfg, &env(&kv, 101_000)).calls.is_empty());
        let mut pending: Vec<CalloutId> = fx.calls.iter().map(|(id, _)| *id).collect();
        let mut outcome = None;
        while let Some(id) = pending.pop() {
            let fx = m.on_callout(
                id,
                CalloutResult::Failed(CalloutFailure::NoResponse),
                &env(&kv, 102_000),
            );
            pending.extend(fx.calls.iter().map(|(id, _)| *id));
            outcome = outcome.or(fx.outcome);
        }
        assert!(outcome.is_some(), "the sweep ends with an outcome");
        assert!(m.tick(&cfg, &env(&kv, 105_000)).calls.is_empty());
        // Half a tick early is on time.
        assert!(!m.tick(&cfg, &env(&kv, 109_600)).calls.is_empty());
    }

    #[test]
    fn the_timer_runs_only_when_something_is_scheduled() {
        let plain = Config::from_json(include_bytes!("../../../examples/dynedge.json")).unwrap();
        assert_eq!(tick_period_ms(&plain), None);
        let (_, etcd) = config(json!({}));
        assert_eq!(tick_period_ms(&etcd), Some(TICK_MS));
        let mut m = Maintenance::default();
        let kv = MemoryKv::default();
        let fx = m.tick(&plain, &env(&kv, 5));
        assert!(fx.calls.is_empty() && fx.outcome.is_none());
        // Unknown ids change nothing.
        let fx = m.on_callout(
            99,
            CalloutResult::Failed(CalloutFailure::NoResponse),
            &env(&kv, 6),
        );
        assert!(fx.calls.is_empty() && fx.errors.is_empty());
    }
}
