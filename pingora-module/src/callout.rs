//! Performs the core's [`Callout`]s over Pingora's own HTTP client.
//!
//! A `Callout` names a *cluster* (the Envoy word); here each cluster name maps to a socket
//! address given at start (`--cluster pdns_api=127.0.0.1:8081`). Connections are pooled by
//! one [`Connector`] shared by every worker thread. Anything that is not an HTTP response
//! (unknown cluster, refused, reset, timed out) becomes [`CalloutResult::Failed`], as Envoy's
//! `on_http_call_response` with no headers does for the wasm filter.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynedge_core::{Callout, CalloutFailure, CalloutResult, Config};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::{ErrorType, OrErr};
use tokio::sync::Semaphore;

/// The largest callout response body read; a DNS API answer for one RRset is far smaller.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// How long an idle backend connection stays in the pool.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Calls one HTTP/2 connection carries at once (the server's own limit applies too; BIND's is
/// 100 per connection).
const H2_STREAMS: usize = 100;

/// One cluster: where it is, and how many calls may be in flight to it at once.
#[derive(Clone)]
pub struct Cluster {
    pub addr: SocketAddr,
    /// `max_requests=N`: calls beyond N wait (within their timeout) for a free slot, like
    /// Envoy's circuit-breaker queue. PowerDNS on sqlite3 needs 1 ("database is locked").
    pub max_requests: Option<usize>,
    /// `h2c`: HTTP/2 without TLS, prior knowledge (BIND's DoH listener speaks only HTTP/2).
    pub h2c: bool,
    /// `tls=SNI`: HTTPS, the certificate checked against `SNI` and the trusted CAs.
    pub tls_sni: Option<String>,
    /// More addresses of the same service (`etcd=HOST:PORT,HOST:PORT,...`): calls go round
    /// robin, so the core's retry of an unanswered call lands on another member.
    pub more: Vec<SocketAddr>,
    next: Arc<AtomicUsize>,
    slots: Option<Arc<Semaphore>>,
}

impl Cluster {
    pub fn new(addr: SocketAddr, max_requests: Option<usize>) -> Cluster {
        Cluster {
            addr,
            max_requests,
            h2c: false,
            tls_sni: None,
            more: Vec::new(),
            next: Arc::new(AtomicUsize::new(0)),
            slots: max_requests.map(|n| Arc::new(Semaphore::new(n))),
        }
    }
}

impl PartialEq for Cluster {
    fn eq(&self, other: &Cluster) -> bool {
        self.addr == other.addr
            && self.max_requests == other.max_requests
            && self.h2c == other.h2c
            && self.tls_sni == other.tls_sni
            && self.more == other.more
    }
}

impl Eq for Cluster {}

impl Cluster {
    /// The address for the next call (round robin over `addr` and `more`).
    pub fn pick(&self) -> SocketAddr {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        n.checked_rem(self.more.len().saturating_add(1))
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.more.get(i).copied())
            .unwrap_or(self.addr)
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max_requests {
            Some(n) => write!(f, "{} (max_requests={n})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Cluster name → backend, and the CA file that TLS clusters trust (none: the system roots).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Clusters(HashMap<String, Cluster>, Option<String>);

impl fmt::Debug for Clusters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl Clusters {
    pub fn new() -> Clusters {
        Clusters::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, cluster: Cluster) {
        self.0.insert(name.into(), cluster);
    }

    pub fn get(&self, name: &str) -> Option<&Cluster> {
        self.0.get(name)
    }

    /// PEM file of the CAs that `tls=` clusters trust instead of the system's.
    pub fn set_ca_file(&mut self, path: impl Into<String>) {
        self.1 = Some(path.into());
    }

    pub fn ca_file(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// Parses one `name=host:port[,max_requests=N][,h2c][,tls=SNI]` mapping. The host is resolved now
    /// (Pingora's `HttpPeer` would otherwise resolve it on every call, blocking a worker).
    pub fn add_spec(&mut self, spec: &str) -> Result<(), String> {
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("cluster '{spec}': expected name=host:port"))?;
        if name.is_empty() {
            return Err(format!("cluster '{spec}': empty name"));
        }
        let mut parts = rest.split(',');
        let addr =
            resolve(parts.next().unwrap_or("")).map_err(|e| format!("cluster '{name}': {e}"))?;
        let mut max_requests = None;
        let mut h2c = false;
        let mut tls_sni = None;
        let mut more = Vec::new();
        for opt in parts {
            if opt == "h2c" {
                h2c = true;
                continue;
            }
            if !opt.contains('=') {
                more.push(resolve(opt).map_err(|e| format!("cluster '{name}': {e}"))?);
                continue;
            }
            match opt.split_once('=') {
                Some(("tls", sni)) if !sni.is_empty() => tls_sni = Some(sni.to_string()),
                Some(("max_requests", n)) => {
                    let n: usize = n
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("cluster '{name}': max_requests must be > 0"))?;
                    max_requests = Some(n);
                }
                _ => return Err(format!("cluster '{name}': unknown option '{opt}'")),
            }
        }
        let mut cluster = Cluster::new(addr, max_requests);
        cluster.h2c = h2c;
        cluster.tls_sni = tls_sni;
        cluster.more = more;
        self.insert(name, cluster);
        Ok(())
    }

    /// Every backend of `cfg` must have an address, or its updates could only ever fail.
    pub fn check(&self, cfg: &Config) -> Result<(), String> {
        let mut missing: Vec<&str> = cfg
            .backends
            .values()
            .map(|b| b.cluster())
            .chain(cfg.store.etcd().map(|s| s.cluster.as_str()))
            .filter(|c| !self.0.contains_key(*c))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no address for cluster(s) {} (give --cluster NAME=HOST:PORT)",
                missing.join(", ")
            ))
        }
    }
}

/// `host:port` → the first address it resolves to.
pub fn resolve(hostport: &str) -> Result<SocketAddr, String> {
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("'{hostport}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{hostport}' resolves to no address"))
}

/// Performs one callout within its own timeout. Never panics, never returns an error: a
/// failure is a [`CalloutResult::Failed`] the core turns into `dnserr`/`911`.
pub async fn perform(connector: &Connector, clusters: &Clusters, c: &Callout) -> CalloutResult {
    let Some(cluster) = clusters.get(&c.cluster) else {
        return CalloutResult::Failed(CalloutFailure::NotSent(format!(
            "unknown cluster '{}'",
            c.cluster
        )));
    };
    let timeout = Duration::from_millis(c.timeout_ms.max(1));
    let call = async {
        // Held until the response is read; the wait for it counts against the timeout.
        let _slot = match &cluster.slots {
            Some(s) => Some(
                s.acquire()
                    .await
                    .or_err(ErrorType::InternalError, "cluster slots")?,
            ),
            None => None,
        };
        exchange(connector, cluster, c, timeout).await
    };
    match pingora::prelude::timeout(timeout, call).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => CalloutResult::Failed(CalloutFailure::Connection(format!(
            "{} {}: {e}",
            c.method, c.cluster
        ))),
        Err(_) => CalloutResult::Failed(CalloutFailure::Timeout {
            after_ms: c.timeout_ms,
        }),
    }
}

fn peer_for(cluster: &Cluster, addr: SocketAddr, timeout: Duration) -> HttpPeer {
    let mut peer = match &cluster.tls_sni {
        Some(sni) => HttpPeer::new(addr, true, sni.clone()),
        None => HttpPeer::new(addr, false, String::new()),
    };
    if cluster.h2c {
        peer.options.set_http_version(2, 2);
        // Pingora's default is one call per connection: a storm of concurrent calls then
        // opens a connection each, overflows the server's listen queue (BIND's is 10), and the
        // dropped connections retry a second later. Envoy's HTTP/2 cluster multiplexes them.
        peer.options.max_h2_streams = H2_STREAMS;
    }
    peer.options.connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    peer
}

async fn exchange(
    connector: &Connector,
    cluster: &Cluster,
    c: &Callout,
    timeout: Duration,
) -> pingora::Result<CalloutResult> {
    // A member that refuses the connection has seen nothing of the call, so the next address
    // of the same service gets it at once (a killed etcd member must not cost an update).
    let mut tries = cluster.more.len();
    let (peer, (mut http, _reused)) = loop {
        let peer = peer_for(cluster, cluster.pick(), timeout);
        match connector.get_http_session(&peer).await {
            Ok(session) => break (peer, session),
            Err(_) if tries > 0 => tries -= 1,
            Err(e) => return Err(e),
        }
    };

    let mut req = RequestHeader::build(
        c.method.as_str(),
        c.path.as_bytes(),
        Some(c.headers.len() + 2),
    )?;
    req.insert_header("host", c.authority.as_str())?;
    for (k, v) in &c.headers {
        req.append_header(k.clone(), v.as_str())?;
    }
    let has_body = !c.body.is_empty();
    if has_body || c.method.has_body() {
        req.insert_header("content-length", c.body.len().to_string())?;
    }
    http.write_request_header(Box::new(req)).await?;
    if has_body {
        http.write_request_body(Bytes::copy_from_slice(&c.body), true)
            .await?;
    }
    http.finish_request_body().await?;
    http.read_response_header().await?;
    let (status, headers) = match http.response_header() {
        Some(r) => (
            r.status.as_u16(),
            r.headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        ),
        None => return Ok(CalloutResult::Failed(CalloutFailure::NoResponse)),
    };
    let mut body = Vec::new();
    while let Some(chunk) = http.read_response_body().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY {
            return Ok(CalloutResult::Failed(CalloutFailure::BadResponse(format!(
                "body larger than {MAX_RESPONSE_BODY} bytes"
            ))));
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(http, &peer, Some(POOL_IDLE))
        .await;
    Ok(CalloutResult::Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_calls_to_an_h2c_cluster_share_one_connection() {
        let mut c = Clusters::new();
        c.add_spec("doh=127.0.0.1:8053,h2c").unwrap();
        c.add_spec("api=127.0.0.1:8081").unwrap();
        let peer = |name: &str| {
            let cluster = c.get(name).unwrap();
            peer_for(cluster, cluster.addr, Duration::from_secs(1))
        };
        assert_eq!(peer("doh").options.max_h2_streams, H2_STREAMS);
        assert_eq!(
            peer("api").options.max_h2_streams,
            1,
            "HTTP/1.1: one call each"
        );
    }

    #[test]
    fn cluster_specs_parse_into_addresses() {
        let mut c = Clusters::new();
        c.add_spec("pdns_api=127.0.0.1:18081").unwrap();
        c.add_spec("v6=[::1]:53").unwrap();
        c.add_spec("one=127.0.0.1:8081,max_requests=1").unwrap();
        c.add_spec("doh=127.0.0.1:8053,h2c").unwrap();
        c.add_spec("hooks=127.0.0.1:8443,tls=localhost").unwrap();
        assert_eq!(
            c.get("hooks").unwrap().tls_sni.as_deref(),
            Some("localhost")
        );
        assert!(c.get("doh").unwrap().h2c);
        c.add_spec("etcd=127.0.0.1:2379,127.0.0.1:2380,[::1]:2381")
            .unwrap();
        let etcd = c.get("etcd").unwrap();
        let picked: Vec<SocketAddr> = (0..4).map(|_| etcd.pick()).collect();
        assert_eq!(
            picked,
            [
                "127.0.0.1:2379",
                "127.0.0.1:2380",
                "[::1]:2381",
                "127.0.0.1:2379"
            ]
            .map(|a| a.parse::<SocketAddr>().unwrap())
        );
        assert_eq!(c.get("doh").unwrap().pick(), c.get("doh").unwrap().addr);
        assert!(!c.get("one").unwrap().h2c);
        let addr = |n: &str| c.get(n).map(|c| c.addr);
        assert_eq!(addr("pdns_api"), Some("127.0.0.1:18081".parse().unwrap()));
        assert_eq!(addr("v6"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(addr("other"), None);
        assert_eq!(c.get("pdns_api").unwrap().max_requests, None);
        assert_eq!(c.get("one").unwrap().max_requests, Some(1));
    }

    #[test]
    fn malformed_cluster_specs_are_refused() {
        let mut c = Clusters::new();
        for bad in [
            "pdns_api",
            "=127.0.0.1:1",
            "pdns_api=127.0.0.1",
            "x=nohost.invalid:1",
        ] {
            assert!(c.add_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_backend_without_a_cluster_address_is_reported() {
        let cfg = Config::from_json(include_bytes!("../../examples/dynedge.json")).unwrap();
        let err = Clusters::new().check(&cfg).unwrap_err();
        assert!(err.contains("pdns_api"), "{err}");
        let mut c = Clusters::new();
        c.add_spec("pdns_api=127.0.0.1:18081").unwrap();
        assert_eq!(c.check(&cfg), Ok(()));
    }
}
