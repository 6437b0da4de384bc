//! Performs the core's etcd [`Callout`]s over plain HTTP/1.1 with a `TcpStream`: the etcd v3
//! JSON gateway needs nothing more. Tries each endpoint in turn when one cannot be reached.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use dynedge_core::{Callout, CalloutResult};

pub struct Etcd {
    /// `host:port` of each member's client URL.
    endpoints: Vec<String>,
}

impl Etcd {
    /// `http://127.0.0.1:2379,http://127.0.0.1:22379` (the scheme is optional, https refused).
    pub fn new(list: &str) -> Result<Etcd, String> {
        let mut endpoints = Vec::new();
        for e in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if e.starts_with("https://") {
                return Err(format!(
                    "{e}: only plain HTTP is supported (loopback or a sidecar)"
                ));
            }
            let hostport = e.trim_start_matches("http://").trim_end_matches('/');
            endpoints.push(hostport.to_string());
        }
        if endpoints.is_empty() {
            return Err("no etcd endpoint given (--etcd)".into());
        }
        Ok(Etcd { endpoints })
    }

    /// Sends the call to the first endpoint that answers.
    pub fn perform(&self, c: &Callout) -> CalloutResult {
        let mut last = String::new();
        for ep in &self.endpoints {
            match once(ep, c) {
                Ok(r) => return r,
                Err(e) => last = format!("{ep}: {e}"),
            }
        }
        CalloutResult::Failed(last)
    }
}

fn once(ep: &str, c: &Callout) -> Result<CalloutResult, String> {
    let timeout = Duration::from_millis(c.timeout_ms.max(1000));
    let addr = ep
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{} {} HTTP/1.1\r\nhost: {ep}\r\nconnection: close\r\ncontent-length: {}\r\n",
        c.method,
        c.path,
        c.body.len()
    );
    for (k, v) in &c.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(&c.body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<CalloutResult, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(raw).map_err(|e| e.to_string())? else {
        return Err("incomplete HTTP response".into());
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let rest = &raw[n..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(CalloutResult::Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(x)) => x,
            _ => return Err("bad chunked body".into()),
        };
        let size = usize::try_from(size).map_err(|_| "chunk too large")?;
        rest = &rest[used..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_plain_bodies_are_read() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let CalloutResult::Response { status, body, .. } = parse_response(raw).unwrap() else {
            panic!()
        };
        assert_eq!((status, body.as_slice()), (200, &b"abcde"[..]));
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno";
        let CalloutResult::Response { status, body, .. } = parse_response(raw).unwrap() else {
            panic!()
        };
        assert_eq!((status, body.as_slice()), (404, &b"no"[..]));
    }

    #[test]
    fn https_endpoints_are_refused() {
        assert!(Etcd::new("https://x:1").is_err());
        assert!(Etcd::new("").is_err());
    }
}
