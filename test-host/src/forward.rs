//! Forwards a callout to a real HTTP/1.1 server over a plain `TcpStream`, so the same suite
//! can run against a real PowerDNS. Any I/O or parse failure becomes `Answer::Fail`, which the
//! filter sees as Envoy's failed call (`num_headers = 0`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::model::{Answer, Call};

pub(crate) fn forward(addr: &str, call: &Call) -> Answer {
    match exchange(addr, call) {
        Ok(answer) => answer,
        Err(_) => Answer::Fail,
    }
}

fn exchange(addr: &str, call: &Call) -> std::io::Result<Answer> {
    let timeout = Duration::from_millis(u64::from(call.timeout_ms.max(1)));
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        call.method(),
        call.path(),
        call.header(":authority").unwrap_or(addr),
        call.body.len()
    );
    for (n, v) in &call.headers {
        if n.starts_with(':') || n == "host" || n == "content-length" || n == "connection" {
            continue;
        }
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&call.body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = resp.parse(raw).ok()? else {
        return None;
    };
    let status = resp.code?;
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
    let rest = &raw[len..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(cl) = crate::model::find(&headers, "content-length") {
        rest.get(..cl.trim().parse::<usize>().ok()?)?.to_vec()
    } else {
        rest.to_vec()
    };
    let headers = headers
        .into_iter()
        .filter(|(n, _)| n != "transfer-encoding")
        .collect();
    Some(Answer::Respond {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_body_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let Some(Answer::Respond { status, body, .. }) = parse(raw) else {
            panic!("not parsed")
        };
        assert_eq!((status, body.as_slice()), (200, &b"abcde"[..]));
    }

    #[test]
    fn content_length_bounds_the_body() {
        let raw = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse(raw),
            Some(Answer::Respond {
                status: 204,
                headers: vec![("content-length".into(), "0".into())],
                body: vec![]
            })
        );
    }
}
