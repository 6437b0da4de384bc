//! A minimal HTTP/1.1 keep-alive client for the tests (Envoy accepts HTTP/1.1 downstream and
//! speaks h2c to the relays), so many requests share one connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dynedge_core::{Callout, CalloutResult};

/// One HTTP/1.1 keep-alive connection (what the proxy does for the filter, minus h2).
pub struct Conn(TcpStream);

impl Conn {
    pub fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn(s)
    }

    pub fn send(&mut self, c: &Callout, path: &str) -> CalloutResult {
        let mut head = format!("{} {path} HTTP/1.1\r\nhost: {}\r\n", c.method, c.authority);
        for (k, v) in &c.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", c.body.len()));
        self.0.write_all(head.as_bytes()).unwrap();
        self.0.write_all(&c.body).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.0.read(&mut chunk).unwrap();
            assert!(n > 0, "Envoy closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = resp.parse(&buf).unwrap() {
                let status = resp.code.unwrap();
                let hs: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let clen: usize = hs
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                while buf.len() < len + clen {
                    let n = self.0.read(&mut chunk).unwrap();
                    assert!(n > 0, "Envoy closed the connection mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                return CalloutResult::Response {
                    status,
                    headers: hs,
                    body: buf[len..len + clen].to_vec(),
                };
            }
        }
    }

    /// A GET with extra headers; (status, body).
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let c = Callout {
            cluster: String::new(),
            method: "GET",
            authority: "localhost".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: vec![],
            timeout_ms: 0,
        };
        match self.send(&c, path) {
            CalloutResult::Response { status, body, .. } => {
                (status, String::from_utf8_lossy(&body).into_owned())
            }
            CalloutResult::Failed(why) => panic!("{why}"),
        }
    }
}
