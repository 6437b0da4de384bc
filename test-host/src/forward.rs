//! Forwards a callout to a real HTTP/1.1 server (`dynedge_http1`), so the same suite can run
//! against a real PowerDNS. Any I/O or parse failure becomes `Answer::Fail`, which the filter
//! sees as Envoy's failed call (`num_headers = 0`).

use std::time::Duration;

use dynedge_http1::{Request, Response};

use crate::model::{Answer, Call};

pub(crate) fn forward(addr: &str, call: &Call) -> Answer {
    let timeout = Duration::from_millis(u64::from(call.timeout_ms.max(1)));
    let req = Request {
        method: call.method(),
        path: call.path(),
        host: call.header(":authority").unwrap_or(addr),
        headers: &call.headers,
        body: &call.body,
    };
    match dynedge_http1::exchange(addr, timeout, &req) {
        Ok(r) => answer(r),
        Err(_) => Answer::Fail,
    }
}

/// The filter sees the body without its chunk framing, so not the framing header either.
fn answer(r: Response) -> Answer {
    Answer::Respond {
        status: r.status,
        headers: r
            .headers
            .into_iter()
            .filter(|(n, _)| n != "transfer-encoding")
            .collect(),
        body: r.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dechunked_answer_carries_no_transfer_encoding() {
        let raw =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let r = dynedge_http1::read_response(&mut &raw[..]).unwrap();
        assert_eq!(
            answer(r),
            Answer::Respond {
                status: 200,
                headers: vec![("x-a".into(), "1".into())],
                body: b"abc".to_vec()
            }
        );
    }
}
