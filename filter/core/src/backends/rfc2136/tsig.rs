//! TSIG (RFC 8945): signing a request and verifying the signed answer.

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{make_tsig_record, message_tbs, TsigError, TSIG};
use hickory_proto::rr::{Name, RData};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::key::TsigKey;
use super::message::proto;
use super::BackendError;

/// Allowed clock difference in seconds, both ways (RFC 8945 recommends 300).
pub const FUDGE: u16 = 300;

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
pub(super) fn find_tsig(msg: &Message) -> Option<(Name, TSIG)> {
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
        return Err(BackendError::Invalid(
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use super::*;

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
        assert!(e.to_string().contains("does not verify"), "{e}");
        let mut other = mac.clone();
        other[0] ^= 1;
        let e = check_write(&b, &pending(other), &ok(golden("answer-noerror"))).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
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
        assert!(
            e.to_string().contains("YXRRSET") && e.to_string().contains("CNAME"),
            "{e}"
        );
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
            assert!(e.to_string().contains(text), "{text}: {e}");
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
            assert!(
                e.to_string().contains("NOTAUTH") && e.to_string().contains(text),
                "{text}: {e}"
            );
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
            assert!(e.to_string().contains("without a TSIG"), "{e}");
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
        assert!(e.to_string().contains("fudge"), "{e}");
    }

    #[test]
    fn relay_failures_and_non_dns_answers_are_errors() {
        let (_, mac) = signed_update(&key256());
        let b = backend(key256());
        let cases = [
            CalloutResult::Failed(crate::backends::CalloutFailure::Timeout { after_ms: 1000 }),
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
        assert!(e.to_string().contains("503"), "{e}");
    }
}
