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

    /// An RSA public key in PEM (RS256..RS512, PS256..PS512).
    pub fn rsa_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(Self::single(key, AlgorithmFamily::Rsa))
    }

    /// An EC public key in PEM (ES256, ES384).
    pub fn ec_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(Self::single(key, AlgorithmFamily::Ec))
    }

    /// A public key in PEM, RSA or EC, whichever it is.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Self::rsa_pem(pem).or_else(|_| Self::ec_pem(pem))
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

    /// The key for a token: the one its `kid` names, or, for a token without `kid`, the only key there is.
    pub(super) fn select<'k>(
        keys: &'k [VerificationKey],
        kid: Option<&str>,
    ) -> Option<&'k VerificationKey> {
        match kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .or_else(|| {
                    // A static key has no id: it verifies whatever `kid` the issuer stamps.
                    (keys.len() == 1 && keys[0].kid.is_none()).then(|| &keys[0])
                }),
            None => (keys.len() == 1).then(|| &keys[0]),
        }
    }
}

/// The usable signing keys of a JWKS document.
pub(super) fn parse_jwks(text: &str) -> Result<Arc<[VerificationKey]>, KeyError> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| KeyError::Invalid(format!("JWKS: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
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
        let family_algorithms = key.family().algorithms().to_vec();
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
    Ok(keys.into())
}

#[cfg(not(feature = "jwks"))]
impl VerificationKeys {
    /// The keys held now.
    pub(super) fn current(&self) -> Arc<[VerificationKey]> {
        self.keys.clone()
    }

    /// Keys that are not fetched are never fetched again.
    pub(super) async fn refetch(&self) {}

    /// Keys that are not fetched do not age.
    pub(super) async fn refresh_if_stale(&self) {}

    /// Whether the keys come from a URL, and may be fetched again.
    pub(super) fn is_fetched(&self) -> bool {
        false
    }
}
