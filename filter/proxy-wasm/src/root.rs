//! The root context: compiles the plugin configuration, publishes it in shared data, and hands
//! each HTTP context the compiled form.

use std::rc::Rc;

use dynedge_core::kv::keys;
use dynedge_core::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::host::{self, Metrics};
use crate::http::DynedgeHttp;

#[derive(Default)]
pub struct DynedgeRoot {
    config: Option<(Rc<Config>, String)>,
    metrics: Rc<Metrics>,
}

impl Context for DynedgeRoot {}

impl RootContext for DynedgeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let cfg = match Config::from_json(&raw) {
            Ok(c) => c,
            Err(e) => {
                // Refusing the configuration makes Envoy reject the plugin: fail loudly at start.
                host::log(LogLevel::Critical, &format!("dynedge: {e}"));
                return false;
            }
        };
        for w in cfg.warnings() {
            host::log(LogLevel::Warn, &format!("dynedge: {w}"));
        }
        let fingerprint = dynedge_core::config::fingerprint(&raw);
        host::publish_config(&raw, &fingerprint);
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
        self.config = Some((Rc::new(cfg), fingerprint));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (cfg, _) = self.current_config()?;
        Some(Box::new(DynedgeHttp::new(cfg, self.metrics.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl DynedgeRoot {
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
