//! [`Maintainer`]: the background service that runs the core's [`Maintenance`] schedule
//! (etcd credential sync, expiry sweep, webhook deliveries and retries) on a timer, as the
//! wasm filter's `on_tick` does.
//!
//! [`Maintenance`]: dynedge_core::maintenance::Maintenance

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dynedge_core::maintenance::{self, Effects};
use dynedge_core::{CalloutId, CalloutResult};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::gateway::Gateway;

/// Add it next to the proxy service; it does nothing while the configuration schedules
/// nothing (checked again every second, for a reload).
pub struct Maintainer {
    gateway: Arc<Gateway>,
    /// The fingerprint of the last synced configuration (to log changes only).
    synced: Mutex<String>,
}

type Calls = JoinSet<(CalloutId, CalloutResult)>;

impl Maintainer {
    pub fn new(gateway: Arc<Gateway>) -> Maintainer {
        Maintainer {
            gateway,
            synced: Mutex::new(String::new()),
        }
    }

    /// One tick: what is due now, performed in the background.
    pub fn tick(&self, calls: &mut Calls) {
        let cfg = self.gateway.config();
        let fx = match self.gateway.maintenance.lock() {
            Ok(mut m) => m.tick(&cfg, &self.gateway.env()),
            Err(_) => return,
        };
        self.apply(fx, calls);
    }

    fn on_callout(&self, id: CalloutId, result: CalloutResult, calls: &mut Calls) {
        let fx = match self.gateway.maintenance.lock() {
            Ok(mut m) => m.on_callout(id, result, &self.gateway.env()),
            Err(_) => return,
        };
        self.apply(fx, calls);
    }

    fn apply(&self, fx: Effects, calls: &mut Calls) {
        // Exhaustive: a new field of `Effects` does not compile until it is applied here.
        let Effects {
            calls: due,
            synced,
            writes,
            outcome,
            counters,
            errors,
        } = fx;
        for line in &errors {
            eprintln!("{line}");
        }
        for name in counters {
            self.gateway.metrics().increment(name);
        }
        if let Some(s) = synced {
            let changed = self
                .synced
                .lock()
                .map(|mut fp| std::mem::replace(&mut *fp, s.fingerprint.clone()) != s.fingerprint)
                .unwrap_or(true);
            if changed {
                eprintln!(
                    "dynedge: etcd sync: {} user(s), {} token(s) [{}]",
                    s.config.users.len(),
                    s.config.tokens.len(),
                    s.fingerprint.get(..12).unwrap_or_default()
                );
                match self.gateway.replace_config(*s.config) {
                    Ok(()) => self.gateway.metrics().config_loaded(Ok(&s.fingerprint)),
                    Err(e) => eprintln!("dynedge: etcd sync: {e}"),
                }
            }
        }
        self.gateway.kv().apply(&writes);
        if let Some(outcome) = outcome {
            self.gateway.record(outcome);
        }
        for (id, c) in due {
            let gw = self.gateway.clone();
            calls.spawn(async move { (id, gw.perform(&c).await) });
        }
    }
}

#[async_trait]
impl BackgroundService for Maintainer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut calls = Calls::new();
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    let period = maintenance::tick_period_ms(&self.gateway.config());
                    if period.is_some() {
                        self.tick(&mut calls);
                    }
                    next = Instant::now()
                        + Duration::from_millis(period.unwrap_or(maintenance::TICK_MS));
                }
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    // A callout task never panics (`perform` turns every failure into a result).
                    if let Ok((id, result)) = done {
                        self.on_callout(id, result, &mut calls);
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
