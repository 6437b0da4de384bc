//! The root context: compiles the plugin configuration, publishes it in shared data, and hands
//! each HTTP context the compiled form.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use dynedge_core::expiry::{self, Sweep};
use dynedge_core::kv::keys;
use dynedge_core::{CalloutId, CalloutResult, Config, Delivery, Env, Notify, Step};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::host::{self, Metrics, SharedData};
use crate::http::DynedgeHttp;

#[derive(Default)]
pub struct DynedgeRoot {
    config: Option<(Rc<Config>, String)>,
    metrics: Rc<Metrics>,
    /// The expiry sweep in progress, and its calls in flight.
    sweep: Option<Sweep>,
    in_flight: HashMap<u32, CalloutId>,
    /// Webhook deliveries the HTTP contexts of this VM handed over (after their reply).
    outbox: Outbox,
    /// Deliveries waiting for their retry time (ms), and those in flight by token.
    retries: Vec<(u64, Notify)>,
    notify_in_flight: HashMap<u32, Notify>,
    /// When the expiry sweep last ran, and how often it runs (the tick may be faster).
    last_sweep_ms: u64,
    sweep_every_ms: u64,
    /// The plugin configuration as given (the etcd store merges its credentials into it).
    base_raw: Vec<u8>,
    /// The etcd credential sync in flight, and when the next one is due.
    sync_token: Option<u32>,
    next_sync_ms: u64,
}

/// Shared between the root context and the HTTP contexts of one VM (one thread).
pub type Outbox = Rc<RefCell<Vec<Notify>>>;

/// How often queued and retried webhook deliveries are dispatched.
const NOTIFY_TICK: Duration = Duration::from_millis(250);

impl Context for DynedgeRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if let Some(n) = self.notify_in_flight.remove(&token) {
            let result = host::call_result(self, num_headers, body_size);
            self.notified(n, &result);
            return;
        }
        if self.sync_token == Some(token) {
            self.sync_token = None;
            let result = host::call_result(self, num_headers, body_size);
            self.synced(&result);
            return;
        }
        let Some(id) = self.in_flight.remove(&token) else {
            return;
        };
        let result = host::call_result(self, num_headers, body_size);
        self.feed(id, result);
    }
}

impl RootContext for DynedgeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let cfg = match Config::from_json(&raw) {
            Ok(c) => c,
            Err(e) => {
                // Refusing the configuration makes Envoy reject the plugin: fail loudly at start.
                host::log(LogLevel::Critical, &format!("dynedge: {e}"));
                self.metrics
                    .increment(&dynedge_core::metrics::config_load(false));
                return false;
            }
        };
        for w in cfg.warnings() {
            host::log(LogLevel::Warn, &format!("dynedge: {w}"));
        }
        let fingerprint = dynedge_core::config::fingerprint(&raw);
        host::publish_config(&raw, &fingerprint, &self.metrics);
        host::log(
            LogLevel::Info,
            &format!(
                "dynedge: configured {} zone(s), {} user(s), {} token(s) [{}]",
                cfg.zones.len(),
                cfg.users.len(),
                cfg.tokens.len(),
                &fingerprint[..12]
            ),
        );
        self.sweep_every_ms = cfg.expiry_sweep_interval_s.saturating_mul(1000);
        let expiry = cfg.zones.iter().any(|z| z.expiry_ttl_s > 0);
        if cfg.webhooks.is_some() {
            // Webhooks are dispatched from the tick; the sweep keeps its own interval.
            self.set_tick_period(NOTIFY_TICK);
        } else if cfg.store.etcd().is_some() {
            // Credential sync every ttl_s (checked each second).
            self.set_tick_period(Duration::from_secs(1));
        } else if expiry {
            self.set_tick_period(Duration::from_secs(cfg.expiry_sweep_interval_s));
        }
        self.base_raw = raw;
        self.config = Some((Rc::new(cfg), fingerprint));
        true
    }

    fn on_tick(&mut self) {
        self.dispatch_notifications();
        self.maybe_sync();
        if self.sweep.is_some() {
            return; // the previous sweep is still waiting for its calls
        }
        let Some((cfg, _)) = self.current_config() else {
            return;
        };
        let env = self.env();
        // With webhooks or the etcd sync the tick is fast: the sweep keeps its own interval.
        let too_soon = (cfg.webhooks.is_some() || cfg.store.etcd().is_some())
            && env.now_ms.saturating_sub(self.last_sweep_ms) < self.sweep_every_ms;
        if !cfg.zones.iter().any(|z| z.expiry_ttl_s > 0) || too_soon {
            return;
        }
        self.last_sweep_ms = env.now_ms;
        if let Some((sweep, step)) = expiry::start(&cfg, &env) {
            self.sweep = Some(sweep);
            self.drive(step);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (cfg, _) = self.current_config()?;
        Some(Box::new(DynedgeHttp::new(
            cfg,
            self.metrics.clone(),
            self.outbox.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl DynedgeRoot {
    /// etcd store: read every user and token once per `ttl_s` (`store::etcd::sync_call`).
    fn maybe_sync(&mut self) {
        let Some(store) = self
            .config
            .as_ref()
            .and_then(|(c, _)| c.store.etcd().cloned())
        else {
            return;
        };
        let now_ms = self.env().now_ms;
        if self.sync_token.is_some() || now_ms < self.next_sync_ms {
            return;
        }
        self.next_sync_ms = now_ms + store.ttl_s * 1000;
        let (in_flight, failed) = host::dispatch(
            self,
            vec![(0, dynedge_core::store::etcd::sync_call(&store))],
        );
        self.sync_token = in_flight.first().map(|(token, _)| *token);
        for (_, result) in failed {
            self.synced(&result);
        }
    }

    /// A sync's answer: publish the merged configuration, and the time of this snapshot.
    fn synced(&mut self, result: &CalloutResult) {
        use dynedge_core::store::etcd;
        let merged = etcd::sync_apply(&self.base_raw, result).and_then(|raw| {
            Config::from_json(&raw)
                .map(|c| (raw, c))
                .map_err(|e| e.to_string())
        });
        let (raw, cfg) = match merged {
            Ok(ok) => ok,
            Err(e) => {
                // Keep the previous snapshot; without a good sync for max_stale_s, updates
                // answer 911 (fail closed).
                host::log(LogLevel::Error, &format!("dynedge: etcd sync: {e}"));
                return;
            }
        };
        let fingerprint = dynedge_core::config::fingerprint(&raw);
        host::publish_config(&raw, &fingerprint, &self.metrics);
        let now_ms = self.env().now_ms;
        host::apply(&[dynedge_core::KvWrite::put(
            etcd::SYNCED_KEY.into(),
            now_ms.to_string().into_bytes(),
        )]);
        if self.config.as_ref().map(|(_, fp)| fp) != Some(&fingerprint) {
            host::log(
                LogLevel::Info,
                &format!(
                    "dynedge: etcd sync: {} user(s), {} token(s) [{}]",
                    cfg.users.len(),
                    cfg.tokens.len(),
                    &fingerprint[..12]
                ),
            );
            self.config = Some((Rc::new(cfg), fingerprint));
        }
    }

    fn env(&self) -> Env<'static> {
        let now_ms = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Env {
            now_ms,
            random: RandomState::new().hash_one(now_ms),
            kv: &SharedData,
        }
    }

    /// Dispatches what the HTTP contexts queued and the retries that are due.
    fn dispatch_notifications(&mut self) {
        let now_ms = self.env().now_ms;
        let mut due: Vec<Notify> = self.outbox.borrow_mut().drain(..).collect();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.retries.drain(..).partition(|(at, _)| *at <= now_ms);
        self.retries = waiting;
        due.extend(ready.into_iter().map(|(_, n)| n));
        for n in due {
            let (in_flight, failed) = host::dispatch(self, vec![(0, n.callout.clone())]);
            match in_flight.first() {
                Some((token, _)) => {
                    self.notify_in_flight.insert(*token, n);
                }
                None => {
                    if let Some((_, result)) = failed.into_iter().next() {
                        self.notified(n, &result);
                    }
                }
            }
        }
    }

    /// A delivery's result: done, or scheduled again (the core decides, `Notify::next`).
    fn notified(&mut self, n: Notify, result: &CalloutResult) {
        let delivery = n.next(result);
        self.metrics.increment(&delivery.counter());
        match delivery {
            Delivery::Retry { after_ms, again } => {
                let at = self.env().now_ms.saturating_add(after_ms);
                self.retries.push((at, again));
            }
            Delivery::GaveUp { log } => host::log(LogLevel::Warn, &log),
            Delivery::Delivered => {}
        }
    }

    fn feed(&mut self, id: CalloutId, result: CalloutResult) {
        let env = self.env();
        let Some(sweep) = self.sweep.as_mut() else {
            return;
        };
        let step = sweep.on_callout(id, result, &env);
        self.drive(step);
    }

    fn drive(&mut self, step: Step) {
        match step {
            Step::Call(calls) => {
                let (in_flight, failed) = host::dispatch(self, calls);
                self.in_flight.extend(in_flight);
                for (id, result) in failed {
                    self.feed(id, result);
                }
            }
            Step::Done(outcome) => {
                self.sweep = None;
                // A sweep has no reply and notifies nobody.
                let _ = host::record(outcome, &self.metrics, self.env().now_s());
            }
            Step::Pass | Step::NeedBody { .. } | Step::Wait => {}
        }
    }

    /// The configuration in shared data is the source of truth; recompile only when its
    /// fingerprint differs from the one this VM compiled.
    fn current_config(&self) -> Option<(Rc<Config>, String)> {
        let local = self.config.clone()?;
        let shared =
            host::shared_get(keys::CONFIG_GENERATION).and_then(|v| String::from_utf8(v).ok());
        match shared {
            Some(fp) if fp != local.1 => {
                let raw = host::shared_get(keys::CONFIG)?;
                match Config::from_json(&raw) {
                    Ok(cfg) => Some((Rc::new(cfg), fp)),
                    Err(_) => Some(local),
                }
            }
            _ => Some(local),
        }
    }
}
