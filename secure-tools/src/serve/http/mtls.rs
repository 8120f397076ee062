//! HTTPS for the HTTP runner (feature `mtls`), with rustls: [`ServerTls`] is the listener's certificate and key
//! and, optionally, the CA every client must present a certificate of. It serves two ways:
//!
//! - **Mutual TLS** ([`MtlsAuth`], the alternative to bearer tokens): every client presents a certificate signed
//!   by the client CA, and the certificate's names map, through configuration, to an identity and a [`Grant`];
//!   that caller is put into the request exactly as bearer authentication puts the token's subject and scopes.
//! - **Bearer tokens over HTTPS** ([`HttpSettings::tls`](super::HttpSettings::tls)): the caller is the token's.
//!   Given a client CA too, only clients with a certificate of it connect at all (a workload's certificate, say,
//!   while the token names the user it acts for): the certificate is checked (the handshake, revocation, expiry,
//!   as below) and the token is then required as without TLS; the certificate names no caller.
//!
//! The rest of this page is about mutual TLS; the handshake's refusals and the checks of a connection's
//! certificate apply to both ways whenever a client CA is set.
//!
//! A certificate's names ([`ClientName`]) are its subject common name (CN, when it has exactly one) and the
//! entries of its subject alternative name extension that name a client: URIs (a SPIFFE ID such as
//! `spiffe://example.org/ns/prod/sa/reader`, the usual identity of a workload), DNS names and e-mail addresses. A
//! mapping names one of them (`alice`, or `uri:spiffe://...`, `dns:...`, `email:...`).
//!
//! - No client certificate, or one not signed by the client CA (or expired, or not valid for client
//!   authentication): the TLS handshake fails, and a `tls_rejected` audit record names the peer and the reason
//!   (`no_client_certificate`, `untrusted_client_certificate`, `handshake_failed`, `handshake_timeout`). With
//!   revocation lists ([`MtlsAuth::revocation_lists`]), a revoked certificate is `revoked_client_certificate`.
//! - A verified certificate none of whose names is mapped (or which has no name we read): `403` and an
//!   `http_rejected` record with reason `unknown_client` and its names as the subject.
//! - A certificate whose names map to different callers (its CN to one, a URI to another): `403`, reason
//!   `ambiguous_client`. Which one was meant is not guessed.
//! - A mapped caller short of a tool's scope: the call is refused (`missing_scope:...`) in the JSON-RPC result,
//!   with status `200`; there is no bearer challenge to answer with, since a certificate cannot be stepped up.
//!
//! ```no_run
//! # use secure_tools::Grant;
//! # use secure_tools::serve::http::mtls::MtlsAuth;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mtls = MtlsAuth::from_pem_files("server.pem".as_ref(), "server.key".as_ref(), "client-ca.pem".as_ref())?
//!     .client("reader-bot", Grant::parse("files.read")?)
//!     .client("alice", Grant::parse("files.read files.write")?);
//! let settings = secure_tools::serve::Settings::http(
//!     "0.0.0.0:8443".parse()?,
//!     secure_tools::serve::Auth::MutualTls(mtls),
//! );
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::audit::{AuditEvent, shorten_str};
use crate::call::Caller;
use crate::scope::{Grant, ScopeError};

/// How long a client has to complete the TLS handshake by default. A handshake in progress holds a connection
/// slot like any other connection, and is the first to make room when the slots run out (see the
/// `serve::http` module docs), so idle connections cannot keep real clients from their handshakes.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the mTLS setup is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MtlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A PEM input holds no usable item.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input: `server certificate`, `server key`, `client CA`.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("tls: {0}")]
    Tls(String),
    /// A client mapping is not `NAME=SCOPES`.
    #[error("client mapping `{spec}`: {reason}")]
    Mapping {
        /// The mapping as given.
        spec: String,
        /// What was wrong.
        reason: String,
    },
    /// A mapping's scopes do not parse.
    #[error("client mapping: {0}")]
    Scope(#[from] ScopeError),
}

/// Checks mappings as `NAME=SCOPES` settings give them ([`MtlsAuth::parse_client`]), each to the caller named by its
/// value: a name given twice (the last would win, silently: a stray line could widen a client's grant), and two
/// names of one value (`alice` and `dns:alice`: two certificates would be one caller, sharing its sessions and its
/// audit identity) are refused. Mapped in code, [`MtlsAuth::client_as`] names callers as meant.
pub fn check_mappings(mappings: &[(ClientName, Grant)]) -> Result<(), MtlsError> {
    let mut seen: std::collections::HashMap<&str, &ClientName> = std::collections::HashMap::new();
    for (name, _) in mappings {
        if let Some(earlier) = seen.insert(name.value(), name) {
            let reason = if earlier == name {
                format!("`{name}` is mapped twice: give each name once")
            } else {
                format!(
                    "`{earlier}` and `{name}` would both be the caller `{}`, so their certificates could not be \
                     told apart (in the audit, or in sessions): map one of them",
                    name.value()
                )
            };
            return Err(MtlsError::Mapping {
                spec: name.to_string(),
                reason,
            });
        }
    }
    Ok(())
}

/// A name a client certificate carries, by which it is mapped to a caller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ClientName {
    /// The subject's common name (CN), when the subject has exactly one. Written bare (`alice`) or `cn:alice`.
    CommonName(String),
    /// A URI of the subject alternative name extension, such as a SPIFFE ID. Written `uri:spiffe://...`; its scheme
    /// and host compared without case, kept in lower case.
    Uri(String),
    /// A DNS name of the subject alternative name extension. Written `dns:client.example.org`; compared without
    /// case, kept in lower case.
    Dns(String),
    /// An e-mail address (RFC 822 name) of the subject alternative name extension. Written `email:a@example.org`;
    /// its domain compared without case, kept in lower case.
    Email(String),
}

impl ClientName {
    /// Reads a name as written in a mapping: `uri:`, `dns:`, `email:` or `cn:` and the value, or a bare common
    /// name.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        for (prefix, make) in [
            ("uri:", ClientName::Uri as fn(String) -> ClientName),
            ("dns:", ClientName::Dns),
            ("email:", ClientName::Email),
            ("cn:", ClientName::CommonName),
        ] {
            if let Some(value) = text.strip_prefix(prefix) {
                return make(value.to_owned()).normalized();
            }
        }
        ClientName::CommonName(text.to_owned())
    }

    /// The name with the parts compared without case in lower case, as a certificate's and a mapping's both are
    /// kept: a DNS name (RFC 4343), an e-mail address's domain (its local part is the mailbox's own), a URI's
    /// scheme and host (RFC 3986; its path and a SPIFFE ID's workload path keep their case). A certificate naming
    /// `READER-BOT.EXAMPLE`, `Ops@Example.ORG` or `SPIFFE://Example.org/reader` was refused though its name was
    /// mapped in lower case (red-team findings).
    #[must_use]
    pub fn normalized(self) -> Self {
        match self {
            ClientName::Dns(dns) => ClientName::Dns(dns.to_ascii_lowercase()),
            ClientName::Email(email) => ClientName::Email(match email.rsplit_once('@') {
                Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
                None => email,
            }),
            ClientName::Uri(uri) => ClientName::Uri(uri_lowercased(&uri)),
            other => other,
        }
    }

    /// The name without its kind: the identity of a caller mapped by it.
    pub fn value(&self) -> &str {
        match self {
            ClientName::CommonName(v)
            | ClientName::Uri(v)
            | ClientName::Dns(v)
            | ClientName::Email(v) => v,
        }
    }
}

/// `uri` with its scheme and host in lower case (its user information, port, path, query and fragment as they are).
fn uri_lowercased(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let Some(after) = rest.strip_prefix("//") else {
        return format!("{scheme}:{rest}");
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, tail) = after.split_at(end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    let host = host.to_ascii_lowercase();
    match user {
        Some(user) => format!("{scheme}://{user}@{host}{tail}"),
        None => format!("{scheme}://{host}{tail}"),
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientName::CommonName(v) => f.write_str(v),
            ClientName::Uri(v) => write!(f, "uri:{v}"),
            ClientName::Dns(v) => write!(f, "dns:{v}"),
            ClientName::Email(v) => write!(f, "email:{v}"),
        }
    }
}

/// A bare string is a common name.
impl From<&str> for ClientName {
    fn from(common_name: &str) -> Self {
        ClientName::CommonName(common_name.to_owned())
    }
}

/// A bare string is a common name.
impl From<String> for ClientName {
    fn from(common_name: String) -> Self {
        ClientName::CommonName(common_name)
    }
}

/// Why a verified client certificate maps to no caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unmapped {
    /// None of its names is mapped; its names, if it has any we read.
    Unknown(Option<String>),
    /// Its names map to different callers; its names.
    Ambiguous(String),
    /// It carries more names than are read ([`MAX_CLIENT_NAMES`]).
    TooManyNames,
}

/// The TLS of the HTTPS listener: the server's certificate and key and, when client certificates are required,
/// the CA they must chain to and its revocation lists. With bearer tokens ([`HttpSettings::tls`]) it serves HTTPS
/// (and, given a client CA, admits only clients with a certificate of it, while the caller comes from the token);
/// [`MtlsAuth`] holds one that requires client certificates, whose names are the caller.
///
/// [`HttpSettings::tls`]: super::HttpSettings::tls
#[derive(Clone)]
pub struct ServerTls {
    server_config: Arc<Tls>,
    /// Revocation lists read from a file, and read again when it changes.
    crl_file: Option<Arc<CrlFile>>,
    /// What the server configuration is made of, to make it again with revocation lists.
    parts: Arc<ConfigParts>,
    /// Whether revocation lists were given (then a client CA given after them is refused: it would drop them).
    revoking: bool,
    handshake_timeout: Duration,
}

/// Mutual TLS authentication: the server's certificate and key, the CA client certificates must chain to, and
/// the mapping from a client certificate's names to an identity and a grant. See the [module docs](self).
#[derive(Clone)]
pub struct MtlsAuth {
    tls: ServerTls,
    clients: Arc<BTreeMap<ClientName, (String, Grant)>>,
}

/// A server configuration and the verifier of client certificates inside it (rustls keeps its own private), with
/// which a connection's certificate is checked again after the lists change.
pub(crate) struct Tls {
    config: Arc<rustls::ServerConfig>,
    /// `None` when no client certificate is asked for.
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// The earliest `nextUpdate` of the revocation lists, past which a connection open under them serves no
    /// request, as a handshake under them succeeds no more.
    lists_expire: Option<std::time::SystemTime>,
}

/// The server's chain and key and the client CAs, if client certificates are required.
struct ConfigParts {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
    /// The client CA certificates the roots were made of, which a revocation list of one of them is checked
    /// against as it is loaded.
    cas: Vec<CertificateDer<'static>>,
}

impl ConfigParts {
    /// The server's TLS configuration: client certificates, when required, verified against the roots (and, given
    /// revocation lists, checked against them: every certificate of the chain, an unknown status and an expired
    /// list refused).
    fn server_config(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Tls, MtlsError> {
        let lists_expire = crls.iter().filter_map(next_update).min();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| MtlsError::Tls(e.to_string()))?;
        let (builder, verifier) = match &self.roots {
            Some(roots) => {
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
                if !crls.is_empty() {
                    verifier = verifier.with_crls(crls).enforce_revocation_expiration();
                }
                let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                    Arc::new(SigningCertificates(
                        verifier
                            .build()
                            .map_err(|e| MtlsError::Tls(format!("client CA: {e}")))?,
                    ));
                (
                    builder.with_client_cert_verifier(verifier.clone()),
                    Some(verifier),
                )
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut config = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| MtlsError::Tls(format!("server certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if verifier.is_some() {
            // No resumption: a resumed session skips the client certificate's verification (its expiry, the lists'
            // revocations and update times), so every connection presents and proves its certificate.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(Tls {
            config: Arc::new(config),
            verifier,
            lists_expire,
        })
    }
}

/// The client-certificate verifier of rustls-webpki, and a check it does not make: a certificate whose key usage
/// extension does not allow `digitalSignature` cannot sign the handshake (RFC 8446, section 4.4.2.2; RFC 5280,
/// section 4.2.1.3), and is refused as a certificate for another purpose (red-team finding: one allowing only
/// `keyCertSign` was served).
#[derive(Debug)]
struct SigningCertificates(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for SigningCertificates {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        if !may_sign(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }
}

/// Whether a certificate's key may sign: it has no key usage extension, or one with `digitalSignature`. One that
/// cannot be read may not (it was verified already, so this is a certificate x509-cert reads differently).
fn may_sign(certificate: &CertificateDer<'_>) -> bool {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
    let Ok(certificate) = x509_cert::Certificate::from_der(certificate.as_ref()) else {
        return false;
    };
    match certificate.tbs_certificate.get::<KeyUsage>() {
        Ok(None) => true,
        Ok(Some((_, usage))) => usage.0.contains(KeyUsages::DigitalSignature),
        Err(_) => false,
    }
}

/// A revocation list's `nextUpdate`, if it has one that can be read.
fn next_update(crl: &CertificateRevocationListDer<'_>) -> Option<std::time::SystemTime> {
    use x509_cert::der::Decode;
    let list = x509_cert::crl::CertificateList::from_der(crl.as_ref()).ok()?;
    Some(list.tbs_cert_list.next_update?.to_system_time())
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field(
                "requires_client_certificates",
                &self.requires_client_certificates(),
            )
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl MtlsAuth {
    /// Each mapped client name and the grant it is given.
    pub(crate) fn grants(&self) -> impl Iterator<Item = (&ClientName, &Grant)> {
        self.clients.iter().map(|(name, (_, grant))| (name, grant))
    }
}

impl fmt::Debug for MtlsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsAuth")
            .field("clients", &self.clients)
            .field("handshake_timeout", &self.tls.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM: the server's certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1). No
    /// client certificate is asked for (see [`client_ca`](Self::client_ca)).
    pub fn from_pem(server_cert_chain: &[u8], server_key: &[u8]) -> Result<Self, MtlsError> {
        let chain = certificates(server_cert_chain, "server certificate")?;
        let key = PrivateKeyDer::from_pem_slice(server_key).map_err(|e| MtlsError::Pem {
            what: "server key",
            reason: e.to_string(),
        })?;
        let parts = ConfigParts {
            chain,
            key,
            roots: None,
            cas: Vec::new(),
        };
        Ok(ServerTls {
            server_config: Arc::new(parts.server_config(Vec::new())?),
            crl_file: None,
            parts: Arc::new(parts),
            revoking: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// [`from_pem`](Self::from_pem) with the contents of two files.
    pub fn from_pem_files(server_cert_chain: &Path, server_key: &Path) -> Result<Self, MtlsError> {
        Self::from_pem(&read(server_cert_chain)?, &read(server_key)?)
    }

    /// Requires every client to present a certificate signed by one of these CA certificates (PEM, one or more):
    /// a handshake without one, or with another, fails and is audited as a `tls_rejected` record (see the [module
    /// docs](self)). Give it before the revocation lists: after them it is refused (it would drop them).
    pub fn client_ca(mut self, pem: &[u8]) -> Result<Self, MtlsError> {
        if self.revoking {
            return Err(MtlsError::Tls(
                "give the client CA before its revocation lists".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        let cas = certificates(pem, "client CA")?;
        for ca in &cas {
            roots
                .add(ca.clone())
                .map_err(|e| MtlsError::Tls(format!("client CA: {e}")))?;
        }
        let parts = ConfigParts {
            chain: self.parts.chain.clone(),
            key: self.parts.key.clone_key(),
            roots: Some(Arc::new(roots)),
            cas,
        };
        self.server_config = Arc::new(parts.server_config(Vec::new())?);
        self.parts = Arc::new(parts);
        self.crl_file = None;
        Ok(self)
    }

    /// [`client_ca`](Self::client_ca) from a file.
    pub fn client_ca_file(self, path: &Path) -> Result<Self, MtlsError> {
        self.client_ca(&read(path)?)
    }

    /// Whether clients must present a certificate of the client CA.
    pub fn requires_client_certificates(&self) -> bool {
        self.parts.roots.is_some()
    }

    /// Refuses client certificates revoked by these certificate revocation lists (PEM, one or more `X509 CRL`
    /// blocks, one per CA of the chain); needs a [`client_ca`](Self::client_ca). With lists, every certificate of
    /// a client's chain (but the CA it is trusted through) must have a known status (a certificate no list covers
    /// is refused), and a list past its `nextUpdate` refuses every handshake until a fresh one is loaded:
    /// revocation fails closed. A refused handshake is a `tls_rejected` record like any other.
    ///
    /// These lists are kept as given; [`revocation_lists_file`](Self::revocation_lists_file) reads a file again
    /// when it changes.
    pub fn revocation_lists(mut self, pem: &[u8]) -> Result<Self, MtlsError> {
        self.server_config = Arc::new(self.config_with_crls(pem)?);
        self.crl_file = None;
        self.revoking = true;
        Ok(self)
    }

    /// The server configuration with the revocation lists of `pem`, each checked to be current.
    fn config_with_crls(&self, pem: &[u8]) -> Result<Tls, MtlsError> {
        if !self.requires_client_certificates() {
            return Err(MtlsError::Tls(
                "client revocation lists need a client CA: no client certificate is asked for"
                    .into(),
            ));
        }
        let crls = CertificateRevocationListDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MtlsError::Pem {
                what: "client CRL",
                reason: e.to_string(),
            })?;
        if crls.is_empty() {
            return Err(MtlsError::Pem {
                what: "client CRL",
                reason: "no X509 CRL in the PEM input".into(),
            });
        }
        for crl in &crls {
            check_fresh(crl)?;
            check_signed(crl, &self.parts.cas)?;
        }
        issued_lists(pem, &self.parts.cas)?;
        self.parts.server_config(crls)
    }

    /// [`revocation_lists`](Self::revocation_lists) from a file, which is read again when it changes (its size or
    /// modification time, looked at every [`CRL_RECHECK`] while the server runs, on the blocking pool: a handshake
    /// never waits for the file), so a CA's fresh lists are taken without a restart. A new version that cannot be
    /// used (unreadable, not a list, already expired) is reported on the `tracing` log at `error`, once, and the
    /// lists in use stay: once those are past their `nextUpdate`, handshakes fail until a usable file replaces them.
    pub fn revocation_lists_file(mut self, path: &Path) -> Result<Self, MtlsError> {
        let (pem, version) = CrlFile::read(path)?;
        self.server_config = Arc::new(self.config_with_crls(&pem)?);
        let issued = issued_lists(&pem, &self.parts.cas)?;
        self.crl_file = Some(Arc::new(CrlFile {
            path: path.to_path_buf(),
            state: std::sync::Mutex::new(CrlState {
                version,
                config: self.server_config.clone(),
                issued,
            }),
        }));
        self.revoking = true;
        Ok(self)
    }

    /// Time allowed for a client's TLS handshake (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

fn read(path: &Path) -> Result<Vec<u8>, MtlsError> {
    crate::operator_file::read_bounded(path, crate::operator_file::MAX_SETTINGS_FILE, "a PEM file")
        .map_err(|source| MtlsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

impl MtlsAuth {
    /// From PEM: the server's certificate chain (leaf first), its private key (PKCS#8, PKCS#1 or SEC1), and one or
    /// more CA certificates client certificates must chain to. No client is mapped yet.
    pub fn from_pem(
        server_cert_chain: &[u8],
        server_key: &[u8],
        client_ca: &[u8],
    ) -> Result<Self, MtlsError> {
        Self::new(ServerTls::from_pem(server_cert_chain, server_key)?.client_ca(client_ca)?)
    }

    /// From a listener's TLS, which must require client certificates ([`ServerTls::client_ca`]). No client is
    /// mapped yet.
    pub fn new(tls: ServerTls) -> Result<Self, MtlsError> {
        if !tls.requires_client_certificates() {
            return Err(MtlsError::Tls(
                "mutual TLS needs a client CA: the listener asks for no client certificate".into(),
            ));
        }
        Ok(MtlsAuth {
            tls,
            clients: Arc::new(BTreeMap::new()),
        })
    }

    /// The listener's TLS.
    pub fn tls(&self) -> &ServerTls {
        &self.tls
    }

    /// See [`ServerTls::revocation_lists`].
    pub fn revocation_lists(mut self, pem: &[u8]) -> Result<Self, MtlsError> {
        self.tls = self.tls.revocation_lists(pem)?;
        Ok(self)
    }

    /// See [`ServerTls::revocation_lists_file`].
    pub fn revocation_lists_file(mut self, path: &Path) -> Result<Self, MtlsError> {
        self.tls = self.tls.revocation_lists_file(path)?;
        Ok(self)
    }

    /// [`from_pem`](Self::from_pem) with the contents of three files.
    pub fn from_pem_files(
        server_cert_chain: &Path,
        server_key: &Path,
        client_ca: &Path,
    ) -> Result<Self, MtlsError> {
        Self::from_pem(
            &read(server_cert_chain)?,
            &read(server_key)?,
            &read(client_ca)?,
        )
    }

    /// Maps client certificates carrying `name` (a bare string is a CN; see [`ClientName`]) to the caller named
    /// by its value (`alice`, `spiffe://...`) holding `grant`.
    pub fn client(self, name: impl Into<ClientName>, grant: Grant) -> Self {
        let name = name.into();
        let identity = name.value().to_owned();
        self.client_as(name, identity, grant)
    }

    /// Maps client certificates carrying `name` to the caller `identity` holding `grant`.
    pub fn client_as(
        mut self,
        name: impl Into<ClientName>,
        identity: impl Into<String>,
        grant: Grant,
    ) -> Self {
        // A name built in code is compared as one read from a mapping or a certificate: its case normalized.
        let name = name.into().normalized();
        Arc::make_mut(&mut self.clients).insert(name, (identity.into(), grant));
        self
    }

    /// Time allowed for a client's TLS handshake (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls = self.tls.handshake_timeout(timeout);
        self
    }

    /// Parses a mapping written `NAME=SCOPES` (scopes space- or comma-separated, possibly none), as the file
    /// server's `--mtls-client` takes it: `alice=files.read`, `uri:spiffe://example.org/reader=files.read`. The
    /// name ([`ClientName::parse`]) is everything before the first `=`; a name containing `=` can be mapped in
    /// code ([`MtlsAuth::client`]).
    pub fn parse_client(spec: &str) -> Result<(ClientName, Grant), MtlsError> {
        let (name, scopes) = spec.split_once('=').ok_or_else(|| MtlsError::Mapping {
            spec: spec.to_owned(),
            reason: "expected NAME=SCOPES".into(),
        })?;
        let name = ClientName::parse(name);
        if name.value().is_empty() {
            return Err(MtlsError::Mapping {
                spec: spec.to_owned(),
                reason: "empty name".into(),
            });
        }
        Ok((name, Grant::parse(scopes)?))
    }

    /// The caller a verified client certificate maps to, or why it maps to none (see the [module docs](self)).
    pub(crate) fn caller(&self, certificate: &CertificateDer<'_>) -> Result<Caller, Unmapped> {
        let Some(names) = client_names(certificate) else {
            return Err(Unmapped::TooManyNames);
        };
        let mut mapped = names.iter().filter_map(|name| self.clients.get(name));
        let listed = || listed_names(&names);
        let Some(first) = mapped.next() else {
            return Err(Unmapped::Unknown((!names.is_empty()).then(listed)));
        };
        if mapped.any(|other| other != first) {
            return Err(Unmapped::Ambiguous(listed()));
        }
        Ok(Caller::new(first.0.clone(), first.1.clone()))
    }
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, MtlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MtlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(MtlsError::Pem {
            what,
            reason: "no CERTIFICATE in the PEM input".into(),
        });
    }
    Ok(certs)
}

/// A revocation list past its `nextUpdate` is refused at start, rather than refusing every client later.
fn check_fresh(crl: &CertificateRevocationListDer<'_>) -> Result<(), MtlsError> {
    use x509_cert::der::Decode;
    let list =
        x509_cert::crl::CertificateList::from_der(crl.as_ref()).map_err(|e| MtlsError::Pem {
            what: "client CRL",
            reason: e.to_string(),
        })?;
    if let Some(next) = list.tbs_cert_list.next_update
        && next.to_system_time() < std::time::SystemTime::now()
    {
        return Err(MtlsError::Pem {
            what: "client CRL",
            reason: format!(
                "the list of {} expired at {next} (its nextUpdate); load a fresh one",
                list.tbs_cert_list.issuer
            ),
        });
    }
    Ok(())
}

/// A revocation list issued in the name of a client CA must be signed by it, with an algorithm the TLS library
/// verifies: one that is not would fail every handshake its CA's clients make (`BadSignature`, or an unsupported
/// algorithm: SHA-1, P-256 with SHA-512), and its dates would hold back the CA's genuine lists as rollbacks
/// (red-team findings: a list of another key under the CA's name was taken, at start and from a changed file; a
/// SHA-1 list passed a first check that did not use the TLS library's algorithms). The signature is checked with the
/// algorithms rustls verifies handshakes with (`ring`'s), so the two cannot disagree; and the CA's key usage, when
/// stated, must allow `cRLSign` (RFC 5280, section 4.2.1.3). A list of another issuer (an intermediate CA, which
/// clients present) cannot be checked before a handshake brings the intermediate: the handshake checks it.
fn check_signed(
    crl: &CertificateRevocationListDer<'_>,
    cas: &[CertificateDer<'_>],
) -> Result<(), MtlsError> {
    use x509_cert::der::{Decode, Encode, Reader, SliceReader};
    use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
    let refused = |reason: String| MtlsError::Pem {
        what: "client CRL",
        reason,
    };
    let list = x509_cert::crl::CertificateList::from_der(crl.as_ref())
        .map_err(|e| refused(e.to_string()))?;
    let issuer = list
        .tbs_cert_list
        .issuer
        .to_der()
        .map_err(|e| refused(e.to_string()))?;
    // The signed bytes as they are in the file (not as re-encoded), the algorithm's identifier without its
    // SEQUENCE header (as rustls-pki-types gives them), and the signature.
    let (signed, algorithm, signature) = {
        let mut reader = SliceReader::new(crl.as_ref()).map_err(|e| refused(e.to_string()))?;
        reader
            .sequence(|list| {
                let signed = list.tlv_bytes()?;
                let algorithm = x509_cert::der::asn1::AnyRef::decode(list)?.value();
                let signature = x509_cert::der::asn1::BitStringRef::decode(list)?;
                Ok((signed, algorithm, signature.raw_bytes()))
            })
            .map_err(|e| refused(e.to_string()))?
    };
    let algorithms = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let mut named = false;
    let mut unsupported = false;
    let mut may_not_sign = false;
    for ca in cas {
        let Ok(ca) = x509_cert::Certificate::from_der(ca.as_ref()) else {
            continue;
        };
        if ca.tbs_certificate.subject.to_der().ok().as_deref() != Some(issuer.as_slice()) {
            continue;
        }
        named = true;
        if let Ok(Some((_, usage))) = ca.tbs_certificate.get::<KeyUsage>()
            && !usage.0.contains(KeyUsages::CRLSign)
        {
            may_not_sign = true;
            continue;
        }
        let spki = &ca.tbs_certificate.subject_public_key_info;
        let Ok(key_algorithm) = spki.algorithm.to_der() else {
            continue;
        };
        let Ok(key_algorithm) = x509_cert::der::asn1::AnyRef::from_der(&key_algorithm) else {
            continue;
        };
        let key = spki.subject_public_key.raw_bytes();
        let mut matching = algorithms.iter().filter(|candidate| {
            *candidate.signature_alg_id() == *algorithm
                && *candidate.public_key_alg_id() == *key_algorithm.value()
        });
        match matching.next() {
            None => unsupported = true,
            Some(first) => {
                if std::iter::once(first)
                    .chain(matching)
                    .any(|candidate| candidate.verify_signature(key, signed, signature).is_ok())
                {
                    return Ok(());
                }
            }
        }
    }
    match (named, unsupported) {
        (false, _) => Ok(()),
        _ if may_not_sign => Err(refused(format!(
            "the client CA {} may not sign revocation lists (its key usage does not allow cRLSign): load a list \
             from a CA certificate that allows it",
            list.tbs_cert_list.issuer
        ))),
        (true, true) => Err(refused(format!(
            "the list of {} is signed with an algorithm the TLS library does not verify (for the CA's key), so \
             every handshake would be refused: sign it with SHA-256 or stronger (RSA, RSA-PSS, ECDSA P-256 or P-384 \
             with SHA-256 or SHA-384, Ed25519)",
            list.tbs_cert_list.issuer
        ))),
        (true, false) => Err(refused(format!(
            "the list of {} is not signed by the client CA of that name (its signature does not verify with the \
             CA's key): load the list that CA issued",
            list.tbs_cert_list.issuer
        ))),
    }
}

/// Most names read from one certificate (a certificate with thousands of alternative names is refused, not
/// searched).
const MAX_CLIENT_NAMES: usize = 64;

/// A certificate's names as a refusal's record shows them, `, ` between them: a name that holds a comma, a quote or
/// space at an end is quoted, so that a CN `pod-0, uri:spiffe://x/admin` does not read as a CN and a URI (red-team
/// finding).
fn listed_names(names: &[ClientName]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|name| {
            let text = name.to_string();
            // A CN that reads as another kind of name (`uri:...`, or `cn:alice`, the CN `alice` in a mapping) or as
            // a nameless certificate's fingerprint (`sha256:...`, a round's finding), and a name holding a character
            // a reader would not see (red-team finding), are quoted too.
            let prefixed = matches!(name, ClientName::CommonName(_))
                && ["uri:", "dns:", "email:", "cn:", "sha256:"]
                    .iter()
                    .any(|kind| {
                        text.get(..kind.len())
                            .is_some_and(|start| start.eq_ignore_ascii_case(kind))
                    });
            let unseen = text.chars().any(|c| {
                c.is_control()
                    || crate::text::format_or_separator(c)
                    || crate::text::invisible(c)
                    || crate::text::hazard(c).is_some()
            });
            if prefixed || unseen || text.contains([',', '"']) || text.trim() != text {
                format!("{text:?}")
            } else {
                text
            }
        })
        .collect();
    shown.join(", ")
}

/// The names a certificate carries, in order: its subject CN (when it has exactly one), then the URIs, DNS names
/// and e-mail addresses of its subject alternative name extension. None at all for a certificate that cannot be
/// read; `None` for one that carries more than [`MAX_CLIENT_NAMES`].
fn client_names(certificate: &CertificateDer<'_>) -> Option<Vec<ClientName>> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let Ok(certificate) = x509_cert::Certificate::from_der(certificate.as_ref()) else {
        return Some(Vec::new());
    };
    let mut names: Vec<ClientName> = common_name(&certificate)
        .map(ClientName::CommonName)
        .into_iter()
        .collect();
    let alternatives = certificate
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|extension| extension.extn_id == SUBJECT_ALT_NAME)
        .filter_map(|extension| SubjectAltName::from_der(extension.extn_value.as_bytes()).ok())
        .flat_map(|san| san.0);
    for alternative in alternatives {
        let name = match alternative {
            GeneralName::UniformResourceIdentifier(uri) => ClientName::Uri(uri.to_string()),
            GeneralName::DnsName(dns) => ClientName::Dns(dns.to_string()),
            GeneralName::Rfc822Name(email) => ClientName::Email(email.to_string()),
            _ => continue,
        }
        .normalized();
        if names.len() == MAX_CLIENT_NAMES {
            return None;
        }
        names.push(name);
    }
    Some(names)
}

/// The subject alternative name extension (RFC 5280, 4.2.1.6).
const SUBJECT_ALT_NAME: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17");

/// The certificate's subject common name, when it has exactly one, as a UTF-8, printable or IA5 string.
fn common_name(certificate: &x509_cert::Certificate) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
    use x509_cert::der::{Tag, Tagged};
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    let mut names = certificate
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|attribute| attribute.oid == CN)
        .map(|attribute| {
            let value = &attribute.value;
            match value.tag() {
                Tag::Utf8String => value
                    .decode_as::<Utf8StringRef<'_>>()
                    .ok()
                    .map(|s| s.as_str().to_owned()),
                Tag::PrintableString => value
                    .decode_as::<PrintableStringRef<'_>>()
                    .ok()
                    .map(|s| s.as_str().to_owned()),
                Tag::Ia5String => value
                    .decode_as::<Ia5StringRef<'_>>()
                    .ok()
                    .map(|s| s.as_str().to_owned()),
                _ => None,
            }
        });
    let first = names.next()??;
    if names.next().is_some() {
        return None;
    }
    Some(first)
}

/// The peer of a TLS connection: its address and the certificate it presented, verified against the client CA.
/// Put into each request as axum's connect info ([`axum::extract::ConnectInfo<TlsPeer>`]).
#[derive(Clone)]
pub struct TlsPeer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The verified client certificate (the leaf).
    pub certificate: Option<CertificateDer<'static>>,
    /// The rest of the chain the client presented.
    intermediates: Arc<[CertificateDer<'static>]>,
    /// When the leaf stops being valid.
    not_after: Option<std::time::SystemTime>,
    /// The configuration whose verifier last accepted the certificate: at first the handshake's (shared by the
    /// connection's requests).
    checked: Arc<std::sync::Mutex<Option<Arc<Tls>>>>,
    /// The certificate's names, as a refusal's `subject` gives them (`alice, uri:spiffe://...`), or its fingerprint
    /// when they are not read; read once.
    subject: Option<Arc<str>>,
}

impl TlsPeer {
    /// The names of the certificate the client presented, as a refusal's `subject` gives them, or its SHA-256
    /// fingerprint (`sha256:...`) when its names are not read; `None` without a certificate.
    pub(crate) fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

impl fmt::Debug for TlsPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPeer")
            .field("addr", &self.addr)
            .field("certificate", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

/// How often a revocation list file is looked at for a new version.
pub const CRL_RECHECK: Duration = Duration::from_secs(5);

/// A revocation list file and the configuration made from its version in use.
struct CrlFile {
    path: PathBuf,
    state: std::sync::Mutex<CrlState>,
}

/// A file's version as seen from outside: its size and modification time.
type FileVersion = (u64, Option<std::time::SystemTime>);

struct CrlState {
    /// The version in use.
    version: FileVersion,
    config: Arc<Tls>,
    /// Each issuer's list in use: when it was issued (`thisUpdate`), and its number. A file read again may not go
    /// back on one.
    issued: Issued,
}

/// When each issuer's revocation list was issued (`thisUpdate`) and its CRL number (big-endian, without leading
/// zeros), if it has one, by issuer.
/// Each issuer's list: when it was issued, its number, and whether the issuer is a client CA (its signature then
/// checked as it loads).
type Issued = std::collections::BTreeMap<String, (std::time::SystemTime, Option<Vec<u8>>, bool)>;

/// A list's CRL number (RFC 5280 section 5.2.3), big-endian without leading zeros, so that a longer one is larger.
fn crl_number(list: &x509_cert::crl::CertificateList) -> Option<Vec<u8>> {
    use x509_cert::der::Decode;
    use x509_cert::der::oid::AssociatedOid;
    let extension = list
        .tbs_cert_list
        .crl_extensions
        .as_ref()?
        .iter()
        .find(|extension| extension.extn_id == x509_cert::ext::pkix::CrlNumber::OID)?;
    let number = x509_cert::ext::pkix::CrlNumber::from_der(extension.extn_value.as_bytes()).ok()?;
    let bytes = number.0.as_bytes();
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    Some(bytes[first..].to_vec())
}

/// Whether CRL number `a` is below `b`.
fn number_below(a: &[u8], b: &[u8]) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// When each issuer's list in `pem` was issued, and its number: the lists a later file may not go back on. A file
/// holds one list per CA (red-team finding: an older list put before the current one was taken, as a handshake
/// reads an issuer's first list): two are refused.
fn issued_lists(pem: &[u8], cas: &[CertificateDer<'_>]) -> Result<Issued, MtlsError> {
    use x509_cert::der::{Decode, Encode};
    let ca_names: Vec<Vec<u8>> = cas
        .iter()
        .filter_map(|ca| x509_cert::Certificate::from_der(ca.as_ref()).ok())
        .filter_map(|ca| ca.tbs_certificate.subject.to_der().ok())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut issued = Issued::new();
    for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
        let crl = crl.map_err(|e| MtlsError::Pem {
            what: "client CRL",
            reason: e.to_string(),
        })?;
        let list = x509_cert::crl::CertificateList::from_der(crl.as_ref()).map_err(|e| {
            MtlsError::Pem {
                what: "client CRL",
                reason: e.to_string(),
            }
        })?;
        let at = list.tbs_cert_list.this_update.to_system_time();
        let issuer = list.tbs_cert_list.issuer.to_string();
        if !seen.insert(issuer.clone()) {
            return Err(MtlsError::Pem {
                what: "client CRL",
                reason: format!(
                    "two lists of {issuer}: give one list per CA, its latest (a handshake would read only the first)"
                ),
            });
        }
        let by_a_client_ca = list
            .tbs_cert_list
            .issuer
            .to_der()
            .is_ok_and(|name| ca_names.contains(&name));
        issued.insert(issuer, (at, crl_number(&list), by_a_client_ca));
    }
    Ok(issued)
}

/// Refuses lists that go back on those in use (red-team finding: an older list copied back over the file, from
/// before a client was revoked, was taken, and the client served again): each issuer of the lists in use must have
/// a list issued no earlier in the new file.
fn no_rollback(in_use: &Issued, new: &Issued) -> Result<(), MtlsError> {
    for (issuer, (at, number, by_a_client_ca)) in in_use {
        match new.get(issuer) {
            Some((new_at, _, _)) if new_at > at => {}
            // Issued at the same time: its number may not be lower (RFC 5280: numbers only grow; red-team finding,
            // a list of the same thisUpdate and a lower number un-revoked a client).
            Some((new_at, Some(new_number), _))
                if new_at == at
                    && number
                        .as_ref()
                        .is_some_and(|number| number_below(new_number, number)) =>
            {
                return Err(MtlsError::Pem {
                    what: "client CRL",
                    reason: format!(
                        "the list of {issuer} has a lower CRL number than the one in use, issued at the same time: \
                         a list is not rolled back; load one at least as recent"
                    ),
                });
            }
            Some((new_at, _, _)) if new_at == at => {}
            Some(_) => {
                return Err(MtlsError::Pem {
                    what: "client CRL",
                    reason: format!(
                        "the list of {issuer} is older than the one in use (its thisUpdate is earlier): a list is \
                         not rolled back; load one at least as recent"
                    ),
                });
            }
            // A list in a name no client CA has (an intermediate's, or a stranger's), unchecked until a handshake,
            // may be left out: it could otherwise hold every later file back (a red team's round). Its older
            // copies are refused all the same, or one from before a revocation would undo it (the next round's).
            None if !by_a_client_ca => {}
            None => {
                return Err(MtlsError::Pem {
                    what: "client CRL",
                    reason: format!(
                        "the file holds no list of {issuer}, whose list is in use: its revocations would be \
                         dropped; keep a list for every issuer"
                    ),
                });
            }
        }
    }
    Ok(())
}

impl CrlFile {
    fn read(path: &Path) -> Result<(Vec<u8>, FileVersion), MtlsError> {
        let failed = |source| MtlsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let version = Self::version(path).map_err(failed)?;
        let pem = crate::operator_file::read_bounded(
            path,
            crate::operator_file::MAX_SETTINGS_FILE,
            "a revocation list",
        )
        .map_err(failed)?;
        Ok((pem, version))
    }

    fn version(path: &Path) -> std::io::Result<FileVersion> {
        let metadata = std::fs::metadata(path)?;
        Ok((metadata.len(), metadata.modified().ok()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CrlState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration in use. Never touches the file: a handshake does not wait for a read.
    fn current(&self) -> Arc<Tls> {
        self.lock().config.clone()
    }

    /// Looks at the file, and when it has a new version that can be used, makes the configuration from it. Blocking
    /// (a read, the lists parsed): run on the blocking pool. The lock is held only to swap the configuration.
    fn refresh(&self, tls: &ServerTls) {
        let in_use = self.lock().version;
        let seen = Self::version(&self.path);
        if seen.as_ref().is_ok_and(|version| *version == in_use) {
            return;
        }
        let issued_in_use = self.lock().issued.clone();
        match Self::read(&self.path).and_then(|(pem, version)| {
            let issued = issued_lists(&pem, &tls.parts.cas)?;
            no_rollback(&issued_in_use, &issued)?;
            Ok((tls.config_with_crls(&pem)?, version, issued))
        }) {
            Ok((config, version, issued)) => {
                tracing::info!(path = %self.path.display(), "client revocation lists read again");
                let mut state = self.lock();
                state.config = Arc::new(config);
                state.version = version;
                state.issued = issued;
            }
            Err(error) => {
                // Not again until the file changes: the error is logged once per version. The version is the one
                // seen before the read, so that a file finished meanwhile is read at the next look; a file gone is
                // logged once too.
                let version = seen.unwrap_or((0, None));
                let mut state = self.lock();
                let again = state.version != version;
                state.version = version;
                drop(state);
                if again {
                    tracing::error!(%error, "client revocation lists not replaced; the lists in use stay");
                }
            }
        }
    }
}

impl ServerTls {
    /// The configuration in use: the one made from the revocation lists read last.
    fn current(&self) -> Arc<Tls> {
        match &self.crl_file {
            Some(file) => file.current(),
            None => self.server_config.clone(),
        }
    }

    /// The TLS acceptor, the time a handshake may take, and the configuration it accepts under.
    pub(crate) fn acceptor(&self) -> (TlsAcceptor, Duration, Arc<Tls>) {
        let tls = self.current();
        (
            TlsAcceptor::from(tls.config.clone()),
            self.handshake_timeout,
            tls,
        )
    }

    /// Checks a connection's certificate again before a request is served on it: the handshake checked it once,
    /// and a connection kept alive (or an event stream) outlives both the certificate's validity and the lists it
    /// was checked against. Past its `notAfter` it is refused; after new lists were loaded it is verified again
    /// against them (once per connection and lists). The refusal's reason, as a handshake's would be.
    pub(crate) fn recheck(&self, peer: &TlsPeer) -> Result<(), &'static str> {
        if peer
            .not_after
            .is_some_and(|not_after| std::time::SystemTime::now() > not_after)
        {
            return Err("expired_client_certificate");
        }
        let current = self.current();
        // Past a list's `nextUpdate`, revocation fails closed on a connection already open too (red-team finding:
        // a kept-alive connection, and an event stream, went on being served while every handshake was refused):
        // its certificate is verified again, now, as a new handshake's would be, which refuses it if a list its
        // chain depends on has expired, and not for another CA's list (a red team's next round: the earliest
        // `nextUpdate` of all the lists refused every client).
        let lapsed = current
            .lists_expire
            .is_some_and(|expire| std::time::SystemTime::now() > expire);
        let mut checked = peer
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !lapsed
            && checked
                .as_ref()
                .is_some_and(|tls| Arc::ptr_eq(tls, &current))
        {
            return Ok(());
        }
        let (Some(leaf), Some(verifier)) = (&peer.certificate, &current.verifier) else {
            return Err("no_client_certificate");
        };
        match verifier.verify_client_cert(
            leaf,
            &peer.intermediates,
            rustls_pki_types::UnixTime::now(),
        ) {
            Ok(_) => {
                *checked = Some(current);
                Ok(())
            }
            Err(error) => Err(certificate_failure(&error).0),
        }
    }

    /// With a revocation list file, looks at it every [`CRL_RECHECK`] until `stop`, on the blocking pool, and
    /// takes a new version that can be used. Without one, returns at once.
    pub(crate) async fn watch_revocation_lists(self, stop: tokio_util::sync::CancellationToken) {
        let Some(file) = self.crl_file.clone() else {
            return;
        };
        let tls = Arc::new(self);
        let mut ticks = tokio::time::interval(CRL_RECHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is now: the file was just read.
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let (file, tls) = (file.clone(), tls.clone());
            // A panic in the blocking task (none is expected) leaves the lists in use.
            let _ = tokio::task::spawn_blocking(move || file.refresh(&tls)).await;
        }
    }
}

/// Runs a client's TLS handshake, within `timeout`. On failure, the `tls_rejected` record to write.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    timeout: Duration,
    under: Arc<Tls>,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<(TlsStream<TcpStream>, TlsPeer), AuditEvent> {
    let (reason, detail) = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let chain: Vec<CertificateDer<'static>> = stream
                .get_ref()
                .1
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| c.clone().into_owned())
                .collect();
            let certificate = chain.first().cloned();
            let not_after = chain_not_after(&chain);
            let intermediates = chain.get(1..).unwrap_or_default().into();
            // Its names, or, for one whose names are not read (none, too many, two CNs, a CN in another string
            // type), its SHA-256 fingerprint: a record always says which certificate it was (a red team's round).
            let subject = certificate.as_ref().map(|leaf| {
                let named = client_names(leaf)
                    .filter(|names| !names.is_empty())
                    .map(|names| listed_names(&names));
                Arc::from(named.unwrap_or_else(|| fingerprint(leaf)))
            });
            return Ok((
                stream,
                TlsPeer {
                    addr,
                    certificate,
                    intermediates,
                    not_after,
                    checked: Arc::new(std::sync::Mutex::new(Some(under))),
                    subject,
                },
            ));
        }
        Ok(Err(error)) => handshake_failure(&error),
        Err(_) => ("handshake_timeout", None),
    };
    Err(AuditEvent::TlsRejected {
        reason,
        detail: detail.map(|d| shorten_str(&d)),
        peer: addr.to_string(),
    })
}

/// Sorts a failed handshake into an audit reason and detail.
fn handshake_failure(error: &std::io::Error) -> (&'static str, Option<String>) {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => certificate_failure(tls),
        None => ("handshake_failed", Some(error.to_string())),
    }
}

/// Sorts a refused client certificate (or another TLS failure) into an audit reason and detail.
fn certificate_failure(error: &rustls::Error) -> (&'static str, Option<String>) {
    match error {
        rustls::Error::NoCertificatesPresented => ("no_client_certificate", None),
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => {
            ("revoked_client_certificate", Some(error.to_string()))
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::ExpiredRevocationList
            | rustls::CertificateError::ExpiredRevocationListContext { .. },
        ) => ("expired_revocation_list", Some(error.to_string())),
        rustls::Error::InvalidCertificate(_) => {
            ("untrusted_client_certificate", Some(error.to_string()))
        }
        _ => ("handshake_failed", Some(error.to_string())),
    }
}

/// A certificate's SHA-256 fingerprint, `sha256:` and lowercase hex.
fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        base16ct::lower::encode_string(&sha2::Sha256::digest(certificate.as_ref()))
    )
}

/// When a chain a client presented stops being valid: when the first of its certificates does (an intermediate
/// CA's end ends a connection made under it, as its leaf's does; red-team finding: only the leaf's was looked at).
/// `None` when none can be read.
fn chain_not_after(chain: &[CertificateDer<'_>]) -> Option<std::time::SystemTime> {
    chain.iter().filter_map(not_after).min()
}

/// When a certificate stops being valid, if it can be read.
fn not_after(certificate: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    use x509_cert::der::Decode;
    let certificate = x509_cert::Certificate::from_der(certificate.as_ref()).ok()?;
    Some(
        certificate
            .tbs_certificate
            .validity
            .not_after
            .to_system_time(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CA, a server certificate for `localhost` signed by it, and a revocation list of it revoking nothing: PEM.
    pub(crate) struct Pki {
        pub(crate) ca: String,
        pub(crate) cert: String,
        pub(crate) key: String,
        pub(crate) crl: String,
    }

    pub(crate) fn pki() -> Pki {
        let (ca, key, cert) = server_under_a_ca();
        Pki {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            crl: revocation_list(&ca, 2098, 1),
        }
    }

    /// A CA that signs certificates and revocation lists, and a server's key and certificate for `localhost` it
    /// signed.
    fn server_under_a_ca() -> (
        rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        rcgen::KeyPair,
        rcgen::Certificate,
    ) {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (ca, key, cert)
    }

    /// The server's TLS for `cert` and `key`, clients of `ca`, with the revocation lists of `file`.
    fn watching(
        file: &Path,
        ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        key: &rcgen::KeyPair,
        cert: &rcgen::Certificate,
    ) -> ServerTls {
        ServerTls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap()
            .client_ca(ca.pem().as_bytes())
            .unwrap()
            .revocation_lists_file(file)
            .unwrap()
    }

    /// A revocation list of `ca` revoking nothing, issued on 1 January of `year` and good until 2099: PEM.
    fn revocation_list(
        ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        year: i32,
        number: u64,
    ) -> String {
        use rcgen::{CertificateRevocationListParams, KeyIdMethod, SerialNumber, date_time_ymd};
        CertificateRevocationListParams {
            this_update: date_time_ymd(year, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(ca)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// A red team's round: a list whose algorithm the TLS library does not verify (SHA-1, P-256 with SHA-512) passed
    /// a first check made with another library's algorithms, then failed every handshake; a list of a CA whose key
    /// usage does not allow `cRLSign` was taken. Both are refused as they are loaded, each saying why.
    #[test]
    fn a_list_the_handshakes_could_not_verify_is_refused_as_it_is_loaded() {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        };
        let (ca, _, _) = server_under_a_ca();
        let cas = [ca.der().clone()];
        let list = revocation_list(&ca, 2098, 1);
        let der = CertificateRevocationListDer::from_pem_slice(list.as_bytes()).unwrap();
        check_signed(&der, &cas).unwrap();
        // The same list, its outer algorithm made ECDSA with SHA-512 (1.2.840.10045.4.3.4): the last of the two
        // places the identifier is written (the signed one is the first).
        let sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let mut bytes = der.as_ref().to_vec();
        let at = bytes
            .windows(sha256.len())
            .rposition(|window| window == sha256)
            .expect("an ECDSA with SHA-256 list");
        bytes[at + sha256.len() - 1] = 0x04;
        let refused = check_signed(&CertificateRevocationListDer::from(bytes), &cas)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("algorithm"), "{refused}");

        // The same CA (its name and key) in a certificate whose key usage leaves out `cRLSign` (rcgen signs no
        // list with such a CA: the list is the one above).
        let ca_with = |usages: Vec<KeyUsagePurpose>| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = usages;
            let key = KeyPair::from_pem(&ca.key().serialize_pem()).unwrap();
            CertifiedIssuer::self_signed(params, key).unwrap()
        };
        let no_crl_sign = ca_with(vec![KeyUsagePurpose::KeyCertSign]);
        let refused = check_signed(&der, &[no_crl_sign.der().clone()])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cRLSign"), "{refused}");
        let crl_sign = ca_with(vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]);
        check_signed(&der, &[crl_sign.der().clone()]).unwrap();
    }

    /// A round's finding: a list in a name no client CA has (its signature unchecked until a handshake) had to be in
    /// every later file, so a file without it was refused for ever; only the client CAs' own lists, checked as they
    /// load, must be. An older copy of it is refused like any other (the next round's).
    #[test]
    fn a_list_of_an_unknown_issuer_does_not_hold_back_the_next_file() {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let (ca, key, cert) = server_under_a_ca();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "anyone");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let stranger = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crl.pem");
        std::fs::write(
            &file,
            revocation_list(&ca, 2098, 1) + &revocation_list(&stranger, 2098, 1),
        )
        .unwrap();
        let tls = watching(&file, &ca, &key, &cert);
        let crl_file = tls.crl_file.clone().unwrap();
        let before = crl_file.current();
        // An older list of the other issuer beside the CA's: refused (the next round's finding: an intermediate's
        // older list, copied back, un-revoked its client).
        std::fs::write(
            &file,
            revocation_list(&ca, 2098, 1) + &revocation_list(&stranger, 2097, 1) + "\n",
        )
        .unwrap();
        crl_file.refresh(&tls);
        assert!(
            Arc::ptr_eq(&before, &crl_file.current()),
            "an older list is not taken"
        );
        // The CA's next list alone, in a file of another size (so that it is read again).
        std::fs::write(&file, revocation_list(&ca, 2098, 22)).unwrap();
        crl_file.refresh(&tls);
        assert!(
            !Arc::ptr_eq(&before, &crl_file.current()),
            "the CA's list alone is taken"
        );
    }

    /// Red-team finding: an older revocation list copied back over the file (one from before a client was revoked)
    /// was taken at the next look, and the revoked client was served again. A list older than the one in use for
    /// its issuer (its `thisUpdate`), or a file without a list of an issuer the lists in use have, is not taken.
    #[test]
    fn an_older_revocation_list_is_not_taken_in_place_of_the_one_in_use() {
        let (ca, key, cert) = server_under_a_ca();
        let list = |year: i32, number: u64| revocation_list(&ca, year, number);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crl.pem");
        std::fs::write(&file, list(2098, 1001)).unwrap();
        let tls = watching(&file, &ca, &key, &cert);
        let crl_file = tls.crl_file.clone().unwrap();
        let in_use = crl_file.current();
        // The older list, rolled back over the file (its length differs, so the file reads as changed).
        std::fs::write(&file, list(2097, 1000) + "\n").unwrap();
        crl_file.refresh(&tls);
        assert!(
            Arc::ptr_eq(&in_use, &crl_file.current()),
            "the older list was taken"
        );
        // Red-team finding: the older list put before the one in use, in one file, was taken (a handshake reads the
        // first list of an issuer). A file holds one list per CA: two of one are not taken, in either order.
        for (first, second) in [((2097, 1000), (2098, 1001)), ((2098, 1001), (2097, 1000))] {
            std::fs::write(&file, list(first.0, first.1) + &list(second.0, second.1)).unwrap();
            crl_file.refresh(&tls);
            assert!(
                Arc::ptr_eq(&in_use, &crl_file.current()),
                "two lists of one CA were taken: {first:?}, {second:?}"
            );
        }
        // Red-team finding: a list of the same thisUpdate with a lower CRL number was taken; numbers only grow
        // (RFC 5280 section 5.2.3).
        std::fs::write(&file, list(2098, 999) + "\n\n\n").unwrap();
        crl_file.refresh(&tls);
        assert!(
            Arc::ptr_eq(&in_use, &crl_file.current()),
            "a list of a lower number was taken"
        );
        // A newer one is.
        std::fs::write(&file, list(2098, 1002) + "\n\n").unwrap();
        crl_file.refresh(&tls);
        assert!(!Arc::ptr_eq(&in_use, &crl_file.current()));
        // And lists given whole hold one per CA too.
        let refused = ServerTls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap()
            .client_ca(ca.pem().as_bytes())
            .unwrap()
            .revocation_lists((list(2097, 1000) + &list(2098, 1001)).as_bytes())
            .map(|_| ())
            .unwrap_err();
        assert!(refused.to_string().contains("two lists of"), "{refused}");
    }

    /// Red-team findings: a CN `pod-0, uri:spiffe://example.org/admin` was shown in a refusal's record as a CN
    /// `pod-0` and a URI would be; and a certificate of more than 64 names was refused as having none.
    #[test]
    fn a_refusals_names_read_as_they_are_and_too_many_are_said_so() {
        let names = [
            ClientName::CommonName("pod-0, uri:spiffe://example.org/admin".into()),
            ClientName::Uri("spiffe://example.org/reader".into()),
            ClientName::CommonName(" padded".into()),
        ];
        assert_eq!(
            listed_names(&names),
            r#""pod-0, uri:spiffe://example.org/admin", uri:spiffe://example.org/reader, " padded""#
        );
        assert_eq!(
            listed_names(&[ClientName::CommonName("alice".into())]),
            "alice"
        );
        // Red-team finding: a CN `uri:spiffe://x/admin` read as a URI would, a CN `cn:alice` as the CN `alice` in
        // a mapping's syntax, and a zero-width space or a right-to-left override was written raw.
        assert_eq!(
            listed_names(&[
                ClientName::CommonName("uri:spiffe://x/admin".into()),
                ClientName::CommonName("CN:alice".into()),
                ClientName::CommonName("alice\u{200b}".into()),
                ClientName::Uri("spiffe://x/\u{202e}nimda".into()),
            ]),
            r#""uri:spiffe://x/admin", "CN:alice", "alice\u{200b}", "uri:spiffe://x/\u{202e}nimda""#
        );
        // A round's finding: a CN written as a nameless certificate's fingerprint read as that certificate.
        assert_eq!(
            listed_names(&[ClientName::CommonName("SHA256:bbd4".into())]),
            r#""SHA256:bbd4""#
        );
        let mut params = rcgen::CertificateParams::new(
            (0..70).map(|i| format!("n{i}.example")).collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let many = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let pki = pki();
        let auth = MtlsAuth::from_pem(pki.cert.as_bytes(), pki.key.as_bytes(), pki.ca.as_bytes())
            .unwrap()
            .client("alice", Grant::parse("x").unwrap());
        assert_eq!(auth.caller(many.der()).err(), Some(Unmapped::TooManyNames));
    }

    /// Red-team finding: a connection's certificate was checked again against its own `notAfter` only, so a
    /// connection made under an intermediate CA that then expired went on being served (every 5 s, for ever), where
    /// a new connection was refused. The chain stops being valid when the first of its certificates does.
    #[test]
    fn a_chain_is_valid_until_the_first_of_its_certificates_expires() {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, date_time_ymd,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_after = date_time_ymd(2040, 1, 1);
        let intermediate =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &root).unwrap();
        let mut params = CertificateParams::new(vec!["alice".to_owned()]).unwrap();
        params.not_after = date_time_ymd(2050, 1, 1);
        let leaf = params
            .signed_by(&KeyPair::generate().unwrap(), &intermediate)
            .unwrap();
        let chain = [leaf.der().clone(), intermediate.der().clone()];
        let until = chain_not_after(&chain).unwrap();
        let year_2040 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_208_988_800);
        assert_eq!(until, year_2040);
        assert_eq!(chain_not_after(&chain[..1]), not_after(&chain[0]));
        assert_eq!(chain_not_after(&[]), None);
    }

    /// Review finding: no builder order or combination may leave client certificates unchecked while the code
    /// reads as if they were: revocation lists without a client CA, mutual TLS without one, and a client CA given
    /// after the lists (which made the configuration again without them) are refused.
    #[test]
    fn the_listeners_tls_refuses_what_it_could_not_enforce() {
        let pki = pki();
        let plain = ServerTls::from_pem(pki.cert.as_bytes(), pki.key.as_bytes()).unwrap();
        assert!(!plain.requires_client_certificates());
        assert!(plain.acceptor().2.verifier.is_none());
        let error = plain
            .clone()
            .revocation_lists(pki.crl.as_bytes())
            .err()
            .unwrap();
        assert!(error.to_string().contains("need a client CA"), "{error}");
        let error = MtlsAuth::new(plain.clone()).err().unwrap();
        assert!(error.to_string().contains("needs a client CA"), "{error}");

        let checked = plain.client_ca(pki.ca.as_bytes()).unwrap();
        assert!(checked.requires_client_certificates());
        assert!(checked.acceptor().2.verifier.is_some());
        let revoking = checked.revocation_lists(pki.crl.as_bytes()).unwrap();
        let error = revoking.client_ca(pki.ca.as_bytes()).err().unwrap();
        assert!(
            error.to_string().contains("before its revocation lists"),
            "{error}"
        );
        let mtls = MtlsAuth::from_pem(pki.cert.as_bytes(), pki.key.as_bytes(), pki.ca.as_bytes())
            .unwrap()
            .revocation_lists(pki.crl.as_bytes())
            .unwrap();
        assert!(mtls.tls().requires_client_certificates());
    }

    #[test]
    fn mappings_parse_as_name_equals_scopes() {
        let (name, grant) = MtlsAuth::parse_client("alice=files.read files.write").unwrap();
        assert_eq!(name, ClientName::from("alice"));
        assert_eq!(grant, Grant::parse("files.read,files.write").unwrap());
        let (name, grant) = MtlsAuth::parse_client("monitor=").unwrap();
        assert_eq!(name, ClientName::CommonName("monitor".into()));
        assert_eq!(grant, Grant::none());
        let (name, _) =
            MtlsAuth::parse_client("uri:spiffe://example.org/ns/prod/sa/reader=files.read")
                .unwrap();
        assert_eq!(
            name,
            ClientName::Uri("spiffe://example.org/ns/prod/sa/reader".into())
        );
        assert_eq!(name.value(), "spiffe://example.org/ns/prod/sa/reader");
        assert_eq!(
            name.to_string(),
            "uri:spiffe://example.org/ns/prod/sa/reader"
        );
        let (name, _) = MtlsAuth::parse_client("dns:bot.example.org=files.read").unwrap();
        assert_eq!(name, ClientName::Dns("bot.example.org".into()));
        let (name, _) = MtlsAuth::parse_client("email:ops@example.org=").unwrap();
        assert_eq!(name, ClientName::Email("ops@example.org".into()));
        // A CN that looks like a kind of name is written with `cn:`.
        let (name, _) = MtlsAuth::parse_client("cn:uri:odd=").unwrap();
        assert_eq!(name, ClientName::CommonName("uri:odd".into()));
        assert!(MtlsAuth::parse_client("no-equals").is_err());
        assert!(MtlsAuth::parse_client("=files.read").is_err());
        assert!(MtlsAuth::parse_client("uri:=files.read").is_err());
        assert!(MtlsAuth::parse_client("bob=files.read *").is_err());
    }

    /// A red team's (round 35): a certificate naming `READER-BOT.EXAMPLE` was refused `unknown_client` though
    /// `dns:reader-bot.example` was mapped: DNS names are compared without case, read and mapped in lower case.
    #[test]
    fn dns_names_are_mapped_whatever_their_case() {
        let (name, _) = MtlsAuth::parse_client("dns:Reader-Bot.Example=files.read").unwrap();
        assert_eq!(name, ClientName::Dns("reader-bot.example".into()));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["READER-BOT.EXAMPLE".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let names = client_names(certificate.der()).unwrap();
        assert!(
            names.contains(&ClientName::Dns("reader-bot.example".into())),
            "{names:?}"
        );
    }

    /// Left by that round: `email:` domains and `uri:` schemes and hosts were compared with their case (failing
    /// closed). They are normalized as DNS names are; a mailbox's local part and a URI's path keep theirs.
    #[test]
    fn email_domains_and_uri_hosts_are_mapped_whatever_their_case() {
        let (email, _) = MtlsAuth::parse_client("email:Ops@Example.ORG=files.read").unwrap();
        assert_eq!(email, ClientName::Email("Ops@example.org".into()));
        let (uri, _) =
            MtlsAuth::parse_client("uri:SPIFFE://Example.org/Reader=files.read").unwrap();
        assert_eq!(uri, ClientName::Uri("spiffe://example.org/Reader".into()));
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![
            rcgen::SanType::Rfc822Name("Ops@EXAMPLE.org".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://EXAMPLE.ORG/Reader".try_into().unwrap()),
        ];
        let certificate = params.self_signed(&key).unwrap();
        let names = client_names(certificate.der()).unwrap();
        assert!(names.contains(&email), "{names:?}");
        assert!(names.contains(&uri), "{names:?}");
        // Other case in the local part or the path is another name.
        assert_ne!(
            ClientName::parse("email:ops@example.org"),
            ClientName::parse("email:Ops@example.org")
        );
        assert_ne!(
            ClientName::parse("uri:spiffe://example.org/reader"),
            ClientName::parse("uri:spiffe://example.org/Reader")
        );
        assert_eq!(
            uri_lowercased("HTTPS://User@Host.Example:8443/Path?Q#F"),
            "https://User@host.example:8443/Path?Q#F"
        );
    }
}
