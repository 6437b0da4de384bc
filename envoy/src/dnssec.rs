//! A signed zone's trust anchor, and `delv` to validate what the zone serves against it.
//!
//! The DS records come from the signer's own key store (`pdnsutil export-zone-ds`,
//! `dnssec-dsfromkey` on BIND's key files), not from DNS: what a parent zone would publish.
//! [`TrustAnchor::write`] keeps them as `ds.txt` (for the parent) and as a `trust-anchors`
//! clause in `anchors.conf` (for `delv -a`, or a validating BIND's `include`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Result;

/// One DS record in presentation format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ds {
    pub key_tag: u16,
    pub algorithm: u8,
    pub digest_type: u8,
    pub digest: String,
}

/// The DS records of `zone` in `text` (lines `NAME [TTL] [IN] DS TAG ALG TYPE DIGEST [; ...]`,
/// as `pdnsutil export-zone-ds` and `dnssec-dsfromkey` print them); other lines are skipped.
pub fn parse_ds(zone: &str, text: &str) -> Vec<Ds> {
    let apex = format!("{}.", zone.trim_end_matches('.'));
    text.lines()
        .filter_map(|line| {
            let line = line.split(';').next()?;
            let words: Vec<&str> = line.split_whitespace().collect();
            let ds = words.iter().position(|w| w.eq_ignore_ascii_case("DS"))?;
            if !words.first()?.eq_ignore_ascii_case(&apex) {
                return None;
            }
            // The digest may be split into several words.
            let rest = words.get(ds + 1..)?;
            let (tag, alg, kind) = (rest.first()?, rest.get(1)?, rest.get(2)?);
            let digest: String = rest.get(3..)?.concat();
            if digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some(Ds {
                key_tag: tag.parse().ok()?,
                algorithm: alg.parse().ok()?,
                digest_type: kind.parse().ok()?,
                digest: digest.to_ascii_uppercase(),
            })
        })
        .collect()
}

/// `trust-anchors { "ZONE." static-ds ...; };` for every SHA-256 (type 2) DS: the form BIND's
/// `delv -a` and `named.conf` read.
pub fn trust_anchors_clause(zone: &str, ds: &[Ds]) -> String {
    let apex = format!("{}.", zone.trim_end_matches('.'));
    let mut text = String::from("trust-anchors {\n");
    for d in ds.iter().filter(|d| d.digest_type == 2) {
        text.push_str(&format!(
            "\t\"{apex}\" static-ds {} {} {} \"{}\";\n",
            d.key_tag, d.algorithm, d.digest_type, d.digest
        ));
    }
    text.push_str("};\n");
    text
}

/// A signed zone's DS records, written where an operator (and `delv`) can take them.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    pub zone: String,
    pub ds: Vec<Ds>,
    /// The DS records, one a line, for the parent zone.
    pub ds_file: PathBuf,
    /// The `trust-anchors` clause (`delv -a FILE +root=ZONE`).
    pub anchors_file: PathBuf,
}

impl TrustAnchor {
    /// Parses `ds_text` (see [`parse_ds`]) and writes `ds.txt` and `anchors.conf` into `dir`.
    /// An error when it holds no SHA-256 DS for `zone`.
    pub fn write(dir: &Path, zone: &str, ds_text: &str) -> Result<TrustAnchor> {
        let ds = parse_ds(zone, ds_text);
        if !ds.iter().any(|d| d.digest_type == 2) {
            return Err(format!("no SHA-256 DS record for {zone} in: {ds_text}"));
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let apex = format!("{}.", zone.trim_end_matches('.'));
        let lines: String = ds
            .iter()
            .map(|d| {
                format!(
                    "{apex} IN DS {} {} {} {}\n",
                    d.key_tag, d.algorithm, d.digest_type, d.digest
                )
            })
            .collect();
        let ds_file = dir.join("ds.txt");
        let anchors_file = dir.join("anchors.conf");
        crate::write(&ds_file, &lines)?;
        crate::write(&anchors_file, &trust_anchors_clause(zone, &ds))?;
        Ok(TrustAnchor {
            zone: zone.trim_end_matches('.').to_string(),
            ds,
            ds_file,
            anchors_file,
        })
    }

    /// The `delv` command line that validates `name`/`rtype` at 127.0.0.1:`port` against this
    /// anchor (for printing).
    pub fn delv_command(&self, port: u16, name: &str, rtype: &str) -> String {
        format!(
            "delv @127.0.0.1 -p {port} -a {} +root={} {name} {rtype}",
            self.anchors_file.display(),
            self.zone
        )
    }

    /// Runs `delv` against the server on 127.0.0.1:`port`, anchored on this zone's key.
    pub fn delv(&self, port: u16, name: &str, rtype: &str) -> Result<Delv> {
        let out = Command::new("delv")
            .arg("@127.0.0.1")
            .args(["-p", &port.to_string(), "-a"])
            .arg(&self.anchors_file)
            .arg(format!("+root={}", self.zone))
            .args([name, rtype])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run delv (apt-get install bind9-dnsutils): {e}"))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Delv::parse(rtype, &text))
    }
}

/// What `delv` said about one name and type.
#[derive(Debug, Clone)]
pub struct Delv {
    /// `; fully validated` (a positive answer whose signatures chain up to the anchor).
    pub validated: bool,
    /// The data of the answer's records of the asked type (no RRSIG), as delv prints them.
    pub records: Vec<String>,
    /// Everything delv printed.
    pub text: String,
}

impl Delv {
    fn parse(rtype: &str, text: &str) -> Delv {
        let validated = text.lines().any(|l| l.trim() == "; fully validated");
        let records = text
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                // NAME TTL IN TYPE DATA...
                let mut words = l.split_whitespace();
                let (_, _, class, kind) =
                    (words.next()?, words.next()?, words.next()?, words.next()?);
                (class == "IN" && kind.eq_ignore_ascii_case(rtype))
                    .then(|| words.collect::<Vec<_>>().join(" "))
            })
            .collect();
        Delv {
            validated,
            records,
            text: text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_lines_from_pdnsutil_and_dnssec_dsfromkey_parse_and_other_zones_do_not() {
        let pdns = "dyn.example.test. IN DS 5722 13 2 4b3a0dfb0772 ; ( SHA256 digest )\n\
                    dyn.example.test. IN DS 5722 13 4 798b0a19b5cd ; ( SHA-384 digest )\n\
                    other.test. IN DS 1 13 2 AB\n\
                    Dec 02 16:23:03 gsqlite3: connection successful\n";
        let ds = parse_ds("dyn.example.test", pdns);
        assert_eq!(ds.len(), 2);
        assert_eq!(
            ds[0],
            Ds {
                key_tag: 5722,
                algorithm: 13,
                digest_type: 2,
                digest: "4B3A0DFB0772".into()
            }
        );
        let bind = "dyn.example.test. IN DS 15174 13 2 79C4B11B FD8B303D\n";
        assert_eq!(
            parse_ds("dyn.example.test.", bind)[0].digest,
            "79C4B11BFD8B303D"
        );
        assert!(parse_ds("dyn.example.test", "dyn.example.test. IN DS 1 13 2 XYZ").is_empty());
    }

    #[test]
    fn the_anchor_clause_holds_only_the_sha256_digests() {
        let ds = parse_ds(
            "dyn.example.test",
            "dyn.example.test. IN DS 5722 13 2 AB\ndyn.example.test. IN DS 5722 13 4 CD\n",
        );
        assert_eq!(
            trust_anchors_clause("dyn.example.test", &ds),
            "trust-anchors {\n\t\"dyn.example.test.\" static-ds 5722 13 2 \"AB\";\n};\n"
        );
    }

    #[test]
    fn delv_output_is_validated_only_with_the_fully_validated_line() {
        let good = "; fully validated\n\
                    home.dyn.example.test.\t60\tIN\tA\t192.0.2.7\n\
                    home.dyn.example.test.\t60\tIN\tRRSIG\tA 13 4 60 2026 2026 15174 dyn.example.test. v4ki\n";
        let d = Delv::parse("A", good);
        assert!(d.validated);
        assert_eq!(d.records, ["192.0.2.7"]);
        let bad = ";; broken trust chain resolving 'home.dyn.example.test/A/IN': 127.0.0.1#1\n\
                   ;; resolution failed: broken trust chain\n";
        let d = Delv::parse("A", bad);
        assert!(!d.validated && d.records.is_empty());
        let txt =
            "; fully validated\n_acme-challenge.home.dyn.example.test. 60 IN TXT \"abc def\"\n";
        assert_eq!(Delv::parse("TXT", txt).records, ["\"abc def\""]);
    }
}
