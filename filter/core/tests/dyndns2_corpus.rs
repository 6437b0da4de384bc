//! The DynDNS2 corpus (`tests/corpus/dyndns2.json`) played natively: the core's exchange run to
//! completion by `testing::Driver`, against `FakePowerDns` (a fake of the PowerDNS API, named
//! so), on a virtual clock.

#[path = "corpus/mod.rs"]
mod corpus;

use corpus::{Backend, Http, Runner, Seen};
use dynedge_core::testing::Driver;
use dynedge_core::{Config, Request};

/// The peer address `testing::get` gives every request.
const CLIENT: &str = "192.0.2.200";

struct Native(Driver);

impl Runner for Native {
    const NAME: &'static str = "native";

    fn client(&self) -> String {
        CLIENT.to_owned()
    }

    fn send(&mut self, req: &Http) -> Seen {
        let request = Request {
            peer: CLIENT.parse().ok(),
            ..req.clone()
        };
        match self.0.send(request) {
            None => Seen::Passed,
            Some(r) => Seen::Reply {
                status: r.status,
                body: r.body_text().to_owned(),
                headers: r.headers,
            },
        }
    }

    fn advance_s(&mut self, seconds: u64) {
        self.0.advance_ms(seconds.saturating_mul(1000));
    }

    fn backend(&mut self, backend: Backend) {
        self.0.pdns.fault = backend.fault();
    }

    fn seed(&mut self, name: &str, rtype: &str, values: &[String]) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        self.0.pdns.set(name, rtype, &values);
    }

    fn records(&mut self, name: &str, rtype: &str) -> Vec<String> {
        self.0.pdns.records(name, rtype)
    }

    fn calls(&self) -> Option<Vec<String>> {
        Some(
            self.0
                .calls
                .iter()
                .map(|c| c.method.as_str().to_owned())
                .collect(),
        )
    }
}

#[test]
fn the_dyndns2_corpus_plays_natively() {
    corpus::play_all(2, |s| {
        let cfg = s.config(CLIENT).to_string();
        Native(Driver::new(Config::from_json(cfg.as_bytes()).unwrap()))
    });
    corpus::assert_none_skipped("native");
}
