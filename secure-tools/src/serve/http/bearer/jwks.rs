//! JWKS by URL (feature `jwks`): the key set fetched over HTTPS at start, and again when a token names a key it
//! does not hold, with a small hyper client on rustls (explicit `ring` provider) and the `webpki-roots` trust roots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::keys::{KeyError, VerificationKey, VerificationKeys, parse_jwks};
use crate::serve::http::is_loopback;
use crate::serve::settings::masked_url;

/// The shortest time between two fetches of a JWKS URL, unless configured.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The longest a fetched JWKS is used before it is fetched again, unless configured: a key the identity provider
/// removed (a leaked one, say) stops being accepted within this time, even when no token names a new key.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// The longest the keys of a JWKS URL are used when they cannot be fetched again, unless configured: past it no
/// token is accepted until a fetch succeeds. A key the identity provider removed stops being accepted within the
/// maximum age while its URL answers; this bounds how long it stays accepted when the URL fails (an outage, a
/// blocked path, a set of keys this server cannot use), at the cost of refusing every token after a day of them.
pub const DEFAULT_JWKS_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request that finds the keys older than their maximum age waits for them to be fetched again, before it
/// is checked against the keys held: a provider that answers at once has a removed key refused from that very
/// request on; one slow to answer delays the requests that wait by this much at most. Once a fetch has failed, no
/// request waits until one succeeds (a provider down does not slow every request down).
pub const JWKS_STALE_WAIT: Duration = Duration::from_secs(1);
/// The largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// A JWKS fetched from a URL, and what is needed to fetch it again.
pub(super) struct RemoteJwks {
    pub(super) url: String,
    /// The TLS configuration for `https://` URLs: an explicit `ring` provider, the `webpki-roots` trust roots
    /// and any extra CA configured.
    tls: Arc<rustls::ClientConfig>,
    /// The keys of the last successful fetch.
    keys: RwLock<Arc<[VerificationKey]>>,
    /// When the last refetch started (the fetch at start does not count, so a rotation right after start is
    /// seen); held across a fetch, so concurrent requests wait for one fetch.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
    /// When the keys held were fetched, and how long they are used before a fetch in the background.
    fetched: std::sync::Mutex<Instant>,
    max_age: Duration,
    /// How long past their fetch the keys are used at all (when fetches fail).
    max_stale: Duration,
    /// The keys went stale, and it was said (once).
    stale_said: std::sync::atomic::AtomicBool,
    /// A fetch in the background is under way.
    refreshing: std::sync::atomic::AtomicBool,
    /// Told when a fetch in the background has ended.
    refreshed: tokio::sync::Notify,
    /// The last fetch failed: requests finding the keys stale do not wait for the next.
    failing: std::sync::atomic::AtomicBool,
    fetches: AtomicU64,
}

/// How many redirects a JWKS fetch follows.
const MAX_JWKS_REDIRECTS: usize = 3;

impl RemoteJwks {
    /// The JWKS at `url`, with the default intervals, not fetched yet.
    fn unfetched(url: &str, tls: rustls::ClientConfig) -> Self {
        RemoteJwks {
            url: url.to_owned(),
            tls: Arc::new(tls),
            keys: RwLock::new(Arc::from([])),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            fetched: std::sync::Mutex::new(Instant::now()),
            max_age: DEFAULT_JWKS_MAX_AGE,
            max_stale: DEFAULT_JWKS_MAX_STALE,
            stale_said: std::sync::atomic::AtomicBool::new(false),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            refreshed: tokio::sync::Notify::new(),
            failing: std::sync::atomic::AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        }
    }

    async fn fetch(&self) -> Result<Arc<[VerificationKey]>, KeyError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let error = |reason: String| KeyError::Fetch {
            url: masked_url(&self.url).into_owned(),
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
                    let next = resolve_location(&uri, &location)?;
                    let next_uri = jwks_uri(&next)
                        .map_err(|e| format!("redirected to {}: {e}", masked_url(&next)))?;
                    // A key set asked for over TLS is never fetched in clear (not even from a loopback host).
                    if uri.scheme_str() == Some("https") && next_uri.scheme_str() != Some("https") {
                        return Err(format!("redirected from https to {}", masked_url(&next)));
                    }
                    uri = next_uri;
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

/// A redirect's `Location` resolved against the URL it answered (RFC 9110 section 10.2.2 allows a relative
/// reference: `jwks.json`, `../keys`, `?v=2`; red-team finding: they were refused as "not a URL"), by the `url`
/// crate's RFC 3986 resolution: a reference within the same authority keeps its credentials, one naming another
/// (`//host/...`, an absolute URL) does not carry them over; a fragment is dropped.
fn resolve_location(base: &hyper::Uri, location: &str) -> Result<String, String> {
    let base = url::Url::parse(&base.to_string()).map_err(|e| format!("not a URL: {e}"))?;
    let mut next = base.join(location).map_err(|e| {
        format!(
            "redirected to {}: not a URL: {e}",
            masked_url(location).escape_debug()
        )
    })?;
    next.set_fragment(None);
    Ok(next.into())
}

/// Parses a JWKS URL and checks its scheme: `https://`, or `http://` to a loopback host only (keys fetched in
/// clear over a network could be swapped on the way).
fn jwks_uri(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("the URL has no host")?;
    // Credentials sent as HTTP Basic ones: a user name holding `:` (RFC 7617), or either part not UTF-8 once
    // decoded, would be sent as other credentials than written (a red team's: `us%3Aer` went as user `us`).
    if let Some((userinfo, _)) = uri.authority().and_then(|a| a.as_str().rsplit_once('@')) {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let decoded = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|text| text.into_owned())
        };
        match (decoded(user), decoded(password)) {
            (Ok(user), Ok(_)) if !user.contains(':') => {}
            _ => {
                return Err(
                    "its credentials (`USER:PASSWORD@`) are not a user name without `:` and a password, in UTF-8 \
                     once percent-decoded: they cannot be sent as written"
                        .into(),
                );
            }
        }
    }
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
    // The URL's credentials (`USER:PASSWORD@`) go as HTTP Basic credentials, decoded, never in `Host`, which
    // proxies log (a red team's: they were sent there, and not as credentials).
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let (userinfo, host_and_port) = match authority.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, authority),
    };
    let mut request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, host_and_port)
        .header(
            hyper::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .header(hyper::header::USER_AGENT, "secure-tools-jwks");
    if let Some(userinfo) = userinfo {
        use base64::Engine as _;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            decode(user),
            decode(password)
        ));
        let mut value = hyper::header::HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| "credentials that cannot be sent")?;
        value.set_sensitive(true);
        request = request.header(hyper::header::AUTHORIZATION, value);
    }
    let request = request
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

impl VerificationKeys {
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
            url: masked_url(url).into_owned(),
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
        let remote = RemoteJwks::unfetched(url, tls);
        let keys = remote.fetch().await?;
        *remote.keys.write().unwrap_or_else(PoisonError::into_inner) = keys.clone();
        Ok(VerificationKeys {
            keys,
            remote: Some(Arc::new(remote)),
        })
    }

    /// The shortest time between two fetches of a JWKS URL (default [`DEFAULT_JWKS_REFETCH_INTERVAL`]). Call it
    /// before cloning the keys; it has no effect on other key sources.
    pub fn refetch_interval(self, interval: Duration) -> Self {
        self.configure_remote(|remote| remote.min_interval = interval)
    }

    /// The longest the keys of a JWKS URL are used before they are fetched again, in the background, while the
    /// keys held go on being used (default [`DEFAULT_JWKS_MAX_AGE`]; within the refetch interval too, unless the
    /// last fetch failed). Keys this old are fetched again as requests come, whatever their tokens: a very short
    /// age makes every request a fetch (the runner's settings take a second at least).
    /// Call it before cloning the keys; it has no effect on other key sources.
    pub fn max_age(self, max_age: Duration) -> Self {
        self.configure_remote(|remote| remote.max_age = max_age)
    }

    /// The longest the keys of a JWKS URL are used when they cannot be fetched again (default
    /// [`DEFAULT_JWKS_MAX_STALE`], at least the maximum age): past it every token is refused (`unknown_key`) until
    /// a fetch succeeds. Call it before cloning the keys; it has no effect on other key sources.
    pub fn max_stale(self, max_stale: Duration) -> Self {
        self.configure_remote(|remote| remote.max_stale = max_stale)
    }

    /// Changes the settings of the keys' URL, while these keys are not yet shared (cloned); else nothing.
    fn configure_remote(mut self, change: impl FnOnce(&mut RemoteJwks)) -> Self {
        if let Some(remote) = self.remote.take() {
            self.remote = Some(match Arc::try_unwrap(remote) {
                Ok(mut remote) => {
                    change(&mut remote);
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

    /// Whether the keys come from a URL, and may be fetched again.
    pub(super) fn is_fetched(&self) -> bool {
        self.remote.is_some()
    }

    /// The keys held now: none, for a JWKS URL whose keys are older than their stale limit.
    pub(super) fn current(&self) -> Arc<[VerificationKey]> {
        let Some(remote) = &self.remote else {
            return self.keys.clone();
        };
        let age = remote
            .fetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed();
        if age > remote.max_stale.max(remote.max_age) {
            if !remote.stale_said.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    url = %masked_url(&remote.url),
                    age_secs = age.as_secs(),
                    "the JWKS could not be fetched again for longer than its stale limit: every token is refused \
                     until a fetch succeeds"
                );
            }
            return Arc::from([]);
        }
        remote
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the JWKS URL again, unless it was fetched less than the refetch interval ago: in the background
    /// (one fetch at a time), waited for until `deadline` at most (the request's: [`JWKS_STALE_WAIT`] for all its
    /// waits). A request whose token names a key not held
    /// does not hold its connection for a slow provider's whole fetch (red-team finding: 40 such requests filled a
    /// server's 40 connections for up to 10 s, turning away callers with valid tokens); past the wait it is checked
    /// against the keys held, and the fetch goes on for the requests after it. Needs a Tokio runtime.
    pub(super) async fn refetch(&self, deadline: std::time::Instant) {
        let Some(remote) = &self.remote else {
            return;
        };
        let refreshed = remote.refreshed.notified();
        let mut refreshed = std::pin::pin!(refreshed);
        // Told of a fetch that ends from now on.
        refreshed.as_mut().enable();
        remote.fetch_in_background();
        wait_until(deadline, refreshed).await;
    }

    /// When this request's waits for fetches end: [`JWKS_STALE_WAIT`] from now, for all of them together.
    pub(super) fn fetch_deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + JWKS_STALE_WAIT
    }

    /// When the keys held are older than their maximum age, fetches them again in the background (one fetch at a
    /// time) and waits for it, until `deadline` at most: past that, the keys held are used until it ends. Needs a
    /// Tokio runtime.
    pub(super) async fn refresh_if_stale(&self, deadline: std::time::Instant) {
        let Some(remote) = &self.remote else {
            return;
        };
        if !remote.is_stale() {
            return;
        }
        let refreshed = remote.refreshed.notified();
        let mut refreshed = std::pin::pin!(refreshed);
        // Told of a fetch that ends from now on; one that ended since the look above has made the keys fresh.
        refreshed.as_mut().enable();
        if !remote.is_stale() {
            return;
        }
        remote.fetch_in_background();
        if remote.failing.load(Ordering::Acquire) {
            return;
        }
        wait_until(deadline, refreshed).await;
    }
}

/// Waits for `event` until `deadline` at most; on a runtime without a time driver (where a timer panics), not at
/// all.
async fn wait_until(deadline: std::time::Instant, event: impl std::future::Future) {
    let deadline = tokio::time::Instant::from_std(deadline);
    if let Ok(wait) = crate::call::panic::quietly(|| tokio::time::timeout_at(deadline, event)) {
        let _ = wait.await;
    }
}

impl RemoteJwks {
    /// Starts a fetch on a task of its own (see [`RemoteJwks::refetch`]), unless one is under way; its end is told
    /// to the waiters of `refreshed`.
    fn fetch_in_background(self: &Arc<Self>) {
        if !self.refreshing.swap(true, Ordering::AcqRel) {
            let remote = self.clone();
            tokio::spawn(async move {
                remote.refetch().await;
                remote.refreshing.store(false, Ordering::Release);
                remote.refreshed.notify_waiters();
            });
        }
    }

    /// Whether the keys held are older than their maximum age.
    fn is_stale(&self) -> bool {
        self.fetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            >= self.max_age
    }

    async fn refetch(&self) {
        let mut last = self.last_fetch.lock().await;
        // Keys older than their maximum age are fetched again however recent the last fetch (a red team's: a fetch
        // for a rotation's new key started the interval, and the key withdrawn next was accepted for 30 s past a
        // max age of 5 s); not while the provider is failing, which the interval keeps from being hammered.
        let due = self.is_stale() && !self.failing.load(Ordering::Acquire);
        if !due && last.is_some_and(|at| at.elapsed() < self.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
                *self.fetched.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                self.stale_said.store(false, Ordering::Relaxed);
                self.failing.store(false, Ordering::Release);
            }
            // The provider answered a set with no key this server can use: its word, not an outage. Keeping the
            // keys held would keep a key it withdrew (red-team finding: up to the stale limit, 24 h).
            Err(KeyError::EmptyJwks) => {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::from([]);
                *self.fetched.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                self.stale_said.store(false, Ordering::Relaxed);
                self.failing.store(false, Ordering::Release);
                tracing::error!(
                    url = %masked_url(&self.url),
                    "the JWKS holds no usable signing key now: every token is refused until it does"
                );
            }
            Err(e) => {
                self.failing.store(true, Ordering::Release);
                tracing::warn!(error = %e, "JWKS refetch failed; keeping the keys held");
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// A red team's (round 43): a redirect to a relative reference (`Location: jwks.json`, `?x=1`), which RFC 9110
    /// allows, was refused as "not a URL", so the server would not start or refetch. Resolved against the URL that
    /// answered; credentials stay with their authority only.
    #[test]
    fn a_redirects_relative_location_is_resolved_against_the_url_that_answered() {
        let base: hyper::Uri = "https://user:pw@idp.example/a/b/keys?old=1"
            .parse()
            .unwrap();
        for (location, expected) in [
            ("jwks.json", "https://user:pw@idp.example/a/b/jwks.json"),
            (
                "../c/jwks.json",
                "https://user:pw@idp.example/a/c/jwks.json",
            ),
            ("?v=2", "https://user:pw@idp.example/a/b/keys?v=2"),
            ("/root.json", "https://user:pw@idp.example/root.json"),
            ("//other.example/k", "https://other.example/k"),
            ("https://third.example/k#frag", "https://third.example/k"),
            ("http://plain.example/k", "http://plain.example/k"),
        ] {
            assert_eq!(
                super::resolve_location(&base, location).unwrap(),
                expected,
                "{location}"
            );
        }
        assert!(super::resolve_location(&base, "http://[bad").is_err());
    }

    use std::sync::Arc;

    use super::{RemoteJwks, VerificationKeys, jwks_uri};

    /// Review finding: a JWKS URL's credentials (`https://USER:PASSWORD@host/...`) were shown whole by the keys'
    /// `Debug` (and so by `BearerAuth`'s and `Settings`'), and by the error of a failed fetch, printed at start.
    #[tokio::test]
    async fn a_jwks_urls_credentials_are_never_shown() {
        let url = "https://reader:hunter2@idp.example/jwks.json";
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let keys = VerificationKeys {
            keys: Arc::from([]),
            remote: Some(Arc::new(RemoteJwks::unfetched(url, tls))),
        };
        let shown = format!("{keys:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("reader"),
            "{shown}"
        );
        assert!(
            shown.contains("https://***@idp.example/jwks.json"),
            "{shown}"
        );

        let refused = VerificationKeys::jwks_url("http://reader:hunter2@10.0.0.1/jwks.json")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            !refused.contains("hunter2") && !refused.contains("reader"),
            "{refused}"
        );
        assert!(
            refused.contains("http://***@10.0.0.1/jwks.json"),
            "{refused}"
        );
    }

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

    /// A red team's (round 36): credentials that cannot be sent as written (`:` in the user name, bytes that are not
    /// UTF-8 once decoded) were sent as others, without a word.
    #[test]
    fn jwks_url_credentials_that_cannot_be_sent_as_written_are_refused() {
        for ok in [
            "https://reader:pa%20ss@issuer.example/jwks.json",
            "https://reader:p%40ss:word@issuer.example/jwks.json",
            "https://reader@issuer.example/jwks.json",
            "https://reader:@issuer.example/jwks.json",
        ] {
            assert!(jwks_uri(ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://us%3Aer:pw@issuer.example/jwks.json",
            "https://user:%FF%FE@issuer.example/jwks.json",
        ] {
            let error = jwks_uri(refused).unwrap_err();
            assert!(!error.contains("pw") && !error.contains("%FF"), "{error}");
        }
    }
}
