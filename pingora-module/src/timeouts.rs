//! Slow-client limits: the downstream timeouts of envoy/bootstrap.yaml.tmpl
//! (`request_timeout: 30s`, `common_http_protocol_options.idle_timeout: 15s`,
//! `stream_idle_timeout: 60s`), as far as Pingora lets a proxy set them.
//!
//! Two of the bootstrap's limits have no hook in Pingora 0.9: the TLS handshake
//! (`transport_socket_connect_timeout: 10s`) runs under a fixed 60 s in Pingora's listener
//! before any application code sees the connection, and the first request's headers on a new
//! connection are read with a fixed 60 s per-read timeout before any `ProxyHttp` filter runs
//! (`request_headers_timeout: 10s`). Later requests on a kept-alive connection wait at most
//! [`IDLE_TIMEOUT`] for their first byte.

use std::time::{Duration, Instant};

use pingora::apps::HttpServerOptions;
use pingora::{Error, ErrorType};

/// `request_timeout`: a request's headers and body must be in by then (from the end of the
/// headers, where Pingora first hands the request over); answered 408, as Envoy does.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `idle_timeout`: a connection without a request in flight (the HTTP/1.1 keep-alive wait for
/// the next request, an HTTP/2 connection without streams) is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// `stream_idle_timeout`: a request on which no byte is read, or no write completes, for this
/// long ends.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The listener options: [`IDLE_TIMEOUT`] for idle HTTP/2 connections.
pub fn server_options() -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(IDLE_TIMEOUT);
    options
}

/// What is left of [`REQUEST_TIMEOUT`] for a request that started at `started`, or the 408
/// error once it is spent.
pub fn request_time_left(started: Instant) -> pingora::Result<Duration> {
    REQUEST_TIMEOUT
        .checked_sub(started.elapsed())
        .filter(|left| !left.is_zero())
        .ok_or_else(request_timed_out)
}

/// The error that ends a request over [`REQUEST_TIMEOUT`] with a 408.
pub fn request_timed_out() -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(408), "request_timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_the_request_timeout_then_a_408() {
        let now = Instant::now();
        assert!(request_time_left(now).unwrap() <= REQUEST_TIMEOUT);
        assert!(request_time_left(now).unwrap() > REQUEST_TIMEOUT - Duration::from_secs(5));
        let Some(long_ago) = now.checked_sub(REQUEST_TIMEOUT + Duration::from_secs(1)) else {
            return;
        };
        let e = request_time_left(long_ago).unwrap_err();
        assert_eq!(e.etype(), &ErrorType::HTTPStatus(408));
    }
}
