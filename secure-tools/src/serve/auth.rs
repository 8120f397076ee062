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
//! Keys come from a static key, a JWKS file, or a JWKS URL ([`VerificationKeys::jwks_url`]): fetched at start, and
//! fetched again when a token names a `kid` the set does not hold (the issuer rotated its keys), at most once per
//! [`DEFAULT_JWKS_REFETCH_INTERVAL`] after the first refetch, so a flood of tokens with made-up `kid`s cannot turn into a flood of fetches.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

use crate::call::Caller;
use crate::scope::{Grant, Scope};

/// The clock skew tolerated on `exp` and `nbf`, in seconds, unless configured.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// The shortest time between two fetches of a JWKS URL, unless configured.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long a JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The keys access tokens are verified with.
#[derive(Clone)]
pub struct VerificationKeys {
    keys: Arc<[VerificationKey]>,
    remote: Option<Arc<RemoteJwks>>,
}

/// A JWKS fetched from a URL, and what is needed to fetch it again.
struct RemoteJwks {
    url: String,
    /// The TLS configuration for `https://` URLs: an explicit `ring` provider, the `webpki-roots` trust roots
    /// and any extra CA configured.
    tls: Arc<rustls::ClientConfig>,
    /// The keys of the last successful fetch.
    keys: RwLock<Arc<[VerificationKey]>>,
    /// When the last refetch started (the fetch at start does not count, so a rotation right after start is
    /// seen); held across a fetch, so concurrent requests wait for one fetch.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
    fetches: AtomicU64,
}

/// How many redirects a JWKS fetch follows.
const MAX_JWKS_REDIRECTS: usize = 3;

impl RemoteJwks {
    async fn fetch(&self) -> Result<Arc<[VerificationKey]>, KeyError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let error = |reason: String| KeyError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let body = tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.fetch_following_redirects())
            .await
            .map_err(|_| error(format!("no answer within {JWKS_FETCH_TIMEOUT:?}")))?
            .map_err(error)?;
        let text = String::from_utf8(body).map_err(|_| error("not UTF-8".into()))?;
        parse_jwks(&text)
    }

    async fn fetch_following_redirects(&self) -> Result<Vec<u8>, String> {
        let mut uri = jwks_uri(&self.url)?;
        for _ in 0..=MAX_JWKS_REDIRECTS {
            match get_once(&uri, &self.tls).await? {
                Fetched::Body(body) => return Ok(body),
                Fetched::Redirect(location) => {
                    let next = if location.starts_with('/') {
                        format!(
                            "{}://{}{location}",
                            uri.scheme_str().unwrap_or("https"),
                            uri.authority().map_or("", |a| a.as_str())
                        )
                    } else {
                        location
                    };
                    uri = jwks_uri(&next).map_err(|e| format!("redirected to {next}: {e}"))?;
                }
            }
        }
        Err(format!("more than {MAX_JWKS_REDIRECTS} redirects"))
    }
}

/// What one GET of a JWKS URL gave.
enum Fetched {
    Body(Vec<u8>),
    Redirect(String),
}

/// Parses a JWKS URL and checks its scheme: `https://`, or `http://` to a loopback host only (keys fetched in
/// clear over a network could be swapped on the way).
fn jwks_uri(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("the URL has no host")?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(
            "plain http is allowed for loopback hosts only (keys fetched in clear could be swapped); use https"
                .into(),
        ),
        _ => Err("not an http(s) URL".into()),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Aborts a spawned task when dropped (the HTTP connection of a fetch that timed out or finished).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One GET over a new connection, HTTP/1.1, TLS for `https`.
async fn get_once(uri: &hyper::Uri, tls: &Arc<rustls::ClientConfig>) -> Result<Fetched, String> {
    use http_body_util::BodyExt;

    let host = uri.host().ok_or("the URL has no host")?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((bare_host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host, |a| a.as_str()),
        )
        .header(
            hyper::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .header(hyper::header::USER_AGENT, "secure-tools-jwks")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (response, _connection) = if https {
        let name = rustls_pki_types::ServerName::try_from(bare_host.to_owned())
            .map_err(|e| format!("not a TLS server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(stream, request).await?
    } else {
        send(tcp, request).await?
    };
    let status = response.status();
    if status.is_redirection()
        && let Some(location) = response.headers().get(hyper::header::LOCATION)
    {
        let location = location
            .to_str()
            .map_err(|_| "a redirect Location that is not text")?;
        return Ok(Fetched::Redirect(location.to_owned()));
    }
    if !status.is_success() {
        return Err(format!("HTTP status {status}"));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("larger than {MAX_JWKS_BYTES} bytes")
            } else {
                e.to_string()
            }
        })?;
    Ok(Fetched::Body(body.to_bytes().to_vec()))
}

async fn send<S>(
    stream: S,
    request: hyper::Request<http_body_util::Empty<hyper::body::Bytes>>,
) -> Result<(hyper::Response<hyper::body::Incoming>, AbortOnDrop), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // The connection runs until the caller has read the body and drops the guard.
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok((response, connection))
}

#[derive(Clone)]
struct VerificationKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerificationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        let keys: Vec<_> = current
            .iter()
            .map(|k| (k.kid.as_deref().unwrap_or("-"), &k.algorithms))
            .collect();
        f.debug_struct("VerificationKeys")
            .field("keys", &keys)
            .field("url", &self.remote.as_ref().map(|r| &r.url))
            .finish()
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
        /// The URL.
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
            remote: None,
        })
    }

    /// The signing keys of the JWKS document at `url`, fetched now; fetched again when a token names a `kid` the
    /// set does not hold, at most once per [`DEFAULT_JWKS_REFETCH_INTERVAL`] (see
    /// [`refetch_interval`](Self::refetch_interval)). A failed refetch keeps the keys held.
    ///
    /// `https://` URLs are checked against the Mozilla roots of `webpki-roots`; [`jwks_url_with_ca`](Self::jwks_url_with_ca)
    /// trusts more CAs. Plain `http://` is accepted for loopback hosts only (`localhost`, `127.0.0.0/8`, `::1`,
    /// e.g. a sidecar): keys fetched in clear over a network could be swapped on the way. Each fetch takes at most
    /// [`JWKS_FETCH_TIMEOUT`], reads at most [`MAX_JWKS_BYTES`] and follows at most 3 redirects, each checked as
    /// the URL is. TLS uses rustls with an explicit `ring` provider: no process-wide provider is needed or set.
    pub async fn jwks_url(url: &str) -> Result<Self, KeyError> {
        Self::jwks_url_with_ca(url, &[]).await
    }

    /// As [`jwks_url`](Self::jwks_url), also trusting the CA certificates in `ca_pem` (PEM, one or more
    /// `CERTIFICATE` blocks; empty for none), e.g. a private identity provider's CA.
    pub async fn jwks_url_with_ca(url: &str, ca_pem: &[u8]) -> Result<Self, KeyError> {
        use rustls_pki_types::pem::PemObject;

        let fetch_error = |reason: String| KeyError::Fetch {
            url: url.to_owned(),
            reason,
        };
        jwks_uri(url).map_err(fetch_error)?;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if !ca_pem.is_empty() {
            let mut added = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
                let cert =
                    cert.map_err(|e| KeyError::Invalid(format!("JWKS CA certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| KeyError::Invalid(format!("JWKS CA certificate: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(KeyError::Invalid(
                    "JWKS CA: no CERTIFICATE in the PEM".into(),
                ));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| fetch_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let remote = RemoteJwks {
            url: url.to_owned(),
            tls: Arc::new(tls),
            keys: RwLock::new(Arc::from([])),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            fetches: AtomicU64::new(0),
        };
        let keys = remote.fetch().await?;
        *remote.keys.write().unwrap_or_else(PoisonError::into_inner) = keys.clone();
        Ok(VerificationKeys {
            keys,
            remote: Some(Arc::new(remote)),
        })
    }

    /// The shortest time between two fetches of a JWKS URL (default [`DEFAULT_JWKS_REFETCH_INTERVAL`]). Call it
    /// before cloning the keys; it has no effect on other key sources.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        if let Some(remote) = self.remote.take() {
            self.remote = Some(match Arc::try_unwrap(remote) {
                Ok(mut remote) => {
                    remote.min_interval = interval;
                    Arc::new(remote)
                }
                Err(shared) => shared,
            });
        }
        self
    }

    /// How many times the JWKS URL has been fetched, successfully or not (0 for other key sources).
    pub fn fetch_count(&self) -> u64 {
        self.remote
            .as_ref()
            .map_or(0, |r| r.fetches.load(Ordering::Relaxed))
    }

    /// The keys held now.
    fn current(&self) -> Arc<[VerificationKey]> {
        match &self.remote {
            Some(remote) => remote
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            None => self.keys.clone(),
        }
    }

    /// Fetches the JWKS URL again, unless it was fetched less than the refetch interval ago.
    async fn refetch(&self) {
        let Some(remote) = &self.remote else {
            return;
        };
        let mut last = remote.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < remote.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        match remote.fetch().await {
            Ok(keys) => *remote.keys.write().unwrap_or_else(PoisonError::into_inner) = keys,
            Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the keys held"),
        }
    }

    /// The JWKS document in a file.
    pub fn jwks_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
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
            remote: None,
        }
    }

    /// The key for a token: the one its `kid` names, or, for a token without `kid`, the only key there is.
    fn select<'k>(keys: &'k [VerificationKey], kid: Option<&str>) -> Option<&'k VerificationKey> {
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

/// Bearer authentication settings: who issues tokens, which keys sign them, and this server's resource URL, which
/// tokens must name as their audience.
#[derive(Clone)]
#[non_exhaustive]
pub struct BearerAuth {
    /// The expected `iss`.
    pub issuer: String,
    /// This server's resource URL (RFC 8707 / RFC 9728), e.g. `https://mcp.example.com/mcp`: the `aud` tokens must
    /// carry, and the `resource` of the protected resource metadata.
    pub resource: String,
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
    map_claims: Option<ClaimsMapper>,
}

type ClaimsMapper = Arc<dyn Fn(&VerifiedToken<'_>) -> Result<Caller, String> + Send + Sync>;

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("issuer", &self.issuer)
            .field("resource", &self.resource)
            .field("authorization_servers", &self.authorization_servers)
            .field("keys", &self.keys)
            .field("leeway_secs", &self.leeway_secs)
            .field("scope_claims", &self.scope_claims)
            .field("require_access_token_type", &self.require_access_token_type)
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
            resource: resource.into(),
            keys,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            scope_claims: vec!["scope".into(), "scp".into()],
            require_access_token_type: false,
            map_claims: None,
        }
    }

    /// The claims a token's scopes are read from (default `scope` and `scp`; Auth0's RBAC adds `permissions`,
    /// Entra ID's application permissions are in `roles`).
    pub fn scope_claims(mut self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scope_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts only tokens typed `at+jwt` (RFC 9068).
    pub fn require_access_token_type(mut self, require: bool) -> Self {
        self.require_access_token_type = require;
        self
    }

    /// Makes the caller of a verified token with a function of your own: another identity (an `oid`, an email), a
    /// grant from roles or groups, attributes for the audit record (a tenant). An `Err` refuses the token
    /// (`401`, detail `claims_refused`; the message goes to the audit record's log, not to the client).
    ///
    /// ```
    /// # use secure_tools::serve::auth::{BearerAuth, VerificationKeys};
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
        self.map_claims = Some(Arc::new(move |token| map(token).map_err(|e| e.to_string())));
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

    /// The URL of the protected resource metadata document, named in every challenge.
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.base_url(), METADATA_PATH)
    }

    /// Checks an access token with the keys held now; on success, the caller it stands for.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        self.authenticate_now(token).map(|verified| verified.caller)
    }

    fn authenticate_now(&self, token: &str) -> Result<Authenticated, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| classify(e.kind()))?;
        let keys = self.keys.current();
        let key =
            VerificationKeys::select(&keys, header.kid.as_deref()).ok_or(TokenError::UnknownKey)?;
        self.verify_with(token, &header, key)
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
        match self.authenticate_now(token) {
            Err(TokenError::UnknownKey) if self.keys.remote.is_some() => {
                // Whether this request fetched or waited for another's fetch, the keys held now decide.
                self.keys.refetch().await;
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
    ) -> Result<Authenticated, TokenError> {
        check_header(header, self.require_access_token_type)?;
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
        validation.set_audience(&[&self.resource]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            &validation,
        )
        .map_err(|e| classify(e.kind()))?;
        let claims = data.claims;
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
        let grant = self.grant_of(&claims)?;
        let verified = VerifiedToken {
            subject,
            token_id,
            grant: &grant,
            claims: &claims,
        };
        let caller = match &self.map_claims {
            Some(map) => map(&verified).map_err(|reason| {
                tracing::info!(%reason, "token refused by the claims mapping");
                TokenError::ClaimsRefused
            })?,
            None => verified.default_caller(),
        };
        Ok(Authenticated {
            caller,
            token_id: token_id.map(str::to_owned),
        })
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
}

/// The header checks RFC 8725 and RFC 7515 ask of a verifier: a critical extension it does not understand (`crit`),
/// unencoded payloads (`b64`), compression (`zip`) or encryption (`enc`) are refused; and the token must be typed
/// as an access token (`at+jwt`, RFC 9068), or `JWT`, or untyped unless `at+jwt` is required, so that an ID token or
/// a logout token signed by the same issuer is not taken for an access token.
fn check_header(header: &jsonwebtoken::Header, require_at_jwt: bool) -> Result<(), TokenError> {
    if header.crit.is_some()
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
        Some("jwt") | None => !require_at_jwt,
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

/// The path of the protected resource metadata document (RFC 9728 section 3).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The bearer token of a request: the `Authorization: Bearer` header, and nothing else. Two `Authorization`
/// headers are ambiguous (RFC 6750 section 2: one method, once), as is a header together with a token in the query.
pub(crate) fn bearer_token<'a>(
    headers: &'a axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Credential<'a> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credential::None;
    };
    if values.next().is_some() || query_has_token(uri) {
        return Credential::Ambiguous;
    }
    let Ok(text) = value.to_str() else {
        return Credential::Malformed;
    };
    let mut parts = text.splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("").trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Credential::Malformed;
    }
    Credential::Token(token)
}

/// What a request carries to authenticate with.
pub(crate) enum Credential<'a> {
    /// Nothing (a token in the query string does not count).
    None,
    /// A bearer token.
    Token(&'a str),
    /// An `Authorization` header that is not a bearer token.
    Malformed,
    /// More than one credential.
    Ambiguous,
}

/// Whether the query string carries an `access_token` (ignored, and noted in the audit record).
pub(crate) fn query_has_token(uri: &axum::http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    })
}

/// The `WWW-Authenticate` value of a 401: `error="invalid_token"` when a token was presented (RFC 6750 section 3).
pub(crate) fn unauthorized_challenge(auth: &BearerAuth, token_presented: bool) -> String {
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", auth.metadata_url());
    if token_presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    challenge
}

/// The `WWW-Authenticate` value of a 403 for a valid token short of scopes.
///
/// `error_description` is the refusal's code (`missing_scope:files.write`) when it cannot be mistaken for another
/// parameter (clients find parameters anywhere in the header, so it must not hold `=`), else a sentence.
pub(crate) fn insufficient_scope_challenge(
    auth: &BearerAuth,
    scopes: &[String],
    code: &str,
) -> String {
    let description = if code.contains('=') {
        "the access token lacks a scope this tool requires"
    } else {
        code
    };
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"{}\"",
        scopes.join(" "),
        auth.metadata_url(),
        description
    )
}

/// The protected resource metadata document (RFC 9728 section 2).
pub(crate) fn resource_metadata(
    auth: &BearerAuth,
    scopes_supported: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "resource": auth.resource,
        "authorization_servers": auth.authorization_servers,
        "scopes_supported": scopes_supported,
        "bearer_methods_supported": ["header"],
    })
}

/// The union of the scopes a tool set's tools require, sorted.
pub(crate) fn scopes_supported<'a>(scopes: impl Iterator<Item = &'a Scope>) -> Vec<String> {
    let mut set: Vec<String> = scopes
        .map(|s| s.as_str().to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    set.sort();
    set
}

/// The usable signing keys of a JWKS document.
fn parse_jwks(text: &str) -> Result<Arc<[VerificationKey]>, KeyError> {
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

#[cfg(test)]
mod tests {
    use super::jwks_uri;

    #[test]
    fn jwks_urls_are_https_or_plain_http_to_loopback() {
        for ok in [
            "https://issuer.example/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://127.1.2.3/jwks.json",
            "http://localhost/jwks.json",
            "http://[::1]:9000/jwks.json",
        ] {
            assert!(jwks_uri(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://issuer.example/jwks.json",
            "http://10.0.0.1/jwks.json",
            "http://localhost.evil.example/jwks.json",
            "ftp://127.0.0.1/jwks.json",
            "/jwks.json",
        ] {
            assert!(jwks_uri(refused).is_err(), "{refused}");
        }
    }
}
