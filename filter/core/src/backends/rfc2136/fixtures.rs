//! Keys, messages and a server-side TSIG signer shared by the RFC 2136 unit tests.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigError, TSIG};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::tsig::find_tsig;
use super::*;

pub(super) const SECRET256: &str = "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=";
pub(super) const SECRET512: &str =
    "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg==";
pub(super) const NOW: u64 = 1_700_000_000;

/// Made by `testdata/rfc2136/golden.py` with dnspython 2.3, an independent implementation.
pub(super) fn golden(label: &str) -> Vec<u8> {
    let text = include_str!("../../../testdata/rfc2136/golden.txt");
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(' '))
        .unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

pub(super) fn key256() -> TsigKey {
    TsigKey::new("ddns-key", TsigAlg::HmacSha256, SECRET256).unwrap()
}

pub(super) fn backend(key: TsigKey) -> Rfc2136Backend {
    Rfc2136Backend {
        cluster: "bind_doh".into(),
        authority: "127.0.0.1:21080".into(),
        path: "/dns-query".into(),
        key,
        timeout_ms: 5000,
    }
}

pub(super) fn name(s: &str) -> Fqdn {
    Fqdn::parse_service(s).unwrap()
}

pub(super) fn set(n: &str, rtype: RrType, values: &[&str]) -> RrSet {
    RrSet {
        name: name(n),
        rtype,
        ttl: 60,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// The change golden.py makes with dnspython.
pub(super) fn golden_sets() -> Vec<RrSet> {
    vec![
        set(
            "home.dyn.example.test",
            RrType::A,
            &["192.0.2.1", "192.0.2.2"],
        ),
        set("home.dyn.example.test", RrType::Aaaa, &[]),
        set(
            "_acme-challenge.home.dyn.example.test",
            RrType::Txt,
            &["token-value"],
        ),
    ]
}

pub(super) fn signed_update(key: &TsigKey) -> (Vec<u8>, Vec<u8>) {
    let zone = name("dyn.example.test");
    let mut msg = update_message(0x1234, &zone, &golden_sets()).unwrap();
    let mac = sign(&mut msg, key, NOW).unwrap();
    (msg.to_vec().unwrap(), mac)
}

pub(super) fn ok(body: Vec<u8>) -> CalloutResult {
    CalloutResult::Response {
        status: 200,
        headers: vec![("content-type".into(), DNS_MESSAGE.into())],
        body,
    }
}

/// The server side of TSIG, for crafting answers: signs `resp` over the request MAC.
/// `golden_answer_helper_matches_dnspython` ties it to dnspython's server signer.
pub(super) fn server_answer(
    request: &[u8],
    rcode: ResponseCode,
    error: Option<TsigError>,
    signed: bool,
    key: &TsigKey,
    time: u64,
) -> Vec<u8> {
    let req = Message::from_vec(request).unwrap();
    let (_, req_tsig) = find_tsig(&req).unwrap();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Update);
    resp.metadata.recursion_desired = false;
    resp.metadata.response_code = rcode;
    resp.add_query(req.queries[0].clone());
    let mut tsig = TSIG::new(
        key.algorithm.hickory(),
        time,
        FUDGE,
        Vec::new(),
        req.metadata.id,
        error,
        Vec::new(),
    );
    if signed {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        enc.emit_u16(req_tsig.mac.len() as u16).unwrap();
        enc.emit_vec(&req_tsig.mac).unwrap();
        resp.emit(&mut enc).unwrap();
        tsig.emit_tsig_for_mac(&mut enc, &key.name).unwrap();
        tsig = tsig.set_mac(key.algorithm.mac(&key.secret, &buf).unwrap());
    }
    resp.signature = Some(Box::new(make_tsig_record(key.name.clone(), tsig)));
    resp.to_vec().unwrap()
}

pub(super) fn pending(mac: Vec<u8>) -> Pending {
    Pending {
        request_mac: mac,
        id: 0x1234,
        signed_at: NOW,
    }
}
