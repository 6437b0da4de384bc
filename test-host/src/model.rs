//! The values a test builds and reads: requests, responses, callouts, logs, metrics, errors.

use std::fmt;

/// Header list in wire order. Names are stored lower-case, as Envoy stores them.
pub type Headers = Vec<(String, String)>;

/// The id of a proxy-wasm context (a root context per worker, one per HTTP stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ctx(pub u32);

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "context {}", self.0)
    }
}

/// The token of an HTTP callout made with `proxy_http_call`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u32);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "callout {}", self.0)
    }
}

/// A downstream request, as Envoy would hand it to the filter.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Headers,
    pub(crate) peer: String,
    pub(crate) tls_version: Option<String>,
    pub(crate) properties: Vec<(String, Vec<u8>)>,
    pub(crate) worker: usize,
}

impl Request {
    /// A request with this method and raw `:path` (query included); `:authority` localhost,
    /// `:scheme` http, peer 127.0.0.1:40000, worker 0.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), path.into()),
                (":authority".into(), "localhost".into()),
                (":scheme".into(), "http".into()),
            ],
            body: Vec::new(),
            trailers: Vec::new(),
            peer: "127.0.0.1:40000".into(),
            tls_version: None,
            properties: Vec::new(),
            worker: 0,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// Adds a header (the name is lower-cased). A pseudo-header replaces the default one.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            self.headers.retain(|(n, _)| *n != name);
        }
        self.headers.push((name, value.into()));
        self
    }

    /// Sets `:authority`.
    pub fn authority(self, authority: &str) -> Request {
        self.header(":authority", authority)
    }

    /// The request body, delivered in one `proxy_on_request_body` call with end_of_stream.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Adds a request trailer (delivered through `proxy_on_request_trailers`).
    pub fn trailer(mut self, name: &str, value: &str) -> Request {
        self.trailers
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The downstream peer, `"ip:port"` (IPv6 as `"[::1]:5555"`): property `source.address`.
    /// Defaults to `127.0.0.1:40000`.
    pub fn peer(mut self, address: &str) -> Request {
        self.peer = address.into();
        self
    }

    /// Marks the downstream connection as TLS with this version (`"TLSv1.3"`): sets `:scheme`
    /// to `https` and property `connection.tls_version`.
    pub fn tls(mut self, version: &str) -> Request {
        self.tls_version = Some(version.into());
        self.header(":scheme", "https")
    }

    /// Sets or overrides any property (path with dots, e.g. `"request.id"`).
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Request {
        self.properties.push((path.into(), value.into()));
        self
    }

    /// Runs the stream on this worker (VM instance); 0 by default.
    pub fn worker(mut self, index: usize) -> Request {
        self.worker = index;
        self
    }
}

/// An upstream response delivered through the response callbacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl Response {
    /// A response with this status and no body.
    pub fn status(status: u16) -> Response {
        Response {
            headers: vec![(":status".into(), status.to_string())],
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// First value of a header.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// A reply the filter sent with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub details: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub grpc_status: i32,
}

impl LocalResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// The request as the filter let it through to the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl Forwarded {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// Where a stream stands after the host has delivered what it had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The filter paused the request and has not resumed it or replied yet.
    Paused,
    /// The filter let the request through to the upstream.
    Forwarded(Forwarded),
    /// The filter answered with a local reply.
    Replied(LocalResponse),
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
}

/// An HTTP callout the filter dispatched with `proxy_http_call`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub token: Token,
    /// The context that dispatched it (the one `proxy_on_http_call_response` is delivered to).
    pub context: Ctx,
    pub worker: usize,
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout_ms: u32,
    /// Virtual time at which the host times the call out (as Envoy would).
    pub deadline_ns: u64,
}

impl Call {
    /// First value of a header (`":method"`, `":path"`, `":authority"`, …).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// `:method`.
    pub fn method(&self) -> &str {
        self.header(":method").unwrap_or("")
    }

    /// `:path`.
    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or("")
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a responder answers a callout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Deliver this response (`:status` is added from `status`).
    Respond {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    },
    /// Deliver a failure: `num_headers = 0`, as Envoy does on timeout or reset.
    Fail,
    /// Leave the call pending (answer it later by hand, or let the clock time it out).
    Hold,
}

impl Answer {
    /// A response with this status, these headers and body.
    pub fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Answer {
        Answer::Respond {
            status,
            headers: own(headers),
            body: body.into(),
        }
    }
}

/// A log level of `proxy_log` (ABI values 0..=5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub(crate) fn from_abi(value: i32) -> Option<LogLevel> {
        Some(match value {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    pub(crate) fn to_abi(self) -> i32 {
        self as i32
    }
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// `proxy_log`.
    ProxyLog,
    /// WASI `fd_write` to fd 1.
    Stdout,
    /// WASI `fd_write` to fd 2.
    Stderr,
}

/// One captured log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub source: LogSource,
    pub worker: usize,
    pub context: Ctx,
    pub message: String,
}

/// The kind of a metric (`proxy_define_metric`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// Counter or gauge value (a histogram's count of samples).
    pub value: u64,
    /// Every value recorded into a histogram.
    pub samples: Vec<u64>,
}

/// An error from the host: the module could not be loaded, it trapped, or the test used the
/// host wrongly. Messages name the ABI call or callback concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The .wasm could not be read, compiled or instantiated.
    Load(String),
    /// The module trapped (panic, unreachable, a host call that refused a misuse, …) in a callback.
    Trap {
        callback: String,
        context: Ctx,
        message: String,
    },
    /// The test asked for something the host cannot do (unknown context, token, worker, …).
    Usage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load(m) => write!(f, "cannot load module: {m}"),
            Error::Trap {
                callback,
                context,
                message,
            } => write!(f, "module trapped in {callback} ({context}): {message}"),
            Error::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn own(headers: &[(&str, &str)]) -> Headers {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
        .collect()
}
