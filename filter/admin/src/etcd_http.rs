//! Performs the core's etcd [`Callout`]s over plain HTTP/1.1 (`dynedge_http1`): the etcd v3
//! JSON gateway needs nothing more. Tries each endpoint in turn when one cannot be reached.

use std::time::Duration;

use dynedge_core::{Callout, CalloutFailure, CalloutResult};
use dynedge_http1::Request;

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
        CalloutResult::Failed(CalloutFailure::Connection(last))
    }
}

fn once(ep: &str, c: &Callout) -> Result<CalloutResult, String> {
    let timeout = Duration::from_millis(c.timeout_ms.max(1000));
    let req = Request {
        method: c.method.as_str(),
        path: &c.path,
        host: ep,
        headers: &c.headers,
        body: &c.body,
    };
    let r = dynedge_http1::exchange(ep, timeout, &req).map_err(|e| e.to_string())?;
    Ok(CalloutResult::Response {
        status: r.status,
        headers: r.headers,
        body: r.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_endpoints_are_refused() {
        assert!(Etcd::new("https://x:1").is_err());
        assert!(Etcd::new("").is_err());
    }
}
