//! Bearer authentication as an OAuth 2.1 resource server: JWT access tokens checked against configured keys,
//! issuer and audience; the token's `sub` becomes the caller's identity and its `scope` claim the caller's grant.
//!
//! What is refused, and why it matters:
//! - the algorithms a key accepts come from the key (an HMAC secret accepts HS256/384/512, an RSA key RS*/PS*, an EC
//!   key ES256/384, a JWK its own `alg` if it names one), never from the token header, so `alg: none` and
//!   algorithm confusion (an RSA public key used as an HMAC secret) cannot pass;
//! - `exp`, `iss`, `aud` and `sub` are required; `nbf` is checked when present; the audience must be this server's
//!   resource URL, so a token minted for another server is refused;
//! - a token in the query string (`?access_token=`) is ignored: only the `Authorization` header counts.
//!
//! Keys come from a static key, a JWKS file, or (feature `jwks`) a JWKS URL (`VerificationKeys::jwks_url`):
//! fetched at start, and fetched again when a token names a `kid` the set does not hold (the issuer rotated its
//! keys), at most once per refetch interval, so a flood of tokens with made-up `kid`s cannot turn into a flood of
//! fetches; and, in the background, once the keys held are older than their maximum age (10 minutes by default),
//! so that a key the provider removed stops being accepted even when no token names a new one.

mod cache;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;

use std::sync::Arc;

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;

pub use cache::{TOKEN_CACHE_ENTRIES, TOKEN_CACHE_TTL};
#[cfg(feature = "jwks")]
pub use jwks::{
    DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_MAX_STALE, DEFAULT_JWKS_REFETCH_INTERVAL,
    JWKS_FETCH_TIMEOUT, JWKS_STALE_WAIT, MAX_JWKS_BYTES,
};
pub use keys::{KeyError, MAX_KEYS_PER_KID, VerificationKeys};

use super::challenge::METADATA_PATH;
use keys::VerificationKey;

use crate::call::Caller;
use crate::scope::Grant;

/// The clock skew tolerated on `exp` and `nbf`, in seconds, unless configured.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Bearer authentication settings: who issues tokens, which keys sign them, and this server's resource URL, which
/// tokens must name as their audience.
///
/// Tokens verified are kept for their next use (see [`TOKEN_CACHE_TTL`]) by this value only: a clone, and the
/// value a builder method returns, start with none, so a clone given other settings (another resource, a claims
/// mapping) never takes a token on the strength of a check made under the first one's. Change the public fields
/// before the first token is verified.
#[non_exhaustive]
pub struct BearerAuth {
    /// The expected `iss`.
    pub issuer: String,
    /// This server's resource URL (RFC 8707 / RFC 9728), e.g. `https://mcp.example.com/mcp`: the `resource` of
    /// the protected resource metadata, which challenges point clients to, and the `aud` tokens must carry unless
    /// [`audiences`](Self::audiences) says otherwise.
    pub resource: String,
    /// The audiences a token may name in `aud`, one of them at least; when empty (the default), the resource URL.
    /// An identity provider that puts another identifier there (Entra's application ID URI or client id, Auth0's
    /// API identifier) is named here, while the resource stays the URL clients reach the server at.
    pub audiences: Vec<String>,
    /// The authorization servers listed in the protected resource metadata (default: the issuer).
    pub authorization_servers: Vec<String>,
    /// The keys.
    pub keys: VerificationKeys,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The claims a token's scopes are read from, in order, all of them counting (default `scope`, then `scp`):
    /// a space-separated string or an array of strings each.
    pub scope_claims: Vec<String>,
    /// Accept only tokens typed as access tokens (`typ` `at+jwt`, RFC 9068); by default a token may also be typed
    /// `JWT` or not at all, as most identity providers issue them.
    pub require_access_token_type: bool,
    /// The scopes a `401`'s challenge names (`scope="..."`, RFC 6750 section 3), which the MCP authorization spec
    /// has clients ask their provider for, before the metadata's `scopes_supported` (every scope a tool requires).
    /// Default: none named.
    pub challenge_scopes: Vec<crate::scope::Scope>,
    map_claims: Option<ClaimsMapper>,
    /// Tokens verified recently (see the `cache` module): this value's own (a clone starts with an empty one).
    cache: Arc<cache::TokenCache>,
}

type ClaimsMapper = Arc<dyn Fn(&VerifiedToken<'_>) -> Result<Caller, String> + Send + Sync>;

impl Clone for BearerAuth {
    /// The same settings, with a cache of its own.
    fn clone(&self) -> Self {
        BearerAuth {
            issuer: self.issuer.clone(),
            resource: self.resource.clone(),
            audiences: self.audiences.clone(),
            authorization_servers: self.authorization_servers.clone(),
            keys: self.keys.clone(),
            leeway_secs: self.leeway_secs,
            scope_claims: self.scope_claims.clone(),
            require_access_token_type: self.require_access_token_type,
            challenge_scopes: self.challenge_scopes.clone(),
            map_claims: self.map_claims.clone(),
            cache: Arc::new(cache::TokenCache::new()),
        }
    }
}

/// The longest token taken, in bytes: identity providers' access tokens are a few kilobytes (Entra ID's with a
/// full group list about 8 KiB); a longer one is refused as `malformed` before it is hashed or decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("issuer", &self.issuer)
            .field("resource", &self.resource)
            .field("audiences", &self.audiences)
            .field("authorization_servers", &self.authorization_servers)
            .field("keys", &self.keys)
            .field("leeway_secs", &self.leeway_secs)
            .field("scope_claims", &self.scope_claims)
            .field("require_access_token_type", &self.require_access_token_type)
            .field("challenge_scopes", &self.challenge_scopes)
            .field("map_claims", &self.map_claims.is_some())
            .finish()
    }
}

/// A token that passed every check: its subject, its id, the grant read from its scope claims, and all its claims,
/// for [`BearerAuth::map_claims`] to make a caller from.
#[derive(Debug)]
pub struct VerifiedToken<'a> {
    subject: &'a str,
    token_id: Option<&'a str>,
    grant: &'a Grant,
    claims: &'a serde_json::Map<String, serde_json::Value>,
}

impl<'a> VerifiedToken<'a> {
    /// The `sub` claim.
    pub fn subject(&self) -> &'a str {
        self.subject
    }

    /// The `jti` claim, if any.
    pub fn token_id(&self) -> Option<&'a str> {
        self.token_id
    }

    /// The scopes of the configured scope claims, foreign ones included (they grant nothing a tool does not
    /// require by exactly that name).
    pub fn grant(&self) -> &'a Grant {
        self.grant
    }

    /// Every claim of the token.
    pub fn claims(&self) -> &'a serde_json::Map<String, serde_json::Value> {
        self.claims
    }

    /// The caller the token stands for without a mapping of your own: its subject, holding its grant.
    pub fn default_caller(&self) -> Caller {
        Caller::new(self.subject, self.grant.clone())
    }
}

impl BearerAuth {
    /// Tokens from `issuer`, signed with `keys`, for the resource `resource`.
    pub fn new(
        issuer: impl Into<String>,
        resource: impl Into<String>,
        keys: VerificationKeys,
    ) -> Self {
        let issuer = issuer.into();
        BearerAuth {
            authorization_servers: vec![issuer.clone()],
            issuer,
            audiences: Vec::new(),
            resource: resource.into(),
            keys,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            scope_claims: vec!["scope".into(), "scp".into()],
            require_access_token_type: false,
            challenge_scopes: Vec::new(),
            map_claims: None,
            cache: Arc::new(cache::TokenCache::new()),
        }
    }

    /// The claims a token's scopes are read from (default `scope` and `scp`; Auth0's RBAC adds `permissions`,
    /// Entra ID's application permissions are in `roles`).
    pub fn scope_claims(mut self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scope_claims = claims.into_iter().map(Into::into).collect();
        self.cache = Arc::new(cache::TokenCache::new());
        self
    }

    /// The scopes a `401`'s challenge names: what a client should ask its provider for to use this server (say,
    /// the read-only ones), instead of every scope the metadata lists.
    pub fn challenge_scopes(
        mut self,
        scopes: impl IntoIterator<Item = crate::scope::Scope>,
    ) -> Self {
        self.challenge_scopes = scopes.into_iter().collect();
        self
    }

    /// Accepts only tokens typed `at+jwt` (RFC 9068).
    pub fn require_access_token_type(mut self, require: bool) -> Self {
        self.require_access_token_type = require;
        self.cache = Arc::new(cache::TokenCache::new());
        self
    }

    /// Makes the caller of a verified token with a function of your own (called once per token while it is kept
    /// among the verified ones, see [`TOKEN_CACHE_TTL`]): another identity (an `oid`, an email), a
    /// grant from roles or groups, attributes for the audit record (a tenant). An `Err` refuses the token
    /// (`401`, audited with the detail `claims_refused`); the error's message is not sent to the client but logged
    /// through `tracing` at `info`, so keep the token's claims out of it. A panic in the function refuses the token
    /// too, its message printed nowhere (this installs the panic hook of
    /// [`install_panic_hook`](crate::task::install_panic_hook)).
    ///
    /// ```
    /// # use secure_tools::serve::http::{BearerAuth, VerificationKeys};
    /// # let keys = VerificationKeys::hmac_secret(&[7; 32]).unwrap();
    /// let auth = BearerAuth::new("https://login.example.com", "https://mcp.example.com/mcp", keys)
    ///     .map_claims(|token| {
    ///         let tenant = token.claims().get("tid").and_then(|t| t.as_str()).ok_or("no tenant")?;
    ///         Ok::<_, &str>(token.default_caller().with_attribute("tenant", tenant))
    ///     });
    /// ```
    pub fn map_claims<F, E>(mut self, map: F) -> Self
    where
        F: Fn(&VerifiedToken<'_>) -> Result<Caller, E> + Send + Sync + 'static,
        E: std::fmt::Display,
    {
        crate::call::panic::install();
        self.map_claims = Some(Arc::new(move |token| map(token).map_err(|e| e.to_string())));
        self.cache = Arc::new(cache::TokenCache::new());
        self
    }

    /// The audiences a token may name in `aud` instead of the resource URL (see [`audiences`](Self::audiences)); an
    /// empty one is left out. (An empty issuer, given to [`new`](Self::new), takes no token.)
    pub fn audiences(mut self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        // An empty audience would accept tokens naming `aud: ""` (red-team finding, through the settings).
        self.audiences = audiences
            .into_iter()
            .map(Into::into)
            .filter(|audience: &String| !audience.is_empty())
            .collect();
        self.cache = Arc::new(cache::TokenCache::new());
        self
    }

    /// The authorization servers listed in the protected resource metadata.
    pub fn authorization_servers(mut self, servers: impl IntoIterator<Item = String>) -> Self {
        self.authorization_servers = servers.into_iter().collect();
        self
    }

    /// `scheme://authority` of the resource URL.
    pub fn base_url(&self) -> &str {
        let after_scheme = self.resource.find("://").map_or(0, |i| i + 3);
        match self.resource[after_scheme..].find('/') {
            Some(i) => &self.resource[..after_scheme + i],
            None => &self.resource,
        }
    }

    /// The issuer whose tokens are taken.
    #[cfg(feature = "redis")]
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The URL of the protected resource metadata document, named in every challenge.
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.base_url(), METADATA_PATH)
    }

    /// Checks an access token with the keys held now; on success, the caller it stands for.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        self.authenticate_now(token).map(|verified| verified.caller)
    }

    fn authenticate_now(&self, token: &str) -> Result<Authenticated, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let keys = self.keys.current();
        let now = cache::now();
        if let Some(verified) = self.cache.get(token, &keys, now) {
            return Ok(verified);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| classify(e.kind()))?;
        if names_unsupported_member(token) {
            return Err(TokenError::UnsupportedHeader);
        }
        let candidates = VerificationKeys::select(&keys, header.kid.as_deref());
        // Those that take the token's algorithm, tried in turn until one's signature matches: what that one says
        // of the token (expired, say) is the verdict. None that takes it: the first says why.
        let mut taking = candidates
            .iter()
            .filter(|key| key.algorithms.contains(&header.alg))
            .peekable();
        let first = match taking.peek() {
            Some(key) => *key,
            None => candidates.first().ok_or(TokenError::UnknownKey)?,
        };
        let mut outcome = self.verify_with(token, &header, first);
        for key in taking.skip(1) {
            if !matches!(outcome, Err(TokenError::BadSignature)) {
                break;
            }
            outcome = self.verify_with(token, &header, key);
        }
        let (verified, expires) = outcome?;
        self.cache.put(token, &verified, expires, &keys, now);
        Ok(verified)
    }

    /// What an event stream opened with `token` is checked again with ([`recheck_stream`](Self::recheck_stream)).
    pub(crate) fn stream_token(&self, token: &str) -> StreamToken {
        StreamToken {
            token: token.into(),
            keys: self.keys.current(),
        }
    }

    /// Checks an open event stream's token again if the keys held have changed since it was last checked: a key
    /// the provider withdrew (a leaked one) ends the streams its tokens opened, as it refuses their requests.
    pub(crate) fn recheck_stream(&self, stream: &mut StreamToken) -> Result<(), TokenError> {
        let keys = self.keys.current();
        if Arc::ptr_eq(&keys, &stream.keys) {
            return Ok(());
        }
        self.authenticate_now(&stream.token)?;
        stream.keys = keys;
        Ok(())
    }

    /// Checks an access token, as [`verify`](Self::verify); when the keys come from a JWKS URL and the token names
    /// a key they do not hold, fetches the JWKS again first (at most once per refetch interval).
    pub async fn verify_fetching(&self, token: &str) -> Result<Caller, TokenError> {
        self.authenticate(token)
            .await
            .map(|verified| verified.caller)
    }

    /// Checks an access token as [`verify_fetching`](Self::verify_fetching) does, and also gives the token's id.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, TokenError> {
        // Every wait for a fetch this request makes ends by one deadline (red-team finding: with the keys stale, a
        // token naming a key not held waited a second for each of two waits on one fetch).
        let deadline = self.keys.fetch_deadline();
        self.keys.refresh_if_stale(deadline).await;
        match self.authenticate_now(token) {
            Err(TokenError::UnknownKey) if self.keys.is_fetched() => {
                // Whether this request fetched or waited for another's fetch, the keys held now decide.
                self.keys.refetch(deadline).await;
                self.authenticate_now(token)
            }
            other => other,
        }
    }

    fn verify_with(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        key: &VerificationKey,
    ) -> Result<(Authenticated, u64), TokenError> {
        check_header(header, self.require_access_token_type)?;
        // An empty issuer takes no token (one naming `iss: ""` would match it).
        if self.issuer.is_empty() {
            return Err(TokenError::WrongIssuer);
        }
        if !key.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        if self.audiences.is_empty() {
            validation.set_audience(&[&self.resource]);
        } else {
            validation.set_audience(&self.audiences);
        }
        // Claims with a key written twice are malformed (red-team finding: a repeated `scope` took its last value,
        // a repeated `sub` was refused by jsonwebtoken's own reading).
        let data =
            jsonwebtoken::decode::<crate::strict_json::StrictObject>(token, &key.key, &validation)
                .map_err(|e| match e.kind() {
                    // A key that cannot verify at all (an EC point off its curve, an RSA key the backend refuses)
                    // verifies nothing: as one whose signature does not match, so that the next key under the
                    // token's `kid` is tried (a red team's: one broken key hid the valid one after it).
                    ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::Provider(_) => TokenError::BadSignature,
                    kind => classify(kind),
                })?;
        let claims = data.claims.0;
        // One string (RFC 7519 section 4.1.1), equal to the issuer; jsonwebtoken takes an array holding it too
        // (red-team finding).
        if !matches!(claims.get("iss"), Some(serde_json::Value::String(_))) {
            return Err(TokenError::Malformed);
        }
        // A token bound to a client's key (RFC 7800's `cnf`: DPoP, RFC 9449, or a certificate, RFC 8705) is worth
        // nothing without proof of that key, which this server does not ask for: taken as a plain bearer token, a
        // stolen one would work (RFC 9449 section 7.2).
        if claims.contains_key("cnf") {
            return Err(TokenError::SenderConstrained);
        }
        let subject = match claims.get("sub") {
            Some(serde_json::Value::String(sub)) if !sub.is_empty() => sub.as_str(),
            Some(serde_json::Value::String(_)) | None => return Err(TokenError::MissingClaim),
            Some(_) => return Err(TokenError::Malformed),
        };
        let token_id = match claims.get("jti") {
            Some(serde_json::Value::String(jti)) if !jti.is_empty() => Some(jti.as_str()),
            Some(serde_json::Value::String(_)) | None => None,
            Some(_) => return Err(TokenError::Malformed),
        };
        // `exp` is required and was checked as a number of seconds.
        let expires = claims
            .get("exp")
            .and_then(|exp| exp.as_f64())
            .map_or(0, |exp| exp.max(0.0) as u64);
        let grant = self.grant_of(&claims)?;
        let verified = VerifiedToken {
            subject,
            token_id,
            grant: &grant,
            claims: &claims,
        };
        let caller = match &self.map_claims {
            // A panic in the mapping (a claim indexed that the token lacks) would unwind through the connection's
            // task: no answer, no audit record. It refuses the token instead, its message unprinted (it may quote
            // the token's claims).
            Some(map) => match crate::call::panic::quietly(|| map(&verified)) {
                Ok(Ok(caller)) => caller,
                Ok(Err(reason)) => {
                    tracing::info!(%reason, "token refused by the claims mapping");
                    return Err(TokenError::ClaimsRefused);
                }
                Err(()) => {
                    tracing::info!("token refused: the claims mapping panicked");
                    return Err(TokenError::ClaimsRefused);
                }
            },
            None => verified.default_caller(),
        };
        Ok((
            Authenticated {
                caller,
                token_id: token_id.map(str::to_owned),
                // An `exp` past what the clock can hold (2^63 s and more) ends in the year 9999 (red-team finding:
                // the addition panicked the request).
                valid_until: std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(
                        expires
                            .saturating_add(self.leeway_secs)
                            .min(LATEST_TOKEN_END_SECS),
                    ),
            },
            expires,
        ))
    }

    /// The grant of a token's scope claims: each a space-separated string (RFC 6749 section 3.3: spaces only, so a
    /// comma is part of a scope name, and such a name is foreign here) or an array of strings. Scopes that are not
    /// names here are ignored; a claim of another type makes the token malformed.
    fn grant_of(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Grant, TokenError> {
        let mut items: Vec<&str> = Vec::new();
        for name in &self.scope_claims {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(text)) => items.extend(text.split(' ')),
                Some(serde_json::Value::Array(values)) => {
                    for value in values {
                        match value {
                            serde_json::Value::String(text) => items.push(text),
                            _ => return Err(TokenError::InvalidScope),
                        }
                    }
                }
                Some(_) => return Err(TokenError::InvalidScope),
            }
        }
        Ok(Grant::from_token_scopes(items).0)
    }
}

/// A verified access token: the caller it stands for, and its id.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Authenticated {
    /// The token's subject and scopes.
    pub caller: Caller,
    /// The token's `jti`, when it has one: recorded with each call, so a call can be traced to the token used.
    pub token_id: Option<String>,
    /// When the token stops being accepted: its `exp` and the leeway. An event stream it opened ends then.
    pub valid_until: std::time::SystemTime,
}

/// An open event stream's token, and the keys it was last checked with.
pub(crate) struct StreamToken {
    token: Box<str>,
    keys: Arc<[keys::VerificationKey]>,
}

/// The end of the year 9999, in seconds since the epoch: the latest end a token's is put at (a `SystemTime` past
/// what the platform holds panics when made).
const LATEST_TOKEN_END_SECS: u64 = 253_402_300_799;

/// Whether the token's header names a member [`check_header`] refuses, whatever its value: one given as `null`
/// reads as absent once parsed (red-team note: `"crit": null` passed), and RFC 7515 gives none of them a `null`.
/// Read only once the header has parsed (so it is base64url of one JSON object).
fn names_unsupported_member(token: &str) -> bool {
    use base64::Engine as _;
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json).is_ok_and(
        |header| {
            ["crit", "b64", "zip", "enc"]
                .iter()
                .any(|member| header.contains_key(*member))
        },
    )
}

/// The header checks RFC 8725 and RFC 7515 ask of a verifier: a critical extension it does not understand (`crit`),
/// unencoded payloads (`b64`), compression (`zip`) or encryption (`enc`) are refused; and the token must be typed
/// as an access token (`at+jwt`, RFC 9068), or `JWT`, or untyped unless `at+jwt` is required, so that an ID token or
/// a logout token signed by the same issuer is not taken for an access token.
fn check_header(header: &jsonwebtoken::Header, require_at_jwt: bool) -> Result<(), TokenError> {
    // A nested token (`cty: JWT`, RFC 7519 section 5.2) signs another JWT, to be verified in turn, as its payload:
    // not supported, and its payload is no set of claims (red-team finding: it was read as one).
    let nested = header.cty.as_deref().is_some_and(|cty| {
        let cty = cty.to_ascii_lowercase();
        cty == "jwt" || cty == "application/jwt"
    });
    if nested
        || header.crit.is_some()
        || header.enc.is_some()
        || header.zip.is_some()
        || header
            .extras
            .get::<serde_json::Value>("b64")
            .map_or(true, |b64| b64.is_some())
    {
        return Err(TokenError::UnsupportedHeader);
    }
    let typ = header.typ.as_deref().map(str::to_ascii_lowercase);
    let accepted = match typ.as_deref() {
        Some("at+jwt") | Some("application/at+jwt") => true,
        // RFC 7515 section 4.1.9: `application/` may be left out, so `application/jwt` is `JWT`.
        Some("jwt") | Some("application/jwt") | None => !require_at_jwt,
        Some(_) => false,
    };
    if !accepted {
        return Err(TokenError::WrongType);
    }
    Ok(())
}

/// Why a token was refused; each answered `401` with `error="invalid_token"`, and audited by its
/// [`code`](TokenError::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, or a claim of the wrong type.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token has the wrong issuer")]
    WrongIssuer,
    /// `aud` does not name this server.
    #[error("the token is not meant for this server")]
    WrongAudience,
    /// The header's `alg` is not one the key accepts (this includes `none`).
    #[error("the token's algorithm is not accepted")]
    AlgorithmNotAllowed,
    /// No configured key has the token's `kid`.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// `exp`, `iss`, `aud` or `sub` is missing.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// A scope claim is neither a string nor an array of strings.
    #[error("the token's scope claim is invalid")]
    InvalidScope,
    /// The token is not typed as an access token (`typ`).
    #[error("the token is not an access token")]
    WrongType,
    /// The header asks for something this verifier does not do (`crit`, `b64`, `zip`, `enc`).
    #[error("the token's header has parameters this server does not support")]
    UnsupportedHeader,
    /// The claims mapping refused the token.
    #[error("the token's claims do not make a caller")]
    ClaimsRefused,
    /// The token is bound to a client's key (`cnf`), whose proof this server does not check.
    #[error("the token is bound to a client key, which this server does not check")]
    SenderConstrained,
}

impl TokenError {
    /// A stable code for audit records.
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::MissingClaim => "missing_claim",
            TokenError::InvalidScope => "invalid_scope",
            TokenError::WrongType => "wrong_type",
            TokenError::UnsupportedHeader => "unsupported_header",
            TokenError::ClaimsRefused => "claims_refused",
            TokenError::SenderConstrained => "sender_constrained",
        }
    }
}

fn classify(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => TokenError::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        // A header naming an algorithm that does not exist (`none`) fails to parse as JSON of the header type.
        ErrorKind::Json(e) if e.to_string().contains("unknown variant") => {
            TokenError::AlgorithmNotAllowed
        }
        _ => TokenError::Malformed,
    }
}
