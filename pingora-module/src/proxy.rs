//! A ready-made [`ProxyHttp`]: dynedge routes are answered by the [`Gateway`], every other
//! request goes to one upstream. On TLS listeners an [`Hsts`] module adds
//! Strict-Transport-Security to the proxied responses (the core's replies carry it already).

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dynedge_core::adapter::SECURITY_HEADERS;
use dynedge_core::Reply;
use pingora::http::{ResponseHeader, Version};
use pingora::modules::http::compression::ResponseCompressionBuilder;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, HttpModules, Module};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::gateway::{write_reply, Gateway};
use crate::timeouts::{request_time_left, request_timed_out, IDLE_TIMEOUT, STREAM_IDLE_TIMEOUT};

const HSTS: &str = "strict-transport-security";

/// The core's HSTS value, so proxied and local responses say the same thing.
pub fn hsts_value() -> &'static str {
    SECURITY_HEADERS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(HSTS))
        .map_or("max-age=63072000; includeSubDomains", |(_, v)| v)
}

/// Downstream module adding HSTS to every response that lacks it: proxied, cached, error
/// pages written through [`Session::write_response_header`]. Add it on TLS listeners only
/// (RFC 6797 §7.2: browsers ignore it over plain HTTP).
pub struct Hsts;

#[async_trait]
impl HttpModule for Hsts {
    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> pingora::Result<()> {
        if resp.headers.get(HSTS).is_none() {
            resp.insert_header(HSTS, hsts_value())?;
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Builds the [`Hsts`] module for [`HttpModules::add_module`].
pub struct HstsBuilder;

impl HttpModuleBuilder for HstsBuilder {
    fn init(&self) -> Module {
        Box::new(Hsts)
    }
}

/// One line per request, like the Envoy bootstrap's access log: the path *without* its query
/// string (it may carry credentials) and no Authorization header.
/// `[2026-11-25T17:44:53.123Z] "GET /nic/update HTTP/2" 200 - 16 3ms 127.0.0.1 "ddclient/3.10"`
pub struct AccessLog {
    file: Mutex<File>,
}

impl AccessLog {
    pub fn open(path: &Path) -> Result<AccessLog, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("access log {}: {e}", path.display()))?;
        Ok(AccessLog {
            file: Mutex::new(file),
        })
    }

    fn write(&self, session: &Session, started: Instant, error: Option<&Error>) {
        let req = session.req_header();
        let protocol = match req.version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_11 => "HTTP/1.1",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/0.9",
        };
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        // Envoy's response flags: no route, upstream failure, downstream closed, internal.
        let flags = match error.map(|e| (e.etype(), e.esource())) {
            Some((ErrorType::HTTPStatus(_), _)) => "NR",
            Some((_, ErrorSource::Upstream)) => "UF",
            Some((_, ErrorSource::Downstream)) => "DC",
            Some(_) => "EI",
            None => "-",
        };
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or_else(|| "-".to_string(), |a| a.ip().to_string());
        let agent = req
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .replace('"', "'");
        let line = format!(
            "[{}] \"{} {} {protocol}\" {status} {flags} {} {}ms {peer} \"{agent}\"\n",
            rfc3339_utc(SystemTime::now()),
            req.method,
            // The same redaction as the filter: no query, path secrets as `***`.
            dynedge_core::adapter::loggable_path(req.uri.path()),
            session.body_bytes_sent(),
            started.elapsed().as_millis(),
        );
        if let Ok(mut f) = self.file.lock() {
            // A full disk must not fail the request; the line is lost.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// `2026-11-25T17:44:53.123Z`, as the core writes its timestamps.
fn rfc3339_utc(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    dynedge_core::adapter::iso8601(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// dynedge in front of one upstream.
pub struct DynedgeProxy {
    pub gateway: Arc<Gateway>,
    /// Where non-dynedge requests go; `None` answers them 404 (like the Envoy bootstrap's route).
    pub upstream: Option<SocketAddr>,
    /// Add HSTS to proxied responses (set it for TLS listeners).
    pub hsts: bool,
    pub access_log: Option<Arc<AccessLog>>,
}

#[async_trait]
impl ProxyHttp for DynedgeProxy {
    /// When the request started (for the access log).
    type CTX = Instant;

    fn new_ctx(&self) -> Instant {
        Instant::now()
    }

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        // What the default implementation adds (compression, off).
        modules.add_module(ResponseCompressionBuilder::enable(0));
        if self.hsts {
            modules.add_module(Box::new(HstsBuilder));
        }
    }

    /// The slow-client limits of the Envoy bootstrap (crate::timeouts) on this request.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Instant,
    ) -> pingora::Result<()> {
        session.set_keepalive(Some(IDLE_TIMEOUT.as_secs()));
        session.set_read_timeout(Some(STREAM_IDLE_TIMEOUT));
        session.set_write_timeout(Some(STREAM_IDLE_TIMEOUT));
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        started: &mut Instant,
    ) -> pingora::Result<bool> {
        // A body trickled in byte by byte passes every per-read timeout: bound the whole.
        let left = request_time_left(*started)?;
        tokio::time::timeout(left, self.answer_locally(session))
            .await
            .map_err(|_| request_timed_out())?
    }

    /// Proxied bodies: the same bound, checked as each chunk arrives (a silent client meets
    /// the read timeout instead).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        started: &mut Instant,
    ) -> pingora::Result<()> {
        request_time_left(*started).map(|_| ())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Instant,
    ) -> pingora::Result<Box<HttpPeer>> {
        match self.upstream {
            Some(addr) => Ok(Box::new(HttpPeer::new(addr, false, String::new()))),
            None => Err(Error::explain(
                ErrorType::HTTPStatus(404),
                "no upstream configured",
            )),
        }
    }

    /// The default writes its error page past the downstream modules (no HSTS on a 502);
    /// this one writes it through them.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut Instant,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            let reason = pingora::http::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            let reply = Reply::text(code, format!("{code} {reason}\n"));
            // The downstream is already failing if this does not go out; nothing more to do.
            let _ = write_reply(session, &reply).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, started: &mut Instant) {
        if let Some(log) = &self.access_log {
            log.write(session, *started, e);
        }
    }
}

impl DynedgeProxy {
    /// `Ok(true)` when the request was answered here: a dynedge route, or the 404 without
    /// an upstream.
    async fn answer_locally(&self, session: &mut Session) -> pingora::Result<bool> {
        if self.gateway.handle(session).await? {
            return Ok(true);
        }
        if self.upstream.is_none() {
            // Read what the client sends first: answering over an unread HTTP/2 request body
            // ends the stream with an error instead of the 404.
            drain_body(session).await?;
            write_reply(session, &Reply::text(404, "not found\n")).await?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Reads and drops a request body of up to 64 KiB (more is left unread).
async fn drain_body(session: &mut Session) -> pingora::Result<()> {
    let mut seen = 0;
    while seen <= 64 * 1024 {
        match session.read_request_body().await? {
            Some(chunk) => seen += chunk.len(),
            None => break,
        }
    }
    Ok(())
}

/// The metrics: `GET /stats` as Envoy's admin `/stats` lines (`name: value`, histograms
/// `name: count=N sum=S max=M`), `GET /stats/prometheus` (or `/metrics`) in the Prometheus
/// text format, with the names and labels of Envoy's `/stats/prometheus` (docs/metrics.md);
/// anything else is a 404. Serve it on a loopback-only listener.
pub struct StatsEndpoint {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl ProxyHttp for StatsEndpoint {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        let metrics = self.gateway.metrics();
        let reply = match session.req_header().uri.path() {
            "/stats" => Reply::text(200, metrics.stats_text()),
            "/stats/prometheus" | "/metrics" => Reply::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.prometheus(),
            ),
            _ => Reply::text(404, "not found\n"),
        };
        write_reply(session, &reply).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Err(Error::explain(ErrorType::HTTPStatus(404), "stats only"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |ms: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_628_529_258), "2026-11-25T17:42:09.258Z");
    }
}
