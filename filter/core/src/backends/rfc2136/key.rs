//! TSIG keys: the algorithm, the secret, and building a key from the configuration (inline or
//! from a BIND key file).

use std::fmt;

use base64::Engine;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::Name;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

use super::keyfile::parse_key_file;
use super::message::parse_name;
use super::BackendError;

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

    pub(super) fn hickory(self) -> TsigAlgorithm {
        match self {
            TsigAlg::HmacSha256 => TsigAlgorithm::HmacSha256,
            TsigAlg::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }

    pub(super) fn mac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, BackendError> {
        let bad = |_| BackendError::Invalid("TSIG key unusable".into());
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
    pub(super) fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
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
    pub(super) secret: Vec<u8>,
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

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::super::fixtures::*;
    use super::super::keyfile::{parse_key_file, KeyFileEntry};
    use super::*;

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
}
