//! The keys access tokens are verified with: a static key, a JWKS document, or (feature `jwks`) a JWKS URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// The keys access tokens are verified with.
#[derive(Clone)]
pub struct VerificationKeys {
    pub(super) keys: Arc<[VerificationKey]>,
    #[cfg(feature = "jwks")]
    pub(super) remote: Option<Arc<super::jwks::RemoteJwks>>,
}

#[derive(Clone)]
pub(super) struct VerificationKey {
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerificationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        let keys: Vec<_> = current
            .iter()
            .map(|k| (k.kid.as_deref().unwrap_or("-"), &k.algorithms))
            .collect();
        let mut debug = f.debug_struct("VerificationKeys");
        debug.field("keys", &keys);
        // Its credentials, if the URL carries any, masked.
        #[cfg(feature = "jwks")]
        debug.field(
            "url",
            &self
                .remote
                .as_ref()
                .map(|r| crate::serve::settings::masked_url(&r.url)),
        );
        debug.finish()
    }
}

/// Refuses PEM text holding a private key (PKCS#8, PKCS#1, SEC 1, encrypted or not), naming its label.
fn refuse_private_key(pem: &[u8]) -> Result<(), KeyError> {
    let text = String::from_utf8_lossy(pem);
    // Labels read without their spaces and case: a mangled label (`PRIVATE  KEY`, red-team finding) is one too.
    let private = text.lines().find_map(|line| {
        let label = line
            .trim()
            .strip_prefix("-----BEGIN")?
            .strip_suffix("-----")?;
        let squeezed = label
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        squeezed
            .contains("PRIVATEKEY")
            .then(|| label.trim().to_owned())
    });
    if let Some(label) = private {
        return Err(KeyError::PrivateKey(crate::audit::shorten_str(&label)));
    }
    // What each block holds, whatever its label says (red-team finding: a private key relabelled `PUBLIC KEY` was
    // taken). Text that is not PEM is left to the key's own parser to refuse.
    // Each block on its own, so that a malformed one cannot hide the others (red-team finding: `parse_many` failed
    // on a garbled block after the key, and none was read).
    let starts = text.match_indices("-----BEGIN").map(|(at, _)| at);
    for block in starts.filter_map(|at| pem::parse(&text[at..]).ok()) {
        if is_private_key_der(block.contents()) {
            return Err(KeyError::PrivateKeyContent(crate::audit::shorten_str(
                block.tag(),
            )));
        }
    }
    Ok(())
}

/// Whether DER holds a private key rather than a public one, from its first elements: every private key form
/// begins with a small version number (PKCS#8's `PrivateKeyInfo` 0 or 1, PKCS#1's `RSAPrivateKey` 0 or 1, SEC 1's
/// `ECPrivateKey` 1), or is PKCS#8's `EncryptedPrivateKeyInfo` (an algorithm, then an `OCTET STRING`), while a
/// `SubjectPublicKeyInfo` is an algorithm then a `BIT STRING` and PKCS#1's `RSAPublicKey` begins with the modulus.
fn is_private_key_der(der: &[u8]) -> bool {
    /// A DER element's tag, and its content and what follows it; `None` if it is cut short or not DER.
    fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // Read however many bytes it is written in (red-team finding: five, with leading zeros, hid a key
            // from a check that took at most four), as lenient parsers read it.
            let count = usize::from(first & 0x7f);
            if count == 0 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            let length = bytes.iter().try_fold(0usize, |n, b| {
                n.checked_mul(256).map(|n| n | usize::from(*b))
            })?;
            (length, rest)
        };
        (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
    }
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let Some((SEQUENCE, inner, _)) = element(der) else {
        return false;
    };
    // A small version however many bytes it is written in (red-team finding: `02 02 00 00`).
    let small = |value: &[u8]| {
        value
            .split_last()
            .is_some_and(|(last, rest)| *last <= 1 && rest.iter().all(|b| *b == 0))
    };
    match element(inner) {
        Some((INTEGER, value, _)) if small(value) => true,
        Some((SEQUENCE, _, rest)) => matches!(element(rest), Some((OCTET_STRING, _, _))),
        _ => false,
    }
}

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The text is not a key of the kind expected.
    #[error("invalid key: {0}")]
    Invalid(String),
    /// A private key where a public key belongs: the server verifies tokens, and a signing key has no place on it
    /// (it was taken for a public key, and every token was then refused `bad_signature`).
    #[error(
        "the file holds a private key (`-----BEGIN {0}-----`): give the issuer's public key (`-----BEGIN PUBLIC \
         KEY-----`), and keep the private key with the issuer, off this server"
    )]
    PrivateKey(String),
    /// A private key under a public key's label (`-----BEGIN PUBLIC KEY-----`): what the block holds is read,
    /// whatever its label says.
    #[error(
        "the file's `-----BEGIN {0}-----` block holds a private key: give the issuer's public key, and keep the \
         private key with the issuer, off this server"
    )]
    PrivateKeyContent(String),
    /// A JWKS holds no key this server can verify signatures with.
    #[error("the JWKS holds no usable signing key")]
    EmptyJwks,
    /// An HMAC secret shorter than 32 bytes (RFC 7518 section 3.2 asks for at least the hash size).
    #[error("an HS256 secret must be at least 32 bytes long")]
    ShortSecret,
    /// A JWKS URL could not be fetched.
    #[error("cannot fetch the JWKS at {url}: {reason}")]
    Fetch {
        /// The URL, any credentials in it masked.
        url: String,
        /// The reason.
        reason: String,
    },
}

impl VerificationKeys {
    /// A shared HMAC secret (HS256, HS384, HS512), at least 32 bytes.
    pub fn hmac_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret);
        }
        Ok(Self::single(
            DecodingKey::from_secret(secret),
            AlgorithmFamily::Hmac,
        ))
    }

    /// An RSA public key in PEM (RS256..RS512, PS256..PS512). A private key is refused.
    pub fn rsa_pem(pem: &[u8]) -> Result<Self, KeyError> {
        refuse_private_key(pem)?;
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(Self::single(key, AlgorithmFamily::Rsa))
    }

    /// An EC public key in PEM (ES256, ES384). A private key is refused.
    pub fn ec_pem(pem: &[u8]) -> Result<Self, KeyError> {
        refuse_private_key(pem)?;
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(Self::single(key, AlgorithmFamily::Ec))
    }

    /// A public key in PEM, RSA or EC, whichever it is. A private key is refused.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        refuse_private_key(pem)?;
        Self::rsa_pem(pem).or_else(|_| Self::ec_pem(pem)).map_err(|_| {
            KeyError::Invalid(
                "not an RSA or EC public key in PEM (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC \
                 KEY-----`)"
                    .into(),
            )
        })
    }

    /// The signing keys of a JWKS document (RFC 7517). Keys for encryption only, and keys of kinds this server
    /// cannot use, are skipped.
    pub fn jwks_json(text: &str) -> Result<Self, KeyError> {
        Ok(VerificationKeys {
            keys: parse_jwks(text)?,
            #[cfg(feature = "jwks")]
            remote: None,
        })
    }

    /// The JWKS document in a file.
    pub fn jwks_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let read = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = crate::operator_file::read_bounded(
            path,
            crate::operator_file::MAX_SETTINGS_FILE,
            "a JWKS document",
        )
        .map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?;
        Self::jwks_json(&text)
    }

    fn single(key: DecodingKey, family: AlgorithmFamily) -> Self {
        VerificationKeys {
            keys: Arc::from([VerificationKey {
                kid: None,
                key,
                algorithms: family.algorithms().to_vec(),
            }]),
            #[cfg(feature = "jwks")]
            remote: None,
        }
    }

    /// The keys that may have signed a token: those its `kid` names, the first [`MAX_KEYS_PER_KID`] of them (a set
    /// may hold several under one id: an EC P-256 and a P-384 key, or a rotation's next key), or, for a token
    /// without `kid`, the only key there is. Empty when none may have.
    pub(super) fn select<'k>(
        keys: &'k [VerificationKey],
        kid: Option<&str>,
    ) -> Vec<&'k VerificationKey> {
        match kid {
            Some(kid) => {
                let named: Vec<_> = keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .take(MAX_KEYS_PER_KID)
                    .collect();
                match named.is_empty() && keys.len() == 1 && keys[0].kid.is_none() {
                    // A static key has no id: it verifies whatever `kid` the issuer stamps.
                    true => vec![&keys[0]],
                    false => named,
                }
            }
            None if keys.len() == 1 => vec![&keys[0]],
            None => Vec::new(),
        }
    }
}

/// How many keys under one `kid` a token is checked against, at most: a set holding thousands under one id made
/// each bad token cost thousands of signature checks (a review's finding: 10 s a token in a debug build).
pub const MAX_KEYS_PER_KID: usize = 4;

/// The usable signing keys of a JWKS document.
pub(super) fn parse_jwks(text: &str) -> Result<Arc<[VerificationKey]>, KeyError> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| KeyError::Invalid(format!("JWKS: {e}")))?;
    // The members of each key as written, which the typed keys drop: a private half among them.
    #[derive(serde::Deserialize)]
    struct Members {
        keys: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let members = serde_json::from_str::<Members>(text)
        .map_err(|e| KeyError::Invalid(format!("JWKS: {e}")))?
        .keys;
    let mut keys = Vec::new();
    for (jwk, members) in set.keys.iter().zip(&members) {
        // A key set is published: a key whose private half it carries (RSA's `d`, `p`, `q`, ...; EC's and OKP's
        // `d`) could have signed a token anyone wrote (red-team finding: it was taken).
        if ["d", "p", "q", "dp", "dq", "qi", "oth"]
            .iter()
            .any(|member| members.contains_key(*member))
        {
            tracing::warn!(
                kid = ?jwk.common.key_id,
                "a key in the JWKS carries its private half, so anyone who reads the set can sign tokens with it: \
                 ignored (publish the public half only, and replace the key)"
            );
            continue;
        }
        // A key for encryption, or whose operations do not include verifying (RFC 7517 sections 4.2 and 4.3;
        // red-team finding: `key_ops: ["encrypt"]` verified tokens).
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) || jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&jsonwebtoken::jwk::KeyOperations::Verify))
        {
            continue;
        }
        // A key set is published: a symmetric key in it would let anyone who reads it sign tokens. An RSA key under
        // 2048 bits is too weak to trust (RFC 8725 section 3.5, NIST SP 800-57).
        match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => {
                tracing::warn!(kid = ?jwk.common.key_id, "symmetric (oct) key in a JWKS ignored");
                continue;
            }
            jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa)
                if rsa.n.trim_start_matches('A').len() * 6 < 2048 - 6 =>
            {
                tracing::warn!(kid = ?jwk.common.key_id, "RSA key under 2048 bits in a JWKS ignored");
                continue;
            }
            _ => {}
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        // An EC key signs with the one algorithm of its curve (RFC 7518 section 3.4): a P-256 key is no ES384 key.
        let family_algorithms = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                jsonwebtoken::jwk::EllipticCurve::P256 => vec![Algorithm::ES256],
                jsonwebtoken::jwk::EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            _ => key.family().algorithms().to_vec(),
        };
        let algorithms = match jwk.common.key_algorithm {
            Some(named) => match named.to_string().parse::<Algorithm>() {
                Ok(alg) if family_algorithms.contains(&alg) => vec![alg],
                _ => continue,
            },
            None => family_algorithms,
        };
        keys.push(VerificationKey {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms,
        });
    }
    if keys.is_empty() {
        return Err(KeyError::EmptyJwks);
    }
    for (kid, count) in kids_past_the_bound(&keys) {
        tracing::warn!(
            kid,
            keys = count,
            "the JWKS holds more keys under one kid than a token is checked against ({MAX_KEYS_PER_KID}): tokens \
             signed with a key after the first {MAX_KEYS_PER_KID} under it are refused (give each key its own kid)"
        );
    }
    Ok(keys.into())
}

/// The ids under which a set holds more keys than a token is checked against ([`MAX_KEYS_PER_KID`]), with how many
/// each: a key past the bound never verifies a token, which the operator is told when the set is read.
fn kids_past_the_bound(keys: &[VerificationKey]) -> Vec<(&str, usize)> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for kid in keys.iter().filter_map(|key| key.kid.as_deref()) {
        let at = *seen.entry(kid).or_insert_with(|| {
            counts.push((kid, 0));
            counts.len() - 1
        });
        counts[at].1 += 1;
    }
    counts.retain(|&(_, count)| count > MAX_KEYS_PER_KID);
    counts
}

#[cfg(not(feature = "jwks"))]
impl VerificationKeys {
    /// The keys held now.
    pub(super) fn current(&self) -> Arc<[VerificationKey]> {
        self.keys.clone()
    }

    /// Keys that are not fetched are never waited for.
    pub(super) fn fetch_deadline(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    /// Keys that are not fetched are never fetched again.
    pub(super) async fn refetch(&self, _deadline: std::time::Instant) {}

    /// Keys that are not fetched do not age.
    pub(super) async fn refresh_if_stale(&self, _deadline: std::time::Instant) {}

    /// Whether the keys come from a URL, and may be fetched again.
    pub(super) fn is_fetched(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWK of an EC key pair's public half, under `kid`.
    fn ec_jwk(pair: &rcgen::KeyPair, crv: &str, kid: &str) -> serde_json::Value {
        use base64::Engine as _;
        let point = &pair.public_key_raw()[1..];
        let (x, y) = point.split_at(point.len() / 2);
        let b64 = |bytes| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        serde_json::json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(x), "y": b64(y)})
    }

    const ISSUER: &str = "https://issuer.test";
    const RESOURCE: &str = "https://mcp.example.com/mcp";

    /// Bearer authentication for `ISSUER` and `RESOURCE` with the keys of the JWKS `set`.
    fn auth_of(set: &serde_json::Value) -> crate::serve::http::BearerAuth {
        crate::serve::http::BearerAuth::new(
            ISSUER,
            RESOURCE,
            VerificationKeys::jwks_json(&set.to_string()).unwrap(),
        )
    }

    /// A token for alice, signed by `pair` with `alg` under the `kid` `shared`, expiring `expires_in` seconds from
    /// now (in the past if negative).
    fn signed(pair: &rcgen::KeyPair, alg: jsonwebtoken::Algorithm, expires_in: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = now.checked_add_signed(expires_in).unwrap();
        let claims =
            serde_json::json!({"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "exp": exp});
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some("shared".into());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// Left from a review: a key set holding two keys under one `kid` (one provider's rotation publishing the next
    /// key under the same id, or an EC P-256 and a P-384 key sharing it) verified tokens with the first only, so
    /// tokens signed with the other were refused. Every key under the `kid` that takes the token's algorithm is
    /// tried, and a token none of them signed is still refused.
    #[test]
    fn every_key_under_a_tokens_kid_is_tried() {
        let p256_old = rcgen::KeyPair::generate().unwrap();
        let p256_new = rcgen::KeyPair::generate().unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let stranger = rcgen::KeyPair::generate().unwrap();
        let set = serde_json::json!({"keys": [
            ec_jwk(&p256_old, "P-256", "shared"),
            ec_jwk(&p384, "P-384", "shared"),
            ec_jwk(&p256_new, "P-256", "shared"),
        ]});
        let auth = auth_of(&set);
        let sign = |pair: &rcgen::KeyPair, alg| signed(pair, alg, 600);
        use jsonwebtoken::Algorithm::{ES256, ES384};
        for (pair, alg) in [(&p256_old, ES256), (&p384, ES384), (&p256_new, ES256)] {
            assert_eq!(
                auth.verify(&sign(pair, alg)).unwrap().id(),
                "alice",
                "{alg:?}"
            );
        }
        // A review's finding: thousands of keys under one kid made each bad token cost thousands of checks. The
        // first MAX_KEYS_PER_KID are tried.
        let many: Vec<_> = (0..10)
            .map(|_| ec_jwk(&rcgen::KeyPair::generate().unwrap(), "P-256", "many"))
            .collect();
        let keys = VerificationKeys::jwks_json(&serde_json::json!({ "keys": many }).to_string())
            .unwrap()
            .current();
        assert_eq!(
            VerificationKeys::select(&keys, Some("many")).len(),
            MAX_KEYS_PER_KID
        );
        // Left from the last session: the keys past the bound never verify, and nothing said so. The set's reading
        // names the id and the count (and only ids past the bound: "shared" holds three).
        assert_eq!(super::kids_past_the_bound(&keys), [("many", 10)]);
        let shared = VerificationKeys::jwks_json(
            &serde_json::json!({ "keys": [
            ec_jwk(&p256_old, "P-256", "shared"),
            ec_jwk(&p384, "P-384", "shared"),
            ec_jwk(&p256_new, "P-256", "shared"),
        ] })
            .to_string(),
        )
        .unwrap()
        .current();
        assert!(super::kids_past_the_bound(&shared).is_empty());
        assert_eq!(
            auth.verify(&sign(&stranger, ES256)).unwrap_err(),
            super::super::TokenError::BadSignature
        );
        // An expired token signed with the second key says so, not that its signature is bad.
        let token = signed(&p256_new, ES256, -3600);
        assert_eq!(
            auth.verify(&token).unwrap_err(),
            super::super::TokenError::Expired
        );
    }

    /// A red team's (round 43): a key under a token's `kid` that cannot be used (an EC point not on its curve)
    /// ended the search with `malformed`, so a token signed with the valid key listed after it under the same `kid`
    /// was refused: a provider's one broken key took the others with it. A key that cannot verify counts as one
    /// whose signature does not match, and the next is tried.
    #[test]
    fn a_broken_key_under_a_kid_does_not_hide_the_keys_after_it() {
        let good = rcgen::KeyPair::generate().unwrap();
        let mut broken = ec_jwk(&rcgen::KeyPair::generate().unwrap(), "P-256", "shared");
        // A point off the curve: the last byte of `y` changed.
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut y = engine.decode(broken["y"].as_str().unwrap()).unwrap();
        *y.last_mut().unwrap() ^= 1;
        broken["y"] = engine.encode(&y).into();
        let auth =
            auth_of(&serde_json::json!({"keys": [broken, ec_jwk(&good, "P-256", "shared")]}));
        let es256 = jsonwebtoken::Algorithm::ES256;
        assert_eq!(
            auth.verify(&signed(&good, es256, 600)).unwrap().id(),
            "alice"
        );
        // A token signed by neither: its signature is bad, whatever the broken key made of it.
        let token = signed(&rcgen::KeyPair::generate().unwrap(), es256, 600);
        assert_eq!(
            auth.verify(&token).unwrap_err(),
            super::super::TokenError::BadSignature
        );
    }

    #[test]
    fn a_private_key_is_refused_where_a_public_key_belongs() {
        let pair = rcgen::KeyPair::generate().unwrap();
        assert!(VerificationKeys::public_key_pem(pair.public_key_pem().as_bytes()).is_ok());
        let refused =
            VerificationKeys::public_key_pem(pair.serialize_pem().as_bytes()).unwrap_err();
        assert!(
            matches!(&refused, KeyError::PrivateKey(label) if label == "PRIVATE KEY"),
            "{refused}"
        );
        for label in [
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "PRIVATE  KEY",
        ] {
            let pem = format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
            for load in [
                VerificationKeys::public_key_pem,
                VerificationKeys::rsa_pem,
                VerificationKeys::ec_pem,
            ] {
                let refused = load(pem.as_bytes()).unwrap_err();
                assert!(
                    matches!(&refused, KeyError::PrivateKey(found) if found == label),
                    "{refused}"
                );
            }
        }
        let refused = VerificationKeys::public_key_pem(b"not a key").unwrap_err();
        assert!(
            refused.to_string().contains("BEGIN PUBLIC KEY"),
            "{refused}"
        );
    }

    /// Red-team finding: a private key relabelled `PUBLIC KEY` was taken (an RSA one verified tokens with its public
    /// half), the signing key then sitting on the server. What a block holds is read, whatever its label says.
    #[test]
    fn a_private_key_under_a_public_label_is_refused() {
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/file-server/tests/fixtures"
        );
        let rsa_pkcs8 = std::fs::read_to_string(format!("{fixtures}/rsa-private.pem")).unwrap();
        let rsa_pkcs1 =
            std::fs::read_to_string(format!("{fixtures}/rsa-private-pkcs1.pem")).unwrap();
        let ec_pkcs8 = rcgen::KeyPair::generate().unwrap().serialize_pem();
        for (private, public) in [
            (&rsa_pkcs8, "PUBLIC KEY"),
            (&rsa_pkcs1, "RSA PUBLIC KEY"),
            (&rsa_pkcs1, "PUBLIC KEY"),
            (&ec_pkcs8, "PUBLIC KEY"),
        ] {
            let relabelled = private
                .replace("RSA PRIVATE KEY", public)
                .replace("PRIVATE KEY", public);
            assert!(!relabelled.contains("PRIVATE"), "{relabelled}");
            for load in [
                VerificationKeys::public_key_pem,
                VerificationKeys::rsa_pem,
                VerificationKeys::ec_pem,
            ] {
                let refused = load(relabelled.as_bytes()).map(|_| ()).unwrap_err();
                assert!(
                    matches!(&refused, KeyError::PrivateKeyContent(label) if label == public),
                    "{public}: {refused}"
                );
            }
        }
        // Red-team findings: a malformed block after the key (the blocks were not read at all), the version
        // encoded in more bytes than it needs, the outer length in five bytes.
        let der = pem::parse(&rsa_pkcs8).unwrap().into_contents();
        let (header, body) = match der[1] {
            0x82 => der.split_at(4),
            other => panic!("expected a two-byte length, not {other:#x}"),
        };
        assert_eq!(header[0], 0x30);
        let relabel = |der: Vec<u8>| pem::encode(&pem::Pem::new("PUBLIC KEY", der));
        let sequence = |length: &[u8], body: &[u8]| [&[0x30][..], length, body].concat();
        let long_length = {
            let n = body.len() as u32;
            sequence(&[&[0x85, 0][..], &n.to_be_bytes()].concat(), body)
        };
        assert_eq!(&body[..3], [0x02, 0x01, 0x00], "the version");
        let wide_version = {
            let body = [&[0x02, 0x02, 0x00, 0x00][..], &body[3..]].concat();
            let n = body.len() as u16;
            sequence(&[&[0x82][..], &n.to_be_bytes()].concat(), &body)
        };
        for (what, pem) in [
            (
                "a malformed block after it",
                format!(
                    "{}-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
                    relabel(der.clone())
                ),
            ),
            ("a five-byte length", relabel(long_length)),
            ("a two-byte version", relabel(wide_version)),
        ] {
            let refused = VerificationKeys::public_key_pem(pem.as_bytes()).map(|_| ());
            assert!(
                matches!(&refused, Err(KeyError::PrivateKeyContent(_))),
                "{what}: {refused:?}"
            );
        }
        // Public keys in either form still load.
        let pair = rcgen::KeyPair::generate().unwrap();
        assert!(VerificationKeys::ec_pem(pair.public_key_pem().as_bytes()).is_ok());
        for public in ["rsa-public.pem", "rsa-public-pkcs1.pem"] {
            let pem = std::fs::read_to_string(format!("{fixtures}/{public}")).unwrap();
            assert!(
                VerificationKeys::rsa_pem(pem.as_bytes()).is_ok(),
                "{public}"
            );
            assert!(
                VerificationKeys::public_key_pem(pem.as_bytes()).is_ok(),
                "{public}"
            );
        }
    }
}
