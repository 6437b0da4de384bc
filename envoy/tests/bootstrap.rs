//! The bootstrap itself: Envoy refuses to run with a plugin configuration the filter rejects
//! (fail closed), rather than serving updates without authentication.

mod support;

use dynedge_envoy::{wasm_file, Certificate, Envoy, EnvoyConfig};
use support::*;

#[test]
fn a_plugin_configuration_the_filter_rejects_keeps_envoy_from_starting() {
    let wasm = wasm_file().unwrap_or_else(|e| panic!("{e}"));
    let dir = test_dir("bad_plugin_config");
    let mut cfg = plugin_config_value(free_port());
    cfg["backends"]["pdns"]["type"] = "no-such-backend".into();
    let started = Envoy::start(
        &dir.join("envoy"),
        &EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: free_port(),
            certificate: Certificate::self_signed(&dir.join("tls")).unwrap(),
            wasm,
            plugin_config: cfg.to_string(),
            pdns_api_port: free_port(),
            access_log: dir.join("access.log"),
            webhook_port: None,
        },
    );
    let Err(why) = started else {
        panic!("Envoy started with a configuration the filter rejects");
    };
    assert!(why.contains("Unable to create Wasm plugin"), "{why}");
    // The filter's own message names what is wrong.
    assert!(why.contains("no-such-backend"), "{why}");
}
