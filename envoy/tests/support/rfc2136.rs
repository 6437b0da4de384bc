//! The RFC 2136 gateway: examples/dynedge-rfc2136.json pointed at a DoH relay (BIND's own
//! DoH, or dnsdist in front of Knot or PowerDNS), served by the proxy `DYNEDGE_GATEWAY` names,
//! and curl with the demo token.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dynedge_envoy::rfc2136;
use dynedge_envoy::{free_port, wasm_file, workspace_root, Certificate, Envoy, EnvoyConfig, Proxy};

use super::TOKEN;

/// The DoH relay the filter calls: its cluster name and port.
#[derive(Clone, Copy)]
pub struct Relay {
    pub name: &'static str,
    pub port: u16,
}

impl Relay {
    pub fn bind(port: u16) -> Relay {
        Relay {
            name: rfc2136::DEMO_CLUSTER,
            port,
        }
    }

    pub fn dnsdist(port: u16) -> Relay {
        Relay {
            name: "dnsdist_doh",
            port,
        }
    }

    /// The Envoy cluster (`envoy/rfc2136-*-cluster.yaml.tmpl`, HTTP/2 without TLS).
    fn yaml(self) -> String {
        if self.name == rfc2136::DEMO_CLUSTER {
            rfc2136::bind_doh_cluster(self.port)
        } else {
            rfc2136::dnsdist_doh_cluster(self.port)
        }
    }

    /// The same for dynedge-pingora.
    fn pingora(self) -> String {
        format!("{}=127.0.0.1:{},h2c", self.name, self.port)
    }
}

/// examples/dynedge-rfc2136.json with its backend on `cluster`, signing with this key.
pub fn relay_plugin(cluster: &str, key_name: &str, secret: &str) -> serde_json::Value {
    let text = fs::read_to_string(workspace_root().join("examples/dynedge-rfc2136.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let b = &mut v["backends"]["bind"];
    b["cluster"] = cluster.into();
    b["key_name"] = key_name.into();
    b["secret"] = secret.into();
    v
}

/// The proxy `DYNEDGE_GATEWAY` names (Envoy: the production bootstrap, TLS, the filter) with
/// `plugin` and the relay's cluster.
pub fn gateway(dir: &Path, plugin: String, relay: Option<Relay>) -> Envoy {
    let proxy = Proxy::from_env().unwrap_or_else(|e| panic!("{e}"));
    let cfg = EnvoyConfig {
        listen_address: "127.0.0.1".into(),
        listen_port: free_port(),
        certificate: Certificate::self_signed(&dir.join("tls")).unwrap_or_else(|e| panic!("{e}")),
        wasm: match proxy {
            Proxy::Envoy => wasm_file().unwrap_or_else(|e| panic!("{e}")),
            Proxy::Pingora => PathBuf::new(),
        },
        plugin_config: plugin,
        pdns_api_port: free_port(), // the bootstrap's PowerDNS cluster, unused here
        access_log: dir.join("access.log"),
        webhook_port: None,
    };
    match proxy {
        Proxy::Envoy => Envoy::start_with_clusters(
            &dir.join("envoy"),
            &cfg,
            &relay.map(Relay::yaml).unwrap_or_default(),
        ),
        Proxy::Pingora => Envoy::start_pingora_with_clusters(
            &dir.join("envoy"),
            &cfg,
            &relay.map(Relay::pingora).into_iter().collect::<Vec<_>>(),
        ),
    }
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `curl` over HTTPS to `path` with the demo token and `extra` curl arguments: (status, body).
pub fn bearer_call(envoy: &Envoy, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "15",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&envoy.certificate.cert)
        .args(["-H", &format!("authorization: Bearer {TOKEN}")])
        .args(extra)
        .arg(envoy.url(path))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.trim_end().to_string())
}
