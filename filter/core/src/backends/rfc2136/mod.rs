//! RFC 2136 dynamic UPDATE, signed with TSIG (RFC 8945), carried over DNS-over-HTTP (RFC 8484).
//!
//! The filter can only make HTTP calls, so the DNS message travels as the body of a
//! `POST <path>` with `content-type: application/dns-message` to a relay that speaks DNS to the
//! authoritative server: BIND 9.18's own DoH listener, or dnsdist in front of Knot or PowerDNS
//! (docs/rfc2136.md, Relays). hickory-proto builds and parses the messages; RustCrypto `hmac`/`sha2`
//! computes the MAC over hickory's to-be-signed bytes (`message_tbs`), so no C code is needed
//! for wasm32-wasip1.
//!
//! - read: an unsigned query for one RRset (id 0, as RFC 8484 recommends).
//! - write: zone section; prerequisite "no CNAME RRset at the name" (so a CNAME is never
//!   clobbered, the server answers YXRRSET); for each RRset "delete RRset" then "add" each value
//!   with the zone's TTL (no values = only the delete); one TSIG over the whole message.
//! - check: the answer's TSIG is verified with the Original ID it carries (relays such as dnsdist
//!   rewrite the header ID), against our request MAC; only NOERROR with a verified MAC is a
//!   success. Everything else is a [`BackendError`].
//!
//! `key` builds the TSIG key from the configuration, `keyfile` reads BIND key files, `message`
//! builds the query and the UPDATE, `tsig` signs and verifies; this module makes the callouts
//! and judges their answers.

mod key;
mod keyfile;
mod message;
mod tsig;

#[cfg(test)]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod fixtures;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::RData;

#[cfg(any(test, feature = "testing"))]
pub use key::TsigAlg;
pub use key::{key_from_spec, KeyError, KeySpec, TsigKey};
use message::{dns_name, proto, record_type};
pub use message::{query_wire, update_message};
pub use tsig::{read_answer, sign, FUDGE};

use super::{BackendEnv, BackendError, Callout, CalloutResult, Method, RrSet, RrType};
use crate::names::Fqdn;

/// The media type of a DNS message in an HTTP body (RFC 8484).
pub const DNS_MESSAGE: &str = "application/dns-message";

// ---------------------------------------------------------------- configuration

/// A zone's RFC 2136 server, reached through a DoH relay.
#[derive(Debug, Clone)]
pub struct Rfc2136Backend {
    /// The proxy's cluster (Envoy) or upstream (Pingora) of the DoH relay.
    pub cluster: String,
    pub authority: String,
    /// The relay's DoH path, `/dns-query` by default.
    pub path: String,
    pub key: TsigKey,
    pub timeout_ms: u64,
}

// ---------------------------------------------------------------- the backend calls

fn call(b: &Rfc2136Backend, body: Vec<u8>) -> Callout {
    Callout {
        cluster: b.cluster.clone(),
        method: Method::Post,
        authority: b.authority.clone(),
        path: b.path.clone(),
        headers: vec![
            ("content-type".into(), DNS_MESSAGE.into()),
            ("accept".into(), DNS_MESSAGE.into()),
        ],
        body,
        timeout_ms: b.timeout_ms,
    }
}

/// A DNS query for the RRset. A name that cannot be encoded (impossible for a parsed [`Fqdn`])
/// gives an empty body, which every relay refuses, so the read fails rather than lies.
pub fn read(b: &Rfc2136Backend, name: &Fqdn, rtype: RrType) -> Callout {
    call(b, query_wire(name, rtype).unwrap_or_default())
}

/// The values of the RRset in a query answer (NXDOMAIN = none; TXT strings joined).
pub fn parse_read(
    name: &Fqdn,
    rtype: RrType,
    result: &CalloutResult,
) -> Result<Vec<String>, BackendError> {
    let body = dns_body(result)?;
    let msg = Message::from_vec(body).map_err(proto)?;
    let want = dns_name(name)?;
    let asked = msg
        .queries
        .first()
        .is_some_and(|q| q.name() == &want && q.query_type() == record_type(rtype));
    if msg.metadata.message_type != MessageType::Response || !asked {
        return Err(BackendError::Invalid(
            "the relay's answer is not for the query we sent".into(),
        ));
    }
    match msg.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        other => {
            return Err(BackendError::Invalid(format!(
                "DNS query for {name} {} answered {}",
                rtype.as_str(),
                rcode_name(other)
            )))
        }
    }
    // Only the name itself: a CNAME chain's targets belong to other names.
    Ok(msg
        .answers
        .iter()
        .filter(|r| r.name == want)
        .filter_map(|r| match (&r.data, rtype) {
            (RData::A(a), RrType::A) => Some(a.0.to_string()),
            (RData::AAAA(a), RrType::Aaaa) => Some(a.0.to_string()),
            (RData::TXT(t), RrType::Txt) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// What [`check_write`] needs from [`write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub request_mac: Vec<u8>,
    pub id: u16,
    pub signed_at: u64,
}

/// The signed UPDATE for `sets` and what is needed to judge its answer.
pub fn write(
    b: &Rfc2136Backend,
    zone: &Fqdn,
    sets: &[RrSet],
    env: BackendEnv,
) -> Result<(Callout, Pending), BackendError> {
    let id = (env.random & 0xffff) as u16;
    let mut msg = update_message(id, zone, sets)?;
    let request_mac = sign(&mut msg, &b.key, env.now_s)?;
    let wire = msg.to_vec().map_err(proto)?;
    Ok((
        call(b, wire),
        Pending {
            request_mac,
            id,
            signed_at: env.now_s,
        },
    ))
}

/// Success only for NOERROR with a TSIG that verifies against our key and request MAC.
pub fn check_write(
    b: &Rfc2136Backend,
    p: &Pending,
    result: &CalloutResult,
) -> Result<(), BackendError> {
    let body = dns_body(result)?;
    let answer = read_answer(body, &p.request_mac, &b.key)?;
    let rcode = rcode_name(answer.rcode);
    let Some(tsig) = answer.tsig else {
        return Err(BackendError::Invalid(format!(
            "DNS UPDATE answered {rcode} without a TSIG signature"
        )));
    };
    if let Some(e) = tsig.error {
        // BADSIG/BADKEY answers are unsigned by design; BADTIME ones are signed.
        return Err(BackendError::Invalid(format!(
            "DNS UPDATE answered {rcode}, TSIG error {} ({})",
            tsig_error_name(e),
            match e {
                TsigError::BadSig => "the server does not have this secret",
                TsigError::BadKey => "the server does not know this key name or algorithm",
                TsigError::BadTime => "the clocks differ by more than the fudge",
                _ => "refused",
            }
        )));
    }
    if !tsig.verified {
        return Err(BackendError::Invalid(format!(
            "DNS UPDATE answered {rcode} but the answer's TSIG does not verify"
        )));
    }
    let window = u64::from(FUDGE)
        .saturating_add(b.timeout_ms / 1000)
        .saturating_add(1);
    if tsig.time.abs_diff(p.signed_at) > window {
        return Err(BackendError::Invalid(
            "the answer's TSIG time is outside the fudge of our request".into(),
        ));
    }
    match answer.rcode {
        ResponseCode::NoError => Ok(()),
        ResponseCode::YXRRSet => Err(BackendError::Refused(
            "DNS UPDATE refused by its prerequisite (YXRRSET): a CNAME exists at the name, left untouched"
                .into(),
        )),
        // The other prerequisite failures also point at one name, never at the whole zone.
        ResponseCode::NXRRSet | ResponseCode::YXDomain | ResponseCode::NXDomain => Err(
            BackendError::Refused(format!("DNS UPDATE answered {}", rcode_name(answer.rcode))),
        ),
        other => Err(BackendError::Invalid(format!(
            "DNS UPDATE answered {}",
            rcode_name(other)
        ))),
    }
}

/// The body of a `200 application/dns-message` answer; anything else is an error.
fn dns_body(result: &CalloutResult) -> Result<&[u8], BackendError> {
    match result {
        CalloutResult::Failed(why) => Err(BackendError::Unreachable {
            backend: "DoH relay",
            why: why.clone(),
        }),
        CalloutResult::Response {
            status,
            headers,
            body,
        } => {
            if *status != 200 {
                let detail: String = String::from_utf8_lossy(body).chars().take(200).collect();
                return Err(BackendError::Status {
                    backend: "DoH relay",
                    status: *status,
                    detail,
                });
            }
            let ctype = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let media = ctype.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case(DNS_MESSAGE) {
                return Err(BackendError::Invalid(format!(
                    "DoH relay answered 200 with content-type {ctype:?}, not {DNS_MESSAGE}"
                )));
            }
            Ok(body)
        }
    }
}

/// The mnemonic of an rcode (`NOTAUTH`, `YXRRSET`, ...), as dig prints it.
pub fn rcode_name(r: ResponseCode) -> String {
    match r {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn tsig_error_name(e: TsigError) -> String {
    match e {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(n) => format!("TSIG error {n}"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::{Record, RecordType};

    use super::fixtures::*;
    use super::message::parse_name;
    use super::tsig::find_tsig;
    use super::*;

    // ------------------------------------------------------------ reads

    fn query_answer(
        q_name: &str,
        rtype: RrType,
        rcode: ResponseCode,
        records: Vec<Record>,
    ) -> CalloutResult {
        let q = query_wire(&name(q_name), rtype).unwrap();
        let req = Message::from_vec(&q).unwrap();
        let mut resp = Message::new(0, MessageType::Response, OpCode::Query);
        resp.metadata.response_code = rcode;
        resp.add_query(req.queries[0].clone());
        for r in records {
            resp.add_answer(r);
        }
        ok(resp.to_vec().unwrap())
    }

    fn rr(n: &str, data: RData) -> Record {
        Record::from_rdata(parse_name(n).unwrap(), 60, data)
    }

    #[test]
    fn read_is_an_unsigned_query_with_id_zero_posted_to_the_relay() {
        let c = read(
            &backend(key256()),
            &name("home.dyn.example.test"),
            RrType::Aaaa,
        );
        assert_eq!((c.method, c.path.as_str()), (Method::Post, "/dns-query"));
        let m = Message::from_vec(&c.body).unwrap();
        assert_eq!((m.metadata.id, m.metadata.op_code), (0, OpCode::Query));
        assert_eq!(m.queries[0].query_type(), RecordType::AAAA);
        assert!(find_tsig(&m).is_none());
    }

    #[test]
    fn parse_read_returns_the_values_at_the_name_only() {
        let n = name("home.dyn.example.test");
        let a = query_answer(
            "home.dyn.example.test",
            RrType::A,
            ResponseCode::NoError,
            vec![
                rr(
                    "home.dyn.example.test",
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ),
                rr(
                    "home.dyn.example.test",
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 2))),
                ),
            ],
        );
        assert_eq!(
            parse_read(&n, RrType::A, &a).unwrap(),
            vec!["192.0.2.1", "192.0.2.2"]
        );
        // A CNAME at the name: the server follows it; the target's records are not ours.
        let cname = query_answer(
            "home.dyn.example.test",
            RrType::A,
            ResponseCode::NoError,
            vec![
                rr(
                    "home.dyn.example.test",
                    RData::CNAME(hickory_proto::rr::rdata::CNAME(
                        parse_name("t.dyn.example.test").unwrap(),
                    )),
                ),
                rr(
                    "t.dyn.example.test",
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 9))),
                ),
            ],
        );
        assert!(parse_read(&n, RrType::A, &cname).unwrap().is_empty());
        let nx = query_answer(
            "home.dyn.example.test",
            RrType::A,
            ResponseCode::NXDomain,
            vec![],
        );
        assert!(parse_read(&n, RrType::A, &nx).unwrap().is_empty());
        let txt = query_answer(
            "home.dyn.example.test",
            RrType::Txt,
            ResponseCode::NoError,
            vec![rr(
                "home.dyn.example.test",
                RData::TXT(TXT::new(vec!["ab".into(), "cd".into()])),
            )],
        );
        assert_eq!(parse_read(&n, RrType::Txt, &txt).unwrap(), vec!["abcd"]);
    }

    #[test]
    fn parse_read_refuses_failures_and_answers_to_other_questions() {
        let n = name("home.dyn.example.test");
        let fail = query_answer(
            "home.dyn.example.test",
            RrType::A,
            ResponseCode::ServFail,
            vec![],
        );
        assert!(parse_read(&n, RrType::A, &fail)
            .unwrap_err()
            .to_string()
            .contains("SERVFAIL"));
        let other = query_answer(
            "other.dyn.example.test",
            RrType::A,
            ResponseCode::NoError,
            vec![],
        );
        assert!(parse_read(&n, RrType::A, &other).is_err());
        let other_type = query_answer(
            "home.dyn.example.test",
            RrType::Aaaa,
            ResponseCode::NoError,
            vec![],
        );
        assert!(parse_read(&n, RrType::A, &other_type).is_err());
    }

    // ------------------------------------------------------------ configuration and exchange

    fn rfc2136_config(
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<crate::Config, crate::ConfigError> {
        let mut v: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../../../../examples/dynedge-rfc2136.json"
        ))
        .unwrap();
        edit(&mut v["backends"]["bind"]);
        crate::Config::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn the_example_configuration_compiles_with_an_inline_key_or_the_same_key_file() {
        let inline = rfc2136_config(|_| {}).unwrap();
        let crate::config::Backend::Rfc2136(a) = &inline.backends["bind"] else {
            panic!("not rfc2136")
        };
        let from_file = rfc2136_config(|b| {
            let o = b.as_object_mut().unwrap();
            let secret = o.remove("secret").unwrap();
            o.remove("algorithm");
            o.remove("key_name");
            o.insert(
                "key_file".into(),
                format!("key \"dynedge-demo-key\" {{\n\talgorithm hmac-sha256;\n\tsecret {secret};\n}};\n").into(),
            );
        })
        .unwrap();
        let crate::config::Backend::Rfc2136(b) = &from_file.backends["bind"] else {
            panic!("not rfc2136")
        };
        assert_eq!(a.key, b.key);
        assert_eq!((a.path.as_str(), a.timeout_ms), ("/dns-query", 5000));
        assert!(!format!("{inline:?}").contains("2EoBmZZI"), "secret leaked");
    }

    #[test]
    fn a_bad_key_is_refused_at_configure_with_its_json_path() {
        for (field, value, path) in [
            (
                "secret",
                serde_json::json!("not base64!"),
                "backends.bind.secret",
            ),
            (
                "algorithm",
                serde_json::json!("hmac-md5"),
                "backends.bind.algorithm",
            ),
            (
                "key_name",
                serde_json::json!("bad name!"),
                "backends.bind.key_name",
            ),
            (
                "key_file",
                serde_json::json!("key k { algorithm hmac-sha256; };"),
                "backends.bind.key_file",
            ),
            ("path", serde_json::json!("dns-query"), "backends.bind.path"),
            (
                "timeout_ms",
                serde_json::json!(0),
                "backends.bind.timeout_ms",
            ),
        ] {
            let e = rfc2136_config(|b| b[field] = value).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
        let e = rfc2136_config(|b| b["secret"] = "%%%".into()).unwrap_err();
        assert!(e.message.contains("base64"), "{e}");
        assert!(!e.to_string().contains("%%%"), "secret echoed: {e}");
    }

    fn nic_update(query: &str) -> crate::Request {
        crate::Request {
            method: "GET".into(),
            path: format!("/nic/update?{query}"),
            headers: vec![
                (
                    "authorization".into(),
                    "Bearer dynedge_test_demodemodemodemodemodemodemodemo".into(),
                ),
                ("user-agent".into(), "rfc2136-test/1.0".into()),
            ],
            body: vec![],
            peer: None,
        }
    }

    fn calls(step: crate::Step) -> Vec<(crate::CalloutId, Callout)> {
        match step {
            crate::Step::Call(c) => c,
            other => panic!("expected calls, got {other:?}"),
        }
    }

    fn reply_text(step: crate::Step) -> String {
        match step {
            crate::Step::Done(o) => o.reply.unwrap().body_text().trim_end().to_string(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Drives a DynDNS2 update through the exchange; the server's answer to the UPDATE is made
    /// by `answer` from the request wire.
    fn update_with(
        current: Vec<Record>,
        answer: impl Fn(&[u8], &TsigKey) -> Vec<u8>,
    ) -> (String, usize) {
        let cfg = rfc2136_config(|_| {}).unwrap();
        let crate::config::Backend::Rfc2136(b) = &cfg.backends["bind"] else {
            panic!("not rfc2136")
        };
        let kv = crate::MemoryKv::default();
        let env = crate::Env {
            now_ms: NOW * 1000,
            random: 42,
            kv: &kv,
        };
        let req = nic_update("hostname=home.dyn.example.test&myip=192.0.2.7");
        let (mut ex, step) = crate::Exchange::start(&cfg, req, true, &env);
        let reads = calls(step);
        assert_eq!(reads.len(), 1);
        let (id, read_call) = &reads[0];
        assert_eq!(read_call.cluster, "bind_doh");
        let q = Message::from_vec(&read_call.body).unwrap();
        let mut resp = Message::new(0, MessageType::Response, OpCode::Query);
        resp.add_query(q.queries[0].clone());
        resp.metadata.response_code = if current.is_empty() {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        for r in current {
            resp.add_answer(r);
        }
        let step = ex.on_callout(*id, ok(resp.to_vec().unwrap()), &env);
        let crate::Step::Commit(writes) = step else {
            return (reply_text(step), 0);
        };
        // Through the group commit, as the adapters send it: one UPDATE for the one host.
        let mut group = crate::GroupCommit::new();
        let commits = group.submit(&cfg, (), writes, env.now_ms, env.random);
        let (batch, write_call) = &commits.send[0];
        let sent = commits.send.len();
        let answered = group.on_result(
            &cfg,
            *batch,
            ok(answer(&write_call.body, &b.key)),
            env.now_ms,
            1,
        );
        let (_, id, a) = answered.answers.into_iter().next().unwrap();
        let step = ex.on_write(id, a, &env);
        (reply_text(step), sent)
    }

    #[test]
    fn a_dyndns2_update_reads_then_sends_one_signed_update_and_answers_good() {
        let (text, writes) = update_with(vec![], |wire, key| {
            let m = Message::from_vec(wire).unwrap();
            assert_eq!(m.metadata.op_code, OpCode::Update);
            assert_eq!(m.authorities.len(), 2, "delete A + add A");
            assert_eq!(m.authorities[1].ttl, 60);
            server_answer(wire, ResponseCode::NoError, None, true, key, NOW)
        });
        assert_eq!((text.as_str(), writes), ("good 192.0.2.7", 1));
    }

    #[test]
    fn a_dyndns2_update_whose_address_is_already_there_is_nochg_without_an_update() {
        let current = vec![rr(
            "home.dyn.example.test",
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        )];
        let (text, writes) = update_with(current, |_, _| panic!("no UPDATE expected"));
        assert_eq!((text.as_str(), writes), ("nochg 192.0.2.7", 0));
    }

    #[test]
    fn every_failed_update_answers_dnserr_never_good() {
        let other = TsigKey::new("dynedge-demo-key", TsigAlg::HmacSha256, SECRET256).unwrap();
        // (rcode, TSIG error, signed, signed with another key)
        let cases = [
            (ResponseCode::NotAuth, Some(TsigError::BadSig), false, false),
            (ResponseCode::NotAuth, Some(TsigError::BadKey), false, false),
            (ResponseCode::NotAuth, Some(TsigError::BadTime), true, false),
            (ResponseCode::Refused, None, true, false),
            (ResponseCode::ServFail, None, true, false),
            (ResponseCode::YXRRSet, None, true, false),
            (ResponseCode::NoError, None, true, true),
        ];
        for (i, (rcode, error, signed, by_other)) in cases.into_iter().enumerate() {
            let (text, _) = update_with(vec![], |w, k| {
                let key = if by_other { &other } else { k };
                server_answer(w, rcode, error, signed, key, NOW)
            });
            assert_eq!(text, "dnserr", "case {i}");
        }
    }

    #[test]
    fn a_failed_prerequisite_in_a_batch_fails_only_its_own_name() {
        let cfg = rfc2136_config(|_| {}).unwrap();
        let crate::config::Backend::Rfc2136(b) = &cfg.backends["bind"] else {
            panic!("not rfc2136")
        };
        let zone = Fqdn::parse("dyn.example.test").unwrap();
        let write = |label: &str| crate::ZoneWrite {
            backend: cfg.backends["bind"].clone(),
            zone: zone.clone(),
            sets: vec![RrSet {
                name: Fqdn::parse(&format!("{label}.dyn.example.test")).unwrap(),
                rtype: RrType::A,
                ttl: 60,
                values: vec!["192.0.2.9".into()],
            }],
        };
        let mut group = crate::GroupCommit::new();
        let mut held = std::collections::VecDeque::new();
        let mut answers = std::collections::BTreeMap::new();
        // One name in flight, then six more waiting: they go out as one UPDATE of six names.
        let labels = ["first", "a", "b", "cname", "c", "d", "e"];
        for (i, label) in labels.iter().enumerate() {
            let c = group.submit(&cfg, i, vec![(0, write(label))], NOW * 1000, 5);
            held.extend(c.send);
        }
        let mut updates = Vec::new();
        while let Some((batch, call)) = held.pop_front() {
            let m = Message::from_vec(&call.body).unwrap();
            // The server: a CNAME sits at cname.dyn.example.test, so the "no CNAME"
            // prerequisite of any UPDATE naming it fails (YXRRSET) and nothing is applied.
            let names: Vec<String> = m.answers.iter().map(|r| r.name.to_string()).collect();
            updates.push(m.authorities.len() / 2);
            let rcode = if names.iter().any(|n| n.starts_with("cname.")) {
                ResponseCode::YXRRSet
            } else {
                ResponseCode::NoError
            };
            let answer = ok(server_answer(&call.body, rcode, None, true, &b.key, NOW));
            let c = group.on_result(&cfg, batch, answer, NOW * 1000, 6);
            held.extend(c.send);
            for (owner, _, a) in c.answers {
                answers.insert(labels[owner], a.is_confirmed());
            }
        }
        let refused: Vec<&str> = answers
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(l, _)| *l)
            .collect();
        assert_eq!(refused, vec!["cname"], "{answers:?}");
        assert_eq!(answers.len(), labels.len());
        // first alone; the six together (refused); a,b,cname (refused) and c,d,e; a and
        // b,cname (refused); b and cname alone.
        assert_eq!(updates, vec![1, 6, 3, 3, 1, 2, 1, 1], "names per UPDATE");
    }
}
