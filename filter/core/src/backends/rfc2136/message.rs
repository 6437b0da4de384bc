//! Building the DNS messages: the query for one RRset and the UPDATE for a set of RRsets.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{BackendError, RrSet, RrType};
use crate::names::Fqdn;

/// Longest character-string in a TXT record.
const TXT_CHUNK: usize = 255;

pub(super) fn parse_name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

pub(super) fn dns_name(f: &Fqdn) -> Result<Name, BackendError> {
    parse_name(f.as_str()).ok_or_else(|| BackendError::Invalid(format!("{f} is not a DNS name")))
}

pub(super) fn record_type(rtype: RrType) -> RecordType {
    match rtype {
        RrType::A => RecordType::A,
        RrType::Aaaa => RecordType::AAAA,
        RrType::Txt => RecordType::TXT,
    }
}

fn rdata(rtype: RrType, value: &str) -> Result<RData, BackendError> {
    let bad =
        || BackendError::Invalid(format!("{value:?} is not a valid {} value", rtype.as_str()));
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

pub(super) fn proto(e: impl fmt::Display) -> BackendError {
    BackendError::Invalid(format!("DNS message: {e}"))
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
            return Err(BackendError::Invalid(format!(
                "{} is not in zone {zone}",
                set.name
            )));
        }
        if !guarded.contains(&name) {
            // Prerequisite (RFC 2136 §2.4.3): RRset (name, CNAME) does not exist.
            let mut pre =
                Record::update0(name.clone(), 0, RecordType::CNAME).into_record_of_rdata();
            pre.dns_class = DNSClass::NONE;
            msg.add_pre_requisite(pre);
            guarded.push(name.clone());
        }
        // Update (RFC 2136 §2.5.2): delete the RRset: class ANY, TTL 0, no RDATA.
        let mut del =
            Record::update0(name.clone(), 0, record_type(set.rtype)).into_record_of_rdata();
        del.dns_class = DNSClass::ANY;
        msg.add_update(del);
        // Update (RFC 2136 §2.5.1): add each RR with the zone's TTL.
        for value in &set.values {
            let mut add = Record::from_rdata(name.clone(), set.ttl, rdata(set.rtype, value)?);
            add.dns_class = DNSClass::IN;
            msg.add_update(add);
        }
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::{DNSClass, RData, RecordType};

    use super::super::fixtures::*;
    use super::super::tsig::{find_tsig, FUDGE};
    use super::super::{write, BackendEnv, RrType, DNS_MESSAGE};
    use super::super::{TsigAlg, TsigKey};
    use super::*;

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
        assert!(e.to_string().contains("not in zone"), "{e}");
        let e = update_message(
            1,
            &zone,
            &[set("h.dyn.example.test", RrType::A, &["2001:db8::1"])],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a valid A value"), "{e}");
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
            (crate::backends::Method::Post, "bind_doh", "/dns-query")
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
}
