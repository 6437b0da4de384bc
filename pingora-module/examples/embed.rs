//! Adding dynedge to a team's own Pingora server.
//!
//! The team already has a `ProxyHttp` (here: `MyGateway`, which routes by path prefix to two
//! upstreams). Three lines add dynedge: build one `Gateway`, call `gateway.handle(session)`
//! first in `request_filter`, and (on TLS listeners) add `HstsBuilder` to the downstream
//! modules so proxied responses carry HSTS like dynedge's own replies.
//!
//! ```text
//! cargo run -p dynedge-pingora --example embed -- examples/dynedge.json cert.pem key.pem
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use dynedge_pingora::standalone::read_config;
use dynedge_pingora::{Clusters, Gateway, HstsBuilder, Maintainer};
use pingora::listeners::tls::TlsSettings;
use pingora::modules::http::HttpModules;
use pingora::prelude::{background_service, HttpPeer, Server};
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};

/// The team's existing proxy, now with dynedge in front of its own routing.
struct MyGateway {
    dynedge: Arc<Gateway>,
}

#[async_trait]
impl ProxyHttp for MyGateway {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(Box::new(HstsBuilder));
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        // DDNS routes (/nic/update, /checkip, /health, ...) are answered here: Ok(true).
        if self.dynedge.handle(session).await? {
            return Ok(true);
        }
        // ... the team's own checks go here ...
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        let api = session.req_header().uri.path().starts_with("/api/");
        let addr = if api {
            "127.0.0.1:9001"
        } else {
            "127.0.0.1:9000"
        };
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, cert, key] = args.as_slice() else {
        return Err("usage: embed PLUGIN.json CERT.pem KEY.pem".into());
    };

    // The same JSON as the wasm plugin; each backend's "cluster" gets an address.
    let mut clusters = Clusters::new();
    clusters.add_spec("pdns_api=127.0.0.1:8081,max_requests=1")?;
    let dynedge = Arc::new(Gateway::from_json(read_config(config.as_ref())?, clusters)?);

    let mut server = Server::new(None).map_err(|e| e.to_string())?;
    server.bootstrap();
    let mut service = http_proxy_service(
        &server.configuration,
        MyGateway {
            dynedge: dynedge.clone(),
        },
    );
    let mut tls = TlsSettings::intermediate(cert, key).map_err(|e| e.to_string())?;
    tls.enable_h2();
    service.add_tls_with_settings("127.0.0.1:8443", None, tls);
    server.add_service(service);
    // Expiry sweeps, webhook deliveries, the etcd store's sync: whatever the JSON schedules.
    server.add_service(background_service(
        "dynedge-maintenance",
        Maintainer::new(dynedge.clone()),
    ));
    server.run_forever()
}
