//! dynedge as a proxy-wasm filter (ABI 0.2.1, Envoy/Istio).
//!
//! This crate makes no decisions: it snapshots the request, hands it to the sans-IO core
//! (`dynedge_core::Exchange`) and performs the `Step`s it returns with proxy-wasm host calls.

mod host;
mod http;
mod root;
mod vm;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    // A panic traps the whole VM; at least say why in Envoy's log.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("dynedge: panic: {info}"),
        );
    }));
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::DynedgeRoot::new(id))
    });
}}
