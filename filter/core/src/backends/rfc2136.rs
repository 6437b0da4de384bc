//! RFC 2136 dynamic UPDATE, signed with TSIG (RFC 8945), carried over DNS-over-HTTP (RFC 8484).
//!
//! The filter can only make HTTP calls, so the DNS message travels as the body of a
//! `POST <path>` with `content-type: application/dns-message` to a relay that speaks DNS to the
//! authoritative server: BIND 9.18's own DoH listener, or dnsdist in front of Knot or PowerDNS
//! (research/doh.md). hickory-proto builds and parses the messages; RustCrypto `hmac`/`sha2`
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

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{
    make_tsig_record, message_tbs, TsigAlgorithm, TsigError, TSIG,
};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

use super::{BackendEnv, BackendError, Callout, CalloutResult, RrSet, RrType};
use crate::names::Fqdn;

/// The media type of a DNS message in an HTTP body (RFC 8484).
pub const DNS_MESSAGE: &str = "application/dns-message";
/// Allowed clock difference in seconds, both ways (RFC 8945 recommends 300).
pub const FUDGE: u16 = 300;
/// Longest character-string in a TXT record.
const TXT_CHUNK: usize = 255;

// ---------------------------------------------------------------- keys

/// The HMAC algorithms we sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlg {
    HmacSha256,
    HmacSha512,
}

impl TsigAlg {
    /// `hmac-sha256` or `hmac-sha512`, any case (as BIND and Knot write them).
    pub fn parse(s: &str) -> Option<TsigAlg> {
        match s.to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(TsigAlg::HmacSha256),
            "hmac-sha512" => Some(TsigAlg::HmacSha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlg::HmacSha256 => "hmac-sha256",
            TsigAlg::HmacSha512 => "hmac-sha512",
        }
    }

    fn hickory(self) -> TsigAlgorithm {
        match self {
            TsigAlg::HmacSha256 => TsigAlgorithm::HmacSha256,
            TsigAlg::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, BackendError> {
        let bad = |_| BackendError("TSIG key unusable".into());
        Ok(match self {
            TsigAlg::HmacSha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).map_err(bad)?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            TsigAlg::HmacSha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).map_err(bad)?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        })
    }

    /// Constant-time comparison of `tag` with the MAC of `data`.
    fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        match self {
            TsigAlg::HmacSha256 => Hmac::<Sha256>::new_from_slice(key).is_ok_and(|mut m| {
                m.update(data);
                m.verify_slice(tag).is_ok()
            }),
            TsigAlg::HmacSha512 => Hmac::<Sha512>::new_from_slice(key).is_ok_and(|mut m| {
                m.update(data);
                m.verify_slice(tag).is_ok()
            }),
        }
    }
}

/// A TSIG key. The secret is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Lower case, with the trailing dot (`ddns-key.`).
    pub name: Name,
    pub algorithm: TsigAlg,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_ascii())
            .field("algorithm", &self.algorithm)
            .field("secret", &"***")
            .finish()
    }
}

impl TsigKey {
    /// `secret` is base64, as `tsig-keygen` prints it.
    pub fn new(name: &str, algorithm: TsigAlg, secret: &str) -> Result<TsigKey, KeyError> {
        let name = parse_name(name.trim_end_matches('.'))
            .ok_or(KeyError::Name("is not a DNS name".into()))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .map_err(|_| KeyError::Secret("is not valid base64".into()))?;
        if secret.is_empty() {
            return Err(KeyError::Secret("must not be empty".into()));
        }
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }
}

/// Which part of a key definition is wrong (the configuration turns it into a JSON path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Name(String),
    Algorithm(String),
    Secret(String),
    KeyFile(String),
}

/// One `key "name" { algorithm ...; secret "..."; };` block of a BIND key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileEntry {
    pub name: String,
    pub algorithm: String,
    pub secret: String,
}

/// Parses the key statements of a BIND `named.conf` fragment, as written by `tsig-keygen` and
/// `ddns-confgen` (`//`, `#` and `/* */` comments allowed). Anything else is refused.
pub fn parse_key_file(text: &str) -> Result<Vec<KeyFileEntry>, String> {
    let tokens = tokenize(text)?;
    let mut it = tokens.into_iter().peekable();
    let mut keys = Vec::new();
    while let Some(tok) = it.next() {
        if tok != Tok::Word("key".into()) {
            return Err(format!("expected `key`, found {tok}"));
        }
        let name = match it.next() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => w,
            other => return Err(format!("expected a key name, found {}", show(&other))),
        };
        expect(&mut it, Tok::Open, &name)?;
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some(Tok::Close) => break,
                Some(Tok::Word(field)) => {
                    let value = match it.next() {
                        Some(Tok::Word(v)) | Some(Tok::Quoted(v)) => v,
                        other => {
                            return Err(format!(
                                "key \"{name}\": expected a value for `{field}`, found {}",
                                show(&other)
                            ))
                        }
                    };
                    expect(&mut it, Tok::Semi, &name)?;
                    let slot = match field.as_str() {
                        "algorithm" => &mut algorithm,
                        "secret" => &mut secret,
                        _ => return Err(format!("key \"{name}\": unknown statement `{field}`")),
                    };
                    if slot.replace(value).is_some() {
                        return Err(format!("key \"{name}\": `{field}` given twice"));
                    }
                }
                other => {
                    return Err(format!(
                        "key \"{name}\": expected `algorithm`, `secret` or `}}`, found {}",
                        show(&other)
                    ))
                }
            }
        }
        expect(&mut it, Tok::Semi, &name)?;
        let (Some(algorithm), Some(secret)) = (algorithm, secret) else {
            return Err(format!(
                "key \"{name}\": needs both `algorithm` and `secret`"
            ));
        };
        keys.push(KeyFileEntry {
            name,
            algorithm,
            secret,
        });
    }
    if keys.is_empty() {
        return Err("no `key` statement found".into());
    }
    Ok(keys)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semi,
}

impl fmt::Display for Tok {
    // Never echoes a quoted string: it may be the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{}`", w.chars().take(40).collect::<String>()),
            Tok::Quoted(_) => f.write_str("a quoted string"),
            Tok::Open => f.write_str("`{`"),
            Tok::Close => f.write_str("`}`"),
            Tok::Semi => f.write_str("`;`"),
        }
    }
}

fn show(t: &Option<Tok>) -> String {
    t.as_ref()
        .map_or_else(|| "the end".to_string(), Tok::to_string)
}

fn expect(it: &mut impl Iterator<Item = Tok>, want: Tok, key: &str) -> Result<(), String> {
    match it.next() {
        Some(t) if t == want => Ok(()),
        other => Err(format!(
            "key \"{key}\": expected {want}, found {}",
            show(&other)
        )),
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            ';' => out.push(Tok::Semi),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

fn skip_line(chars: &mut impl Iterator<Item = char>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

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

/// The key fields of the configuration, as written.
pub struct KeySpec<'a> {
    pub key_name: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub secret: Option<&'a str>,
    /// The text of a BIND key file (the plugin cannot read files).
    pub key_file: Option<&'a str>,
}

/// Builds the key from either `key_name` + `algorithm` + `secret`, or `key_file` (whose key
/// named `key_name` is used, or its only key).
pub fn key_from_spec(spec: &KeySpec) -> Result<TsigKey, KeyError> {
    if let Some(text) = spec.key_file {
        if spec.algorithm.is_some() || spec.secret.is_some() {
            return Err(KeyError::KeyFile(
                "give either key_file or algorithm + secret, not both".into(),
            ));
        }
        return key_from_file(text, spec.key_name);
    }
    let name = spec
        .key_name
        .ok_or(KeyError::Name("is required (or give key_file)".into()))?;
    let algorithm = spec.algorithm.ok_or(KeyError::Algorithm(
        "is required: hmac-sha256 or hmac-sha512".into(),
    ))?;
    let alg = TsigAlg::parse(algorithm).ok_or(KeyError::Algorithm(
        "must be hmac-sha256 or hmac-sha512".into(),
    ))?;
    let secret = spec
        .secret
        .ok_or(KeyError::Secret("is required (or give key_file)".into()))?;
    TsigKey::new(name, alg, secret)
}

/// The key named `key_name` in a BIND key file, or its only key. Every error is about the
/// file (except a missing `key_name`), and none quotes the secret.
fn key_from_file(text: &str, key_name: Option<&str>) -> Result<TsigKey, KeyError> {
    let mut keys = parse_key_file(text).map_err(KeyError::KeyFile)?;
    let same = |a: &str, b: &str| {
        a.trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.'))
    };
    let entry = match key_name {
        Some(want) => {
            let i = keys
                .iter()
                .position(|k| same(&k.name, want))
                .ok_or_else(|| KeyError::Name(format!("no key \"{want}\" in key_file")))?;
            keys.swap_remove(i)
        }
        None if keys.len() == 1 => keys.swap_remove(0),
        None => {
            return Err(KeyError::KeyFile(format!(
                "holds {} keys: say which one with key_name",
                keys.len()
            )))
        }
    };
    let in_file = |m: String| KeyError::KeyFile(format!("key \"{}\": {m}", entry.name));
    let alg = TsigAlg::parse(&entry.algorithm)
        .ok_or_else(|| in_file("algorithm must be hmac-sha256 or hmac-sha512".into()))?;
    TsigKey::new(&entry.name, alg, &entry.secret).map_err(|e| match e {
        KeyError::Secret(m) => in_file(format!("secret {m}")),
        KeyError::Name(m) => in_file(format!("name {m}")),
        other => other,
    })
}

// ---------------------------------------------------------------- messages

fn parse_name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

fn dns_name(f: &Fqdn) -> Result<Name, BackendError> {
    parse_name(f.as_str()).ok_or_else(|| BackendError(format!("{f} is not a DNS name")))
}

fn record_type(rtype: RrType) -> RecordType {
    match rtype {
        RrType::A => RecordType::A,
        RrType::Aaaa => RecordType::AAAA,
        RrType::Txt => RecordType::TXT,
    }
}

fn rdata(rtype: RrType, value: &str) -> Result<RData, BackendError> {
    let bad = || BackendError(format!("{value:?} is not a valid {} value", rtype.as_str()));
    Ok(match rtype {
        RrType::A => RData::A(A(value.parse::<Ipv4Addr>().map_err(|_| bad())?)),
        RrType::Aaaa => RData::AAAA(AAAA(value.parse::<Ipv6Addr>().map_err(|_| bad())?)),
        // One character-string holds 255 bytes; longer values are split (RFC 7208 §3.3 style).
        RrType::Txt if value.is_empty() => RData::TXT(TXT::from_bytes(vec![&[][..]])),
        RrType::Txt => RData::TXT(TXT::from_bytes(
            value.as_bytes().chunks(TXT_CHUNK).collect(),
        )),
    })
}

fn proto(e: impl fmt::Display) -> BackendError {
    BackendError(format!("DNS message: {e}"))
}

/// The wire form of a query for one RRset (id 0, no recursion).
pub fn query_wire(name: &Fqdn, rtype: RrType) -> Result<Vec<u8>, BackendError> {
    let mut msg = Message::new(0, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = false;
    let mut q = Query::query(dns_name(name)?, record_type(rtype));
    q.set_query_class(DNSClass::IN);
    msg.add_query(q);
    msg.to_vec().map_err(proto)
}

/// The unsigned UPDATE that makes `sets` the exact content of their RRsets in `zone`.
pub fn update_message(id: u16, zone: &Fqdn, sets: &[RrSet]) -> Result<Message, BackendError> {
    let zone_name = dns_name(zone)?;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Update);
    msg.metadata.recursion_desired = false;
    let mut z = Query::query(zone_name.clone(), RecordType::SOA);
    z.set_query_class(DNSClass::IN);
    msg.add_zone(z);

    let mut guarded: Vec<Name> = Vec::new();
    for set in sets {
        let name = dns_name(&set.name)?;
        if !zone_name.zone_of(&name) {
            return Err(BackendError(format!("{} is not in zone {zone}", set.name)));
        }
        if !guarded.contains(&name) {
            // Prerequisite (RFC 2136 §2.4.3): RRset (name, CNAME) does not exist.
            let mut pre =
                Record::update0(name.clone(), 0, RecordType::CNAME).into_record_of_rdata();
            pre.dns_class = DNSClass::NONE;
            msg.add_pre_requisite(pre);
            guarded.push(name.clone());
        }
        // Update (§2.5.2): delete the RRset: class ANY, TTL 0, no RDATA.
        let mut del =
            Record::update0(name.clone(), 0, record_type(set.rtype)).into_record_of_rdata();
        del.dns_class = DNSClass::ANY;
        msg.add_update(del);
        // Update (§2.5.1): add each RR with the zone's TTL.
        for value in &set.values {
            let mut add = Record::from_rdata(name.clone(), set.ttl, rdata(set.rtype, value)?);
            add.dns_class = DNSClass::IN;
            msg.add_update(add);
        }
    }
    Ok(msg)
}

/// Adds a TSIG record signed at `now_s`; returns the request MAC the answer is signed over.
pub fn sign(msg: &mut Message, key: &TsigKey, now_s: u64) -> Result<Vec<u8>, BackendError> {
    msg.signature = None;
    let pre = TSIG::new(
        key.algorithm.hickory(),
        now_s,
        FUDGE,
        Vec::new(),
        msg.metadata.id,
        None,
        Vec::new(),
    );
    // RFC 8945 §4.3: MAC over the message without TSIG, then the TSIG variables.
    let tbs = message_tbs(&*msg, &pre, &key.name).map_err(proto)?;
    let mac = key.algorithm.mac(&key.secret, &tbs)?;
    msg.signature = Some(Box::new(make_tsig_record(
        key.name.clone(),
        pre.set_mac(mac.clone()),
    )));
    Ok(mac)
}

/// What a signed answer says, after its MAC was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub tsig: Option<TsigState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigState {
    pub error: Option<TsigError>,
    /// The MAC matched our key and request MAC (an empty MAC, as in BADSIG/BADKEY answers,
    /// never verifies).
    pub verified: bool,
    pub time: u64,
}

/// The last additional record when it is a TSIG (hickory without a `dnssec-*` feature leaves it
/// there instead of in `Message::signature`).
fn find_tsig(msg: &Message) -> Option<(Name, TSIG)> {
    if let Some(s) = msg.signature() {
        return Some((s.name.clone(), s.data.clone()));
    }
    match msg.additionals.last() {
        Some(r) => match &r.data {
            RData::TSIG(t) => Some((r.name.clone(), t.clone())),
            _ => None,
        },
        None => None,
    }
}

/// Parses an answer and verifies its TSIG over the raw bytes (RFC 8945 §5.3): MAC over
/// `len(request MAC) || request MAC || answer without its TSIG, ARCOUNT - 1 and the header ID
/// set to the TSIG's Original ID || TSIG variables`. Nothing is re-encoded, so the server's name
/// compression is MACed exactly as sent.
pub fn read_answer(wire: &[u8], request_mac: &[u8], key: &TsigKey) -> Result<Answer, BackendError> {
    let msg = Message::from_vec(wire).map_err(proto)?;
    if msg.metadata.message_type != MessageType::Response {
        return Err(BackendError(
            "the relay answered with a DNS query, not a response".into(),
        ));
    }
    let rcode = msg.metadata.response_code;
    let Some((tsig_name, tsig)) = find_tsig(&msg) else {
        return Ok(Answer { rcode, tsig: None });
    };
    let mut state = TsigState {
        error: tsig.error,
        verified: false,
        time: tsig.time,
    };
    if tsig.mac.is_empty() || tsig_name != key.name || tsig.algorithm != key.algorithm.hickory() {
        return Ok(Answer {
            rcode,
            tsig: Some(state),
        });
    }
    let mut dec = BinDecoder::new(wire);
    let hickory_proto::op::Header {
        mut metadata,
        mut counts,
    } = hickory_proto::op::Header::read(&mut dec).map_err(proto)?;
    counts.additionals = counts.additionals.saturating_sub(1);
    let start = wire.len().saturating_sub(dec.len());
    for _ in 0..counts.queries {
        Query::read(&mut dec).map_err(proto)?;
    }
    let op = metadata.op_code;
    let before = usize::from(counts.answers).saturating_add(usize::from(counts.authorities));
    Message::read_records(&mut dec, before, false, op).map_err(proto)?;
    Message::read_records(&mut dec, counts.additionals as usize, true, op).map_err(proto)?;
    let end = wire.len().saturating_sub(dec.len());
    metadata.id = tsig.oid;

    let mut buf = Vec::with_capacity(wire.len().saturating_add(request_mac.len()));
    {
        let mut enc = BinEncoder::new(&mut buf);
        let mac_len = u16::try_from(request_mac.len()).map_err(proto)?;
        enc.emit_u16(mac_len).map_err(proto)?;
        enc.emit_vec(request_mac).map_err(proto)?;
        hickory_proto::op::Header { metadata, counts }
            .emit(&mut enc)
            .map_err(proto)?;
        let signed = wire.get(start..end).ok_or_else(|| proto("record bounds"))?;
        enc.emit_vec(signed).map_err(proto)?;
        tsig.emit_tsig_for_mac(&mut enc, &tsig_name)
            .map_err(proto)?;
    }
    state.verified = key.algorithm.verify(&key.secret, &buf, &tsig.mac);
    Ok(Answer {
        rcode,
        tsig: Some(state),
    })
}

// ---------------------------------------------------------------- the backend calls

fn call(b: &Rfc2136Backend, body: Vec<u8>) -> Callout {
    Callout {
        cluster: b.cluster.clone(),
        method: "POST",
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
        return Err(BackendError(
            "the relay's answer is not for the query we sent".into(),
        ));
    }
    match msg.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        other => {
            return Err(BackendError(format!(
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
        return Err(BackendError(format!(
            "DNS UPDATE answered {rcode} without a TSIG signature"
        )));
    };
    if let Some(e) = tsig.error {
        // BADSIG/BADKEY answers are unsigned by design; BADTIME ones are signed.
        return Err(BackendError(format!(
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
        return Err(BackendError(format!(
            "DNS UPDATE answered {rcode} but the answer's TSIG does not verify"
        )));
    }
    let window = u64::from(FUDGE)
        .saturating_add(b.timeout_ms / 1000)
        .saturating_add(1);
    if tsig.time.abs_diff(p.signed_at) > window {
        return Err(BackendError(
            "the answer's TSIG time is outside the fudge of our request".into(),
        ));
    }
    match answer.rcode {
        ResponseCode::NoError => Ok(()),
        ResponseCode::YXRRSet => Err(BackendError(
            "DNS UPDATE refused by its prerequisite (YXRRSET): a CNAME exists at the name, left untouched"
                .into(),
        )),
        other => Err(BackendError(format!(
            "DNS UPDATE answered {}",
            rcode_name(other)
        ))),
    }
}

/// The body of a `200 application/dns-message` answer; anything else is an error.
fn dns_body(result: &CalloutResult) -> Result<&[u8], BackendError> {
    match result {
        CalloutResult::Failed(why) => Err(BackendError(format!("DoH relay unreachable: {why}"))),
        CalloutResult::Response {
            status,
            headers,
            body,
        } => {
            if *status != 200 {
                let detail: String = String::from_utf8_lossy(body).chars().take(200).collect();
                return Err(BackendError(format!(
                    "DoH relay answered {status}: {detail}"
                )));
            }
            let ctype = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let media = ctype.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case(DNS_MESSAGE) {
                return Err(BackendError(format!(
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
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests {
    use super::*;

    const SECRET256: &str = "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=";
    const SECRET512: &str =
        "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg==";
    const NOW: u64 = 1_700_000_000;

    /// Made by `testdata/rfc2136/golden.py` with dnspython 2.3, an independent implementation.
    fn golden(label: &str) -> Vec<u8> {
        let text = include_str!("../../testdata/rfc2136/golden.txt");
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix(label)?.strip_prefix(' '))
            .unwrap();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key256() -> TsigKey {
        TsigKey::new("ddns-key", TsigAlg::HmacSha256, SECRET256).unwrap()
    }

    fn backend(key: TsigKey) -> Rfc2136Backend {
        Rfc2136Backend {
            cluster: "bind_doh".into(),
            authority: "127.0.0.1:21080".into(),
            path: "/dns-query".into(),
            key,
            timeout_ms: 5000,
        }
    }

    fn name(s: &str) -> Fqdn {
        Fqdn::parse_service(s).unwrap()
    }

    fn set(n: &str, rtype: RrType, values: &[&str]) -> RrSet {
        RrSet {
            name: name(n),
            rtype,
            ttl: 60,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// The change golden.py makes with dnspython.
    fn golden_sets() -> Vec<RrSet> {
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

    fn signed_update(key: &TsigKey) -> (Vec<u8>, Vec<u8>) {
        let zone = name("dyn.example.test");
        let mut msg = update_message(0x1234, &zone, &golden_sets()).unwrap();
        let mac = sign(&mut msg, key, NOW).unwrap();
        (msg.to_vec().unwrap(), mac)
    }

    fn ok(body: Vec<u8>) -> CalloutResult {
        CalloutResult::Response {
            status: 200,
            headers: vec![("content-type".into(), DNS_MESSAGE.into())],
            body,
        }
    }

    /// The server side of TSIG, for crafting answers: signs `resp` over the request MAC.
    /// `golden_answer_helper_matches_dnspython` ties it to dnspython's server signer.
    fn server_answer(
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

    fn pending(mac: Vec<u8>) -> Pending {
        Pending {
            request_mac: mac,
            id: 0x1234,
            signed_at: NOW,
        }
    }

    // ------------------------------------------------------------ messages

    #[test]
    fn golden_update_is_byte_identical_to_dnspython() {
        assert_eq!(signed_update(&key256()).0, golden("update-sha256"));
        let k512 = TsigKey::new("ddns-key512", TsigAlg::HmacSha512, SECRET512).unwrap();
        assert_eq!(signed_update(&k512).0, golden("update-sha512"));
    }

    #[test]
    fn update_round_trips_through_hickorys_parser_with_the_rfc2136_sections() {
        let (wire, mac) = signed_update(&key256());
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.metadata.id, 0x1234);
        // zone section
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), "dyn.example.test.");
        assert_eq!(m.queries[0].query_type(), RecordType::SOA);
        // prerequisites: "no CNAME" once per name (class NONE, ttl 0, no rdata)
        let pre: Vec<(String, RecordType, DNSClass)> = m
            .answers
            .iter()
            .map(|r| (r.name.to_ascii(), r.record_type(), r.dns_class))
            .collect();
        assert_eq!(
            pre,
            vec![
                (
                    "home.dyn.example.test.".into(),
                    RecordType::CNAME,
                    DNSClass::NONE
                ),
                (
                    "_acme-challenge.home.dyn.example.test.".into(),
                    RecordType::CNAME,
                    DNSClass::NONE
                ),
            ]
        );
        // updates: delete RRset (ANY) then add (IN, the zone's TTL)
        let upd: Vec<(RecordType, DNSClass, u32, String)> = m
            .authorities
            .iter()
            .map(|r| {
                let data = match &r.data {
                    RData::A(a) => a.0.to_string(),
                    RData::TXT(t) => String::from_utf8_lossy(&t.txt_data[0]).into_owned(),
                    _ => String::new(),
                };
                (r.record_type(), r.dns_class, r.ttl, data)
            })
            .collect();
        assert_eq!(
            upd,
            vec![
                (RecordType::A, DNSClass::ANY, 0, "".into()),
                (RecordType::A, DNSClass::IN, 60, "192.0.2.1".into()),
                (RecordType::A, DNSClass::IN, 60, "192.0.2.2".into()),
                (RecordType::AAAA, DNSClass::ANY, 0, "".into()),
                (RecordType::TXT, DNSClass::ANY, 0, "".into()),
                (RecordType::TXT, DNSClass::IN, 60, "token-value".into()),
            ]
        );
        let (kname, tsig) = find_tsig(&m).unwrap();
        assert_eq!(kname.to_ascii(), "ddns-key.");
        assert_eq!((tsig.time, tsig.fudge, tsig.oid), (NOW, FUDGE, 0x1234));
        assert_eq!(tsig.mac, mac);
        assert_eq!(mac.len(), 32);
    }

    #[test]
    fn a_txt_value_longer_than_255_bytes_is_split_into_character_strings() {
        let long = "x".repeat(600);
        let m = update_message(
            1,
            &name("dyn.example.test"),
            &[set("h.dyn.example.test", RrType::Txt, &[&long])],
        )
        .unwrap();
        let back = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        let RData::TXT(t) = &back.authorities[1].data else {
            panic!("not TXT")
        };
        let lens: Vec<usize> = t.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lens, vec![255, 255, 90]);
    }

    #[test]
    fn names_outside_the_zone_and_bad_values_are_refused_before_anything_is_sent() {
        let zone = name("dyn.example.test");
        let e = update_message(1, &zone, &[set("h.other.test", RrType::A, &["192.0.2.1"])])
            .unwrap_err();
        assert!(e.0.contains("not in zone"), "{e}");
        let e = update_message(
            1,
            &zone,
            &[set("h.dyn.example.test", RrType::A, &["2001:db8::1"])],
        )
        .unwrap_err();
        assert!(e.0.contains("not a valid A value"), "{e}");
        let b = backend(key256());
        let env = BackendEnv {
            now_s: NOW,
            random: 7,
        };
        assert!(write(
            &b,
            &zone,
            &[set("h.dyn.example.test", RrType::Aaaa, &["x"])],
            env
        )
        .is_err());
    }

    #[test]
    fn write_posts_the_signed_update_as_a_dns_message_with_an_id_from_the_environment() {
        let b = backend(key256());
        let env = BackendEnv {
            now_s: NOW,
            random: 0xdead_beef,
        };
        let (c, p) = write(&b, &name("dyn.example.test"), &golden_sets(), env).unwrap();
        assert_eq!(
            (c.method, c.cluster.as_str(), c.path.as_str()),
            ("POST", "bind_doh", "/dns-query")
        );
        assert!(c
            .headers
            .contains(&("content-type".into(), DNS_MESSAGE.into())));
        assert_eq!(p.id, 0xbeef);
        assert_eq!(&c.body[..2], &[0xbe, 0xef]);
        assert_eq!(p.signed_at, NOW);
        assert_eq!(
            find_tsig(&Message::from_vec(&c.body).unwrap())
                .unwrap()
                .1
                .mac,
            p.request_mac
        );
    }

    // ------------------------------------------------------------ answers

    #[test]
    fn golden_answer_helper_matches_dnspython() {
        let (wire, _) = signed_update(&key256());
        let ours = server_answer(&wire, ResponseCode::NoError, None, true, &key256(), NOW);
        assert_eq!(ours, golden("answer-noerror"));
    }

    #[test]
    fn a_signed_noerror_answer_from_dnspython_is_a_success() {
        let (_, mac) = signed_update(&key256());
        let b = backend(key256());
        assert_eq!(
            check_write(&b, &pending(mac), &ok(golden("answer-noerror"))),
            Ok(())
        );
    }

    #[test]
    fn an_answer_relayed_with_a_rewritten_id_verifies_with_its_original_id() {
        let (_, mac) = signed_update(&key256());
        let relayed = golden("answer-relayed");
        let answer = read_answer(&relayed, &mac, &key256()).unwrap();
        assert_eq!(answer.tsig.map(|t| t.verified), Some(true));
        assert_eq!(
            check_write(&backend(key256()), &pending(mac), &ok(relayed)),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_answer_or_an_answer_to_another_request_does_not_verify() {
        let (_, mac) = signed_update(&key256());
        let b = backend(key256());
        let mut tampered = golden("answer-noerror");
        tampered[20] ^= 1; // a letter of the zone name
        let e = check_write(&b, &pending(mac.clone()), &ok(tampered)).unwrap_err();
        assert!(e.0.contains("does not verify"), "{e}");
        let mut other = mac.clone();
        other[0] ^= 1;
        let e = check_write(&b, &pending(other), &ok(golden("answer-noerror"))).unwrap_err();
        assert!(e.0.contains("does not verify"), "{e}");
        let wrong_key = TsigKey::new("ddns-key", TsigAlg::HmacSha256, SECRET512).unwrap();
        assert!(check_write(
            &backend(wrong_key),
            &pending(mac),
            &ok(golden("answer-noerror"))
        )
        .is_err());
    }

    #[test]
    fn a_cname_at_the_name_fails_the_prerequisite_and_is_reported() {
        let (_, mac) = signed_update(&key256());
        let e = check_write(
            &backend(key256()),
            &pending(mac),
            &ok(golden("answer-yxrrset")),
        )
        .unwrap_err();
        assert!(e.0.contains("YXRRSET") && e.0.contains("CNAME"), "{e}");
    }

    #[test]
    fn every_rcode_but_noerror_is_an_error_even_when_signed() {
        let (wire, mac) = signed_update(&key256());
        let b = backend(key256());
        for (rcode, text) in [
            (ResponseCode::FormErr, "FORMERR"),
            (ResponseCode::ServFail, "SERVFAIL"),
            (ResponseCode::NXDomain, "NXDOMAIN"),
            (ResponseCode::NotImp, "NOTIMP"),
            (ResponseCode::Refused, "REFUSED"),
            (ResponseCode::YXDomain, "YXDOMAIN"),
            (ResponseCode::YXRRSet, "YXRRSET"),
            (ResponseCode::NXRRSet, "NXRRSET"),
            (ResponseCode::NotAuth, "NOTAUTH"),
            (ResponseCode::NotZone, "NOTZONE"),
        ] {
            let answer = server_answer(&wire, rcode, None, true, &key256(), NOW);
            let e = check_write(&b, &pending(mac.clone()), &ok(answer)).unwrap_err();
            assert!(e.0.contains(text), "{text}: {e}");
        }
        let good = server_answer(&wire, ResponseCode::NoError, None, true, &key256(), NOW + 2);
        assert_eq!(check_write(&b, &pending(mac), &ok(good)), Ok(()));
    }

    #[test]
    fn tsig_errors_are_errors_whether_or_not_the_answer_is_signed() {
        let (wire, mac) = signed_update(&key256());
        let b = backend(key256());
        // BIND and Knot: BADSIG and BADKEY come unsigned (empty MAC), BADTIME signed.
        for (error, signed, text) in [
            (TsigError::BadSig, false, "BADSIG"),
            (TsigError::BadKey, false, "BADKEY"),
            (TsigError::BadTime, true, "BADTIME"),
        ] {
            let answer = server_answer(
                &wire,
                ResponseCode::NotAuth,
                Some(error),
                signed,
                &key256(),
                NOW,
            );
            let e = check_write(&b, &pending(mac.clone()), &ok(answer)).unwrap_err();
            assert!(e.0.contains("NOTAUTH") && e.0.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn unsigned_answers_are_never_a_success() {
        let (wire, mac) = signed_update(&key256());
        let b = backend(key256());
        for rcode in [ResponseCode::NoError, ResponseCode::Refused] {
            let mut m = Message::from_vec(&server_answer(&wire, rcode, None, true, &key256(), NOW))
                .unwrap();
            m.signature = None;
            m.additionals.clear();
            let e = check_write(&b, &pending(mac.clone()), &ok(m.to_vec().unwrap())).unwrap_err();
            assert!(e.0.contains("without a TSIG"), "{e}");
        }
    }

    #[test]
    fn an_answer_signed_far_from_our_request_time_is_refused() {
        let (wire, mac) = signed_update(&key256());
        let late = server_answer(
            &wire,
            ResponseCode::NoError,
            None,
            true,
            &key256(),
            NOW + 3600,
        );
        let e = check_write(&backend(key256()), &pending(mac), &ok(late)).unwrap_err();
        assert!(e.0.contains("fudge"), "{e}");
    }

    #[test]
    fn relay_failures_and_non_dns_answers_are_errors() {
        let (_, mac) = signed_update(&key256());
        let b = backend(key256());
        let cases = [
            CalloutResult::Failed("timeout".into()),
            CalloutResult::Response {
                status: 503,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: b"upstream connect error or disconnect/reset before headers".to_vec(),
            },
            CalloutResult::Response {
                status: 502,
                headers: vec![],
                body: b"no downstream server available".to_vec(),
            },
            CalloutResult::Response {
                status: 200,
                headers: vec![("content-type".into(), "text/html".into())],
                body: golden("answer-noerror"),
            },
            ok(vec![0, 1, 2]),
            ok(golden("update-sha256")), // a query, not a response
        ];
        for r in &cases {
            assert!(check_write(&b, &pending(mac.clone()), r).is_err(), "{r:?}");
            assert!(
                parse_read(&name("home.dyn.example.test"), RrType::A, r).is_err(),
                "{r:?}"
            );
        }
        let e = check_write(&b, &pending(mac), &cases[1]).unwrap_err();
        assert!(e.0.contains("503"), "{e}");
    }

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
        assert_eq!((c.method, c.path.as_str()), ("POST", "/dns-query"));
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
            .0
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

    // ------------------------------------------------------------ keys

    const KEYGEN: &str = "key \"ddns-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=\";\n};\n";

    #[test]
    fn tsig_keygen_output_is_parsed() {
        let keys = parse_key_file(KEYGEN).unwrap();
        assert_eq!(
            keys,
            vec![KeyFileEntry {
                name: "ddns-key".into(),
                algorithm: "hmac-sha256".into(),
                secret: SECRET256.into()
            }]
        );
    }

    #[test]
    fn key_files_with_comments_and_several_keys_pick_the_named_key() {
        let text = format!(
            "# made by tsig-keygen\n// two keys\n/* the second\n one */ {KEYGEN}\nkey ddns-key512. {{ algorithm HMAC-SHA512; secret \"{SECRET512}\"; }};"
        );
        let spec = |key_name| KeySpec {
            key_name,
            algorithm: None,
            secret: None,
            key_file: Some(&text),
        };
        let k = key_from_spec(&spec(Some("ddns-key512"))).unwrap();
        assert_eq!(
            (k.name.to_ascii().as_str(), k.algorithm),
            ("ddns-key512.", TsigAlg::HmacSha512)
        );
        assert_eq!(
            k,
            TsigKey::new("ddns-key512", TsigAlg::HmacSha512, SECRET512).unwrap()
        );
        assert!(
            matches!(key_from_spec(&spec(None)), Err(KeyError::KeyFile(m)) if m.contains("2 keys"))
        );
        assert!(matches!(
            key_from_spec(&spec(Some("nope"))),
            Err(KeyError::Name(_))
        ));
    }

    #[test]
    fn broken_key_files_are_refused_without_echoing_the_secret() {
        for (text, want) in [
            ("", "no `key`"),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\" };",
                "expected `;`",
            ),
            ("key \"k\" { algorithm hmac-sha256; };", "needs both"),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; secret \"c2VjcmV0\"; };",
                "twice",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; bogus 1; secret \"c2VjcmV0\"; };",
                "unknown statement",
            ),
            (
                "key \"k\" { secret \"c2VjcmV0\" \"c2VjcmV0\"; };",
                "expected `;`, found a quoted string",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0",
                "unterminated",
            ),
            ("options { };", "expected `key`"),
        ] {
            let e = parse_key_file(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("c2VjcmV0"), "secret echoed: {e}");
        }
        let spec = KeySpec {
            key_name: None,
            algorithm: None,
            secret: None,
            key_file: Some("key k { algorithm hmac-md5; secret \"c2VjcmV0\"; };"),
        };
        assert!(
            matches!(key_from_spec(&spec), Err(KeyError::KeyFile(m)) if m.contains("hmac-sha256 or hmac-sha512"))
        );
        let spec = KeySpec {
            key_file: Some("key k { algorithm hmac-sha256; secret \"not base64!\"; };"),
            ..spec
        };
        assert!(matches!(key_from_spec(&spec), Err(KeyError::KeyFile(m)) if m.contains("base64")));
    }

    #[test]
    fn inline_keys_need_name_algorithm_and_a_base64_secret() {
        let spec = |key_name, algorithm, secret| KeySpec {
            key_name,
            algorithm,
            secret,
            key_file: None,
        };
        assert!(key_from_spec(&spec(Some("k"), Some("hmac-sha256"), Some(SECRET256))).is_ok());
        assert!(matches!(
            key_from_spec(&spec(None, Some("hmac-sha256"), Some(SECRET256))),
            Err(KeyError::Name(_))
        ));
        assert!(matches!(
            key_from_spec(&spec(Some("k"), Some("hmac-md5"), Some(SECRET256))),
            Err(KeyError::Algorithm(_))
        ));
        assert!(matches!(
            key_from_spec(&spec(Some("k"), None, Some(SECRET256))),
            Err(KeyError::Algorithm(_))
        ));
        assert!(matches!(
            key_from_spec(&spec(Some("k"), Some("hmac-sha256"), Some("%%%"))),
            Err(KeyError::Secret(_))
        ));
        assert!(matches!(
            key_from_spec(&spec(Some("k"), Some("hmac-sha256"), Some(""))),
            Err(KeyError::Secret(_))
        ));
        assert!(matches!(
            key_from_spec(&spec(
                Some("bad name!"),
                Some("hmac-sha256"),
                Some(SECRET256)
            )),
            Err(KeyError::Name(_))
        ));
        let both = KeySpec {
            key_file: Some(KEYGEN),
            ..spec(None, None, Some(SECRET256))
        };
        assert!(
            matches!(key_from_spec(&both), Err(KeyError::KeyFile(m)) if m.contains("not both"))
        );
    }

    #[test]
    fn the_secret_does_not_appear_in_debug_output() {
        let text = format!("{:?}", backend(key256()));
        assert!(text.contains("ddns-key"), "{text}");
        assert!(!text.contains("SU3E55"), "{text}");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(SECRET256)
            .unwrap();
        assert!(
            !text.contains(
                &format!("{:?}", &raw[..4])
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string()
            ),
            "{text}"
        );
    }

    // ------------------------------------------------------------ configuration and exchange

    fn rfc2136_config(
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<crate::Config, crate::ConfigError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge-rfc2136.json"))
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
        let crate::Step::Call(writes) = step else {
            return (reply_text(step), 0);
        };
        let (id, write_call) = &writes[0];
        let step = ex.on_callout(*id, ok(answer(&write_call.body, &b.key)), &env);
        (reply_text(step), writes.len())
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

    type ServerAnswer = dyn Fn(&[u8], &TsigKey) -> Vec<u8>;

    #[test]
    fn every_failed_update_answers_dnserr_never_good() {
        let answers: Vec<Box<ServerAnswer>> = vec![
            Box::new(|w, k| {
                server_answer(
                    w,
                    ResponseCode::NotAuth,
                    Some(TsigError::BadSig),
                    false,
                    k,
                    NOW,
                )
            }),
            Box::new(|w, k| {
                server_answer(
                    w,
                    ResponseCode::NotAuth,
                    Some(TsigError::BadKey),
                    false,
                    k,
                    NOW,
                )
            }),
            Box::new(|w, k| {
                server_answer(
                    w,
                    ResponseCode::NotAuth,
                    Some(TsigError::BadTime),
                    true,
                    k,
                    NOW,
                )
            }),
            Box::new(|w, k| server_answer(w, ResponseCode::Refused, None, true, k, NOW)),
            Box::new(|w, k| server_answer(w, ResponseCode::ServFail, None, true, k, NOW)),
            Box::new(|w, k| server_answer(w, ResponseCode::YXRRSet, None, true, k, NOW)),
            Box::new(|w, _| {
                let other =
                    TsigKey::new("dynedge-demo-key", TsigAlg::HmacSha256, SECRET256).unwrap();
                server_answer(w, ResponseCode::NoError, None, true, &other, NOW)
            }),
        ];
        for (i, answer) in answers.into_iter().enumerate() {
            let (text, _) = update_with(vec![], answer);
            assert_eq!(text, "dnserr", "case {i}");
        }
    }
}
