//! Blocking HTTP/1.1 over a `TcpStream`, for the parts that talk to a server with no proxy in
//! between: the admin command (etcd's JSON gateway), the test host (callouts forwarded to a
//! real server) and tests that send raw requests to Envoy, or read the response curl printed.
//! httparse reads the response head; the body is read by `transfer-encoding: chunked`,
//! `content-length`, or until the server closes.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One request. `headers` are sent as given, except pseudo-headers (`:path`, ...) and `host`,
/// `content-length` and `connection`, which this crate writes itself.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// One response: header names in lower case, the body without its chunk framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a new connection (`connection: close`) to `addr` (`host:port`), each of
/// connect, write and read bounded by `timeout`.
pub fn exchange(addr: &str, timeout: Duration, req: &Request) -> io::Result<Response> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write_request(&mut stream, req, true)?;
    read_response(&mut stream)
}

/// Writes `req` with its `content-length`; `close` asks the server to close the connection
/// after its answer, otherwise the connection stays open for the next request.
pub fn write_request(w: &mut impl Write, req: &Request, close: bool) -> io::Result<()> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        req.method, req.path, req.host
    );
    if close {
        head.push_str("connection: close\r\n");
    }
    for (n, v) in req.headers {
        let own = ["host", "content-length", "connection"]
            .iter()
            .any(|o| n.eq_ignore_ascii_case(o));
        if !n.starts_with(':') && !own {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len()));
    w.write_all(head.as_bytes())?;
    w.write_all(req.body)?;
    w.flush()
}

/// Reads one response from `r`. On a keep-alive connection the server sends nothing more
/// before the next request, so the connection is then ready for it.
pub fn read_response(r: &mut impl Read) -> io::Result<Response> {
    let mut buf = Vec::new();
    let (status, headers, head_len) = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        read_more(r, &mut buf, "the response head")?;
    };
    let mut rest = buf.split_off(head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            if let Some(body) = dechunk(&rest)? {
                break body;
            }
            read_more(r, &mut rest, "the chunked body")?;
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| invalid(format!("content-length {len:?} is not a number")))?;
        while rest.len() < len {
            read_more(r, &mut rest, "the body")?;
        }
        rest.truncate(len);
        rest
    } else {
        r.read_to_end(&mut rest)?;
        rest
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The response `curl -i` (or `curl -D -`) printed, or raw bytes read until the server closed:
/// the last head (curl prints interim `100 Continue` heads first) and everything after it as
/// the body. curl prints an HTTP/2 or HTTP/3 head as `HTTP/2 200`; it is read like HTTP/1.1.
pub fn parse_printed(bytes: &[u8]) -> io::Result<Response> {
    let mut rest = bytes;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n");
        let status_line = line_end.and_then(|end| rest.get(..end)).unwrap_or(rest);
        let version_len = status_line
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| invalid("no status line".into()))?;
        let Some(after_version) = rest.get(version_len..) else {
            return Err(invalid("no status line".into()));
        };
        let mut head = b"HTTP/1.1".to_vec();
        head.extend_from_slice(after_version);
        let (status, headers, head_len) =
            parse_head(&head)?.ok_or_else(|| invalid("the head does not end".into()))?;
        let body = head.get(head_len..).unwrap_or_default();
        if (100..200).contains(&status) && body.starts_with(b"HTTP/") {
            rest = rest.get(rest.len() - body.len()..).unwrap_or_default();
            continue;
        }
        return Ok(Response {
            status,
            headers,
            body: body.to_vec(),
        });
    }
}

type Head = (u16, Vec<(String, String)>, usize);

/// The status, headers and length of a complete head at the start of `buf`.
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = resp.parse(buf).map_err(|e| invalid(e.to_string()))?
    else {
        return Ok(None);
    };
    let status = resp.code.ok_or_else(|| invalid("no status code".into()))?;
    let headers = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Some((status, headers, len)))
}

/// The body of a complete chunked encoding at the start of `rest` (trailers dropped), or
/// `None` when more bytes are needed.
fn dechunk(mut rest: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(invalid("bad chunk size".into())),
        };
        let size = usize::try_from(size).map_err(|_| invalid("chunk too large".into()))?;
        let Some(after) = rest.get(used..) else {
            return Ok(None);
        };
        if size == 0 {
            // The trailer section ends with an empty line.
            let ended = after.starts_with(b"\r\n") || after.windows(4).any(|w| w == b"\r\n\r\n");
            return Ok(ended.then_some(body));
        }
        let Some(data) = after.get(..size) else {
            return Ok(None);
        };
        body.extend_from_slice(data);
        match after.get(size..size.saturating_add(2)) {
            Some(b"\r\n") => rest = &after[size + 2..],
            Some(_) if after.len() >= size + 2 => return Err(invalid("chunk without CRLF".into())),
            _ => return Ok(None),
        }
    }
}

fn read_more(r: &mut impl Read, buf: &mut Vec<u8>, what: &str) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = r.read(&mut chunk)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the connection closed in {what}"),
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP response: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> io::Result<Response> {
        read_response(&mut &raw[..])
    }

    #[test]
    fn chunked_body_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = read(raw).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    }

    #[test]
    fn content_length_bounds_the_body() {
        let raw = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            read(raw).unwrap(),
            Response {
                status: 204,
                headers: vec![("content-length".into(), "0".into())],
                body: vec![]
            }
        );
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nnoMORE";
        let r = read(raw).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"no"[..]));
    }

    #[test]
    fn without_a_length_the_body_ends_when_the_server_closes() {
        let r = read(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end").unwrap();
        assert_eq!(r.body, b"until the end");
        assert_eq!(r.header("x-a"), Some("1"));
    }

    #[test]
    fn truncated_or_malformed_responses_are_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"not http\r\n\r\n",
        ] {
            assert!(read(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }

    /// Reads byte by byte: every partial state is resumed, not misread.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn a_keep_alive_stream_yields_one_response_after_the_other() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none\
HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nthree";
        let mut r = Trickle(raw);
        let bodies: Vec<Vec<u8>> = (0..3)
            .map(|_| read_response(&mut r).unwrap().body)
            .collect();
        assert_eq!(
            bodies,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn printed_responses_are_read_in_any_http_version_after_interim_heads() {
        let h2 = b"HTTP/2 401 \r\nwww-authenticate: Basic\r\ncontent-length: 8\r\n\r\nbadauth\n";
        let r = parse_printed(h2).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (401, &b"badauth\n"[..]));
        assert_eq!(r.header("www-authenticate"), Some("Basic"));
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-a: 1\r\n\r\ngood\n";
        let r = parse_printed(interim).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"good\n"[..]));
        for bad in [&b""[..], b"garbage", b"HTTP/1.1 200 OK\r\nx: 1\r\n"] {
            assert!(parse_printed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_request_carries_its_length_and_drops_pseudo_and_framing_headers() {
        let headers = vec![
            (":authority".to_string(), "x".to_string()),
            ("Content-Length".to_string(), "99".to_string()),
            ("x-api-key".to_string(), "k".to_string()),
        ];
        let req = Request {
            method: "POST",
            path: "/p",
            host: "h:1",
            headers: &headers,
            body: b"abc",
        };
        let mut out = Vec::new();
        write_request(&mut out, &req, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p HTTP/1.1\r\nhost: h:1\r\nconnection: close\r\nx-api-key: k\r\n\
             content-length: 3\r\n\r\nabc"
        );
    }
}
