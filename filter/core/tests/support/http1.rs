//! An HTTP/1.1 keep-alive connection for the tests (Envoy accepts HTTP/1.1 downstream and
//! speaks h2c to the relays), so many requests share one connection.

use std::net::TcpStream;
use std::time::Duration;

use dynedge_core::{Callout, CalloutResult};
use dynedge_http1::{read_response, write_request, Request};

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
        let req = Request {
            method: c.method.as_str(),
            path,
            host: &c.authority,
            headers: &c.headers,
            body: &c.body,
        };
        write_request(&mut self.0, &req, false).unwrap();
        let r = read_response(&mut self.0).unwrap();
        CalloutResult::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    /// A GET with extra headers; (status, body).
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let c = Callout {
            cluster: String::new(),
            method: dynedge_core::Method::Get,
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
