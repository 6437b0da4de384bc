//! The root context: compiles the plugin configuration, publishes it in shared data, and hands
//! each HTTP context the compiled form.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use dynedge_core::adapter::keys;
use dynedge_core::maintenance::{self, Effects, Maintenance};
use dynedge_core::{CalloutId, CalloutResult, Config, Env};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::host::{self, Metrics, SharedData};
use crate::http::DynedgeHttp;
use crate::vm::{SharedVm, Vm};

pub struct DynedgeRoot {
    id: u32,
    config: Option<(Rc<Config>, String)>,
    metrics: Rc<Metrics>,
    /// The credential sync, the expiry sweep and webhook deliveries (scheduled by the core),
    /// and their calls in flight by token.
    maintenance: Maintenance,
    in_flight: HashMap<u32, CalloutId>,
    /// Webhook deliveries the HTTP contexts of this VM handed over (after their reply).
    outbox: Outbox,
    /// The group commit and the streams' exchanges, shared with the HTTP contexts.
    vm: SharedVm,
}

/// Shared between the root context and the HTTP contexts of one VM (one thread).
pub type Outbox = Rc<RefCell<Vec<dynedge_core::Notify>>>;

impl Context for DynedgeRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let result = host::call_result(self, num_headers, body_size);
        let Some(id) = self.in_flight.remove(&token) else {
            // A batch, or a call made for a stream while the root had the turn.
            let mut vm = self.vm.borrow_mut();
            if vm.on_response(token, result, self.id) {
                vm.settle(self.id);
            }
            return;
        };
        self.feed(id, result);
    }
}

impl RootContext for DynedgeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        // Not `get_vm_configuration`: it panics (trapping the VM) when the host has none.
        let vm_config = hostcalls::get_buffer(BufferType::VmConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.vm
            .borrow_mut()
            .set_layer0_by_proxy(dynedge_core::Reply::layer0_by_proxy(&vm_config));
        true
    }

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
        let fingerprint = dynedge_core::adapter::fingerprint(&raw);
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
        if let Some(ms) = maintenance::tick_period_ms(&cfg) {
            self.set_tick_period(Duration::from_millis(ms));
        }
        self.maintenance = Maintenance::new(raw);
        let cfg = Rc::new(cfg);
        {
            let mut vm = self.vm.borrow_mut();
            vm.register_queue();
            vm.set_config(cfg.clone());
        }
        self.config = Some((cfg, fingerprint));
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let mut vm = self.vm.borrow_mut();
        if vm.queue() != Some(queue_id) {
            return;
        }
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {}
        vm.settle(self.id);
    }

    fn on_tick(&mut self) {
        let Some((cfg, _)) = self.current_config() else {
            return;
        };
        let handed_over: Vec<_> = self.outbox.borrow_mut().drain(..).collect();
        for n in handed_over {
            let fx = self.maintenance.notify(n);
            self.apply(fx);
        }
        let fx = self.maintenance.tick(&cfg, &self.env());
        self.apply(fx);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (cfg, _) = self.current_config()?;
        Some(Box::new(DynedgeHttp::new(context_id, cfg, self.vm.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl DynedgeRoot {
    pub fn new(id: u32) -> Self {
        let metrics = Rc::new(Metrics::default());
        let outbox = Outbox::default();
        DynedgeRoot {
            id,
            config: None,
            vm: Vm::new(id, metrics.clone(), outbox.clone()),
            metrics,
            maintenance: Maintenance::default(),
            in_flight: HashMap::new(),
            outbox,
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

    fn feed(&mut self, id: CalloutId, result: CalloutResult) {
        let fx = self.maintenance.on_callout(id, result, &self.env());
        self.apply(fx);
    }

    /// Performs the maintenance's calls and applies the rest of its effects.
    fn apply(&mut self, fx: Effects) {
        // Exhaustive: a new field of `Effects` does not compile until it is applied here.
        let Effects {
            calls,
            synced,
            writes,
            outcome,
            counters,
            errors,
        } = fx;
        for line in &errors {
            host::log(LogLevel::Error, line);
        }
        for name in counters {
            self.metrics.increment(name);
        }
        if let Some(s) = synced {
            host::publish_config(&s.raw, &s.fingerprint, &self.metrics);
            if self.config.as_ref().map(|(_, fp)| fp) != Some(&s.fingerprint) {
                host::log(
                    LogLevel::Info,
                    &format!(
                        "dynedge: etcd sync: {} user(s), {} token(s) [{}]",
                        s.config.users.len(),
                        s.config.tokens.len(),
                        s.fingerprint.get(..12).unwrap_or_default()
                    ),
                );
                let cfg = Rc::new(*s.config);
                self.vm.borrow_mut().set_config(cfg.clone());
                self.config = Some((cfg, s.fingerprint));
            }
        }
        host::apply(&writes);
        if let Some(outcome) = outcome {
            // A sweep has no reply and notifies nobody.
            let _ = host::record(outcome, &self.metrics, self.env().now_s());
        }
        let (in_flight, failed) = host::dispatch(self, calls);
        self.in_flight.extend(in_flight);
        for (id, result) in failed {
            self.feed(id, result);
        }
    }

    /// The configuration in shared data is the source of truth; recompile only when its
    /// fingerprint differs from the one this VM compiled. Only the etcd store's credential sync
    /// publishes a configuration other than the plugin's own, which every VM compiles in
    /// `on_configure`: without it, reading the generation (a shared-data call per request)
    /// could never find another one.
    fn current_config(&self) -> Option<(Rc<Config>, String)> {
        let local = self.config.clone()?;
        if local.0.store.etcd().is_none() {
            return Some(local);
        }
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
