//! `secure-file-server`: an MCP server over stdio (or, with `--http`, token- or mTLS-protected streamable HTTP) with two tools, `read_file` and `write_file`, confined to one
//! directory. `secure-file-server demo` runs the end-to-end story against itself.

mod demo;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secure_tools::Grant;
use secure_tools::ToolSet;
use secure_tools::fs::{Limits, Root};
use secure_tools::rmcp::model::Implementation;
use secure_tools::serve::http::HttpConfig;
use secure_tools::serve::http::mtls::MtlsAuth;
use secure_tools::serve::http::{BearerAuth, VerificationKeys};
use secure_tools::serve::{CallLimits, StdioConfig, VersionPolicy};

/// An MCP file server an LLM cannot talk out of its directory.
///
/// Serves `read_file` (scope `files.read`) and `write_file` (scope `files.write`) over stdio. Every file operation
/// is made relative to the data root, opened once at start; every call is checked against the caller's scopes
/// and audited, one JSON line per call.
#[derive(Debug, Parser)]
#[command(name = "secure-file-server", version)]
struct Cli {
    /// The directory the tools may read and write (files directly inside it, no subdirectories).
    #[arg(long, env = "DATA_ROOT", value_name = "DIR")]
    data_root: Option<PathBuf>,

    /// The scopes the stdio caller holds, comma- or space-separated: `files.read`, `files.write`. Unset or empty
    /// grants nothing, so every call is denied.
    #[arg(long, env = "MCP_SCOPES", value_name = "SCOPES", default_value = "")]
    scopes: String,

    /// The id stamped on every audit record.
    #[arg(
        long,
        env = "MCP_SERVER_ID",
        value_name = "ID",
        default_value = "secure-file-server"
    )]
    server_id: String,

    /// Append audit records to this file (it must not be inside the data root). Default: standard error.
    #[arg(long, env = "MCP_AUDIT_LOG", value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// The largest file `read_file` returns, in bytes.
    #[arg(long, env = "MAX_READ_BYTES", value_name = "BYTES", default_value_t = Limits::default().max_read_bytes)]
    max_read_bytes: u64,

    /// The largest content `write_file` accepts, in bytes of UTF-8 after line endings are normalised.
    #[arg(long, env = "MAX_WRITE_BYTES", value_name = "BYTES", default_value_t = Limits::default().max_write_bytes)]
    max_write_bytes: u64,

    /// The largest incoming MCP message, in bytes.
    #[arg(long, env = "MCP_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    max_message_bytes: Option<usize>,

    /// How often each caller may call each tool, e.g. `60/min` (`10/s`, `1000/hour`); past it, calls are refused
    /// `rate_limited` with the time to wait. Default: no limit.
    #[arg(long, env = "MCP_RATE_LIMIT", value_name = "RATE")]
    rate_limit: Option<String>,

    /// How long a tool may run before it is stopped, e.g. `30s` (`500ms`, `2min`); the call is then refused
    /// `timeout`. Default: 60s.
    #[arg(long, env = "MCP_TOOL_TIMEOUT", value_name = "DURATION")]
    tool_timeout: Option<String>,

    /// How many calls may run at once; one more is refused `overloaded`. Default: 64.
    #[arg(long, env = "MCP_MAX_CONCURRENT_CALLS", value_name = "N")]
    max_concurrent_calls: Option<String>,

    /// Refuse clients asking for a protocol version older than this (e.g. `2025-06-18`).
    #[arg(long, env = "MCP_MIN_PROTOCOL_VERSION", value_name = "VERSION")]
    min_protocol_version: Option<String>,

    /// Serve MCP over streamable HTTP at this address (`127.0.0.1:PORT`) instead of stdio; the endpoint is
    /// `/mcp`. Requires bearer authentication: `--issuer`, `--resource-url` and one of `--jwks-file`,
    /// `--public-key-pem`, `MCP_AUTH_HS256_SECRET`; or, instead, mutual TLS: `--tls-cert`, `--tls-key`,
    /// `--client-ca` and `--mtls-client`.
    #[arg(long, env = "MCP_HTTP", value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,

    /// FOR TESTING ONLY (the MCP conformance suite, which cannot send a token): with `--http`, serve without any
    /// authentication; every caller is anonymous and holds `--scopes`. Refused with a non-loopback address or
    /// alongside bearer or mTLS options. No environment variable, so it is never on by accident.
    #[arg(long, requires = "http")]
    http_insecure_no_auth: bool,

    /// The issuer (`iss`) access tokens must come from.
    #[arg(long, env = "MCP_AUTH_ISSUER", value_name = "URL")]
    issuer: Option<String>,

    /// This server's resource URL, e.g. `https://mcp.example.com/mcp`: the audience (`aud`) tokens must name.
    #[arg(long, env = "MCP_RESOURCE_URL", value_name = "URL")]
    resource_url: Option<String>,

    /// Authorization servers listed in the protected resource metadata (default: the issuer).
    #[arg(
        long = "authorization-server",
        env = "MCP_AUTHORIZATION_SERVERS",
        value_name = "URL",
        value_delimiter = ','
    )]
    authorization_servers: Vec<String>,

    /// Verify tokens with the keys of this JWKS file.
    #[arg(long, env = "MCP_AUTH_JWKS_FILE", value_name = "FILE")]
    jwks_file: Option<PathBuf>,

    /// Verify tokens with the keys of the JWKS at this URL, fetched at start and again, at most every 30 s, when a
    /// token names a key it does not hold. `https://` (checked against the Mozilla roots and `--jwks-ca`), or
    /// `http://` to a loopback host only.
    #[arg(long, env = "MCP_AUTH_JWKS_URL", value_name = "URL")]
    jwks_url: Option<String>,

    /// Also trust the CA certificate(s) in this PEM file for an `https://` `--jwks-url` (a private identity provider).
    #[arg(
        long,
        env = "MCP_AUTH_JWKS_CA",
        value_name = "FILE",
        requires = "jwks_url"
    )]
    jwks_ca: Option<PathBuf>,

    /// Verify tokens with this RSA or EC public key (PEM).
    #[arg(long, env = "MCP_AUTH_PUBLIC_KEY_PEM", value_name = "FILE")]
    public_key_pem: Option<PathBuf>,

    /// With `--http`: how long a client has to send a request head, on a new or an idle connection, e.g. `10s`.
    #[arg(long, env = "MCP_HTTP_HEADER_TIMEOUT", value_name = "DURATION")]
    http_header_timeout: Option<String>,

    /// With `--http`: how many connections may be open at once (default 1024, and never more than the descriptor
    /// limit leaves).
    #[arg(long, env = "MCP_HTTP_MAX_CONNECTIONS", value_name = "N")]
    http_max_connections: Option<usize>,

    /// Browser origins allowed besides loopback ones, comma-separated (`https://app.example.com`).
    #[arg(
        long = "allowed-origin",
        env = "MCP_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// Host names accepted in `Host` besides loopback ones, comma-separated (for a server behind a proxy).
    #[arg(
        long = "allowed-host",
        env = "MCP_ALLOWED_HOSTS",
        value_name = "HOST",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,

    /// Mutual TLS: this server's certificate chain (PEM, leaf first). With `--http`, serve HTTPS and authenticate
    /// callers by client certificate instead of bearer token.
    #[arg(long, env = "MCP_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// Mutual TLS: this server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "MCP_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Mutual TLS: the CA certificate(s) (PEM) client certificates must be signed by; clients without such a
    /// certificate fail the TLS handshake.
    #[arg(long, env = "MCP_TLS_CLIENT_CA", value_name = "FILE")]
    client_ca: Option<PathBuf>,

    /// Mutual TLS: map client certificates with subject CN `CN` to the caller `CN` holding `SCOPES`
    /// (`alice=files.read files.write`). Repeat for each client; in the environment, separate them with `;`.
    /// A verified certificate whose CN is not mapped is refused with 403.
    #[arg(
        long = "mtls-client",
        env = "MCP_MTLS_CLIENTS",
        value_name = "CN=SCOPES",
        value_delimiter = ';'
    )]
    mtls_clients: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// The HS256 secret comes only from the environment, never from the command line, where other users could see it.
const HS256_SECRET_VAR: &str = "MCP_AUTH_HS256_SECRET";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: start this server twice with different scopes, call its tools with an MCP client, and print
    /// what happened and what was audited.
    Demo,
    /// FOR TESTING ONLY: print an HS256 access token signed with `MCP_AUTH_HS256_SECRET`. Real tokens come from
    /// your authorization server.
    MintToken {
        /// The issuer (`iss`).
        #[arg(long)]
        issuer: String,
        /// The audience (`aud`): the server's resource URL.
        #[arg(long)]
        audience: String,
        /// The subject (`sub`), the caller's identity in audit records.
        #[arg(long)]
        subject: String,
        /// The scopes, space- or comma-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Some(Command::Demo) => runtime.block_on(demo::run()),
        Some(Command::MintToken {
            ref issuer,
            ref audience,
            ref subject,
            ref scopes,
            ttl,
        }) => mint_token(issuer, audience, subject, scopes, ttl),
        None => runtime.block_on(serve(cli)),
    };
    // Standard input is read on a thread of its own; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("secure-file-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> Result<(), String> {
    let data_root = cli
        .data_root
        .clone()
        .ok_or("no data root: set DATA_ROOT or pass --data-root DIR (see --help)")?;
    let limits = Limits {
        max_read_bytes: cli.max_read_bytes,
        max_write_bytes: cli.max_write_bytes,
    };
    let root = Root::open(&data_root, limits).map_err(|e| e.to_string())?;
    let grant = Grant::parse(&cli.scopes)
        .map_err(|e| format!("invalid scopes (MCP_SCOPES / --scopes): {e}"))?;
    if let Some(log) = &cli.audit_log {
        refuse_audit_log_inside(log, &data_root)?;
    }

    let limits = CallLimits::parse(
        cli.rate_limit.as_deref(),
        cli.tool_timeout.as_deref(),
        cli.max_concurrent_calls.as_deref(),
    )
    .map_err(|e| e.to_string())?;

    let tools = ToolSet::builder(root)
        .tool::<tools::read_file>()
        .tool::<tools::write_file>();
    let tools = limits.apply(tools);
    if let Some(bind) = cli.http {
        if cli.http_insecure_no_auth {
            return serve_http_insecure(cli, bind, tools, grant).await;
        }
        return serve_http(cli, bind, tools).await;
    }

    let mut config = StdioConfig::default();
    config.grant = grant;
    config.server_id = Some(cli.server_id);
    config.audit_log = cli.audit_log;
    config.server_info = Implementation::new("secure-file-server", env!("CARGO_PKG_VERSION"));
    if let Some(max) = cli.max_message_bytes {
        config.max_message_bytes = max;
    }
    if let Some(text) = cli.min_protocol_version {
        config.versions = VersionPolicy::minimum_named(&text)?;
    }

    config.serve(tools).await.map_err(|e| e.to_string())
}

async fn serve_http(
    cli: Cli,
    bind: std::net::SocketAddr,
    tools: secure_tools::ToolSetBuilder<Root>,
) -> Result<(), String> {
    let mut config = HttpConfig::default();
    if cli.tls_cert.is_some() || cli.tls_key.is_some() || cli.client_ca.is_some() {
        config.mtls = Some(mtls_auth(&cli)?);
        return serve_http_with(cli, bind, tools, config).await;
    }
    if !cli.mtls_clients.is_empty() {
        return Err("--mtls-client needs --tls-cert, --tls-key and --client-ca".into());
    }
    let issuer = cli
        .issuer
        .clone()
        .ok_or("--http needs --issuer (MCP_AUTH_ISSUER)")?;
    let resource = cli
        .resource_url
        .clone()
        .ok_or("--http needs --resource-url (MCP_RESOURCE_URL)")?;
    let secret = std::env::var(HS256_SECRET_VAR)
        .ok()
        .filter(|s| !s.is_empty());
    let keys = match (&cli.jwks_file, &cli.public_key_pem, secret) {
        (file, pem, secret) if cli.jwks_url.is_some() => {
            if file.is_some() || pem.is_some() || secret.is_some() {
                return Err(format!(
                    "give exactly one key source: --jwks-url, --jwks-file, --public-key-pem or {HS256_SECRET_VAR}"
                ));
            }
            let url = cli.jwks_url.as_deref().unwrap_or_default();
            let ca = match &cli.jwks_ca {
                Some(path) => {
                    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => Vec::new(),
            };
            VerificationKeys::jwks_url_with_ca(url, &ca)
                .await
                .map_err(|e| e.to_string())?
        }
        (Some(path), None, None) => VerificationKeys::jwks_file(path).map_err(|e| e.to_string())?,
        (None, Some(path), None) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            VerificationKeys::public_key_pem(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, None, Some(secret)) => VerificationKeys::hmac_secret(secret.as_bytes())
            .map_err(|e| format!("{HS256_SECRET_VAR}: {e}"))?,
        (None, None, None) => {
            return Err(format!(
                "--http needs a key: --jwks-file, --public-key-pem or {HS256_SECRET_VAR}"
            ));
        }
        _ => {
            return Err(format!(
                "give exactly one key source: --jwks-file, --public-key-pem or {HS256_SECRET_VAR}"
            ));
        }
    };
    let mut auth = BearerAuth::new(issuer, resource, keys);
    if !cli.authorization_servers.is_empty() {
        auth = auth.authorization_servers(cli.authorization_servers.clone());
    }
    config.auth = Some(auth);
    serve_http_with(cli, bind, tools, config).await
}

/// `--http-insecure-no-auth`: no authentication, loopback only, every caller anonymous with `--scopes`.
async fn serve_http_insecure(
    cli: Cli,
    bind: std::net::SocketAddr,
    tools: secure_tools::ToolSetBuilder<Root>,
    grant: Grant,
) -> Result<(), String> {
    if !bind.ip().is_loopback() {
        return Err(
            "--http-insecure-no-auth only binds a loopback address (127.0.0.1, ::1)".into(),
        );
    }
    let auth_options = cli.issuer.is_some()
        || cli.resource_url.is_some()
        || cli.jwks_file.is_some()
        || cli.jwks_url.is_some()
        || cli.public_key_pem.is_some()
        || cli.tls_cert.is_some()
        || cli.tls_key.is_some()
        || cli.client_ca.is_some()
        || !cli.mtls_clients.is_empty()
        || std::env::var_os(HS256_SECRET_VAR).is_some_and(|s| !s.is_empty());
    if auth_options {
        return Err("--http-insecure-no-auth takes no bearer or mutual TLS options".into());
    }
    eprintln!(
        "secure-file-server: warning: --http-insecure-no-auth is for testing only: no authentication, every \
         caller is anonymous with scopes `{}`",
        cli.scopes
    );
    let mut config = HttpConfig::default();
    config.anonymous_grant = grant;
    serve_http_with(cli, bind, tools, config).await
}

/// Mutual TLS from `--tls-cert`, `--tls-key`, `--client-ca` and `--mtls-client`; bearer options are refused
/// alongside it.
fn mtls_auth(cli: &Cli) -> Result<MtlsAuth, String> {
    let (Some(cert), Some(key), Some(ca)) = (&cli.tls_cert, &cli.tls_key, &cli.client_ca) else {
        return Err("mutual TLS needs all of --tls-cert, --tls-key and --client-ca".into());
    };
    let bearer = cli.issuer.is_some()
        || cli.jwks_file.is_some()
        || cli.jwks_url.is_some()
        || cli.public_key_pem.is_some()
        || std::env::var_os(HS256_SECRET_VAR).is_some_and(|s| !s.is_empty());
    if bearer {
        return Err(
            "give bearer authentication (--issuer and a key) or mutual TLS (--tls-cert, --tls-key, --client-ca), \
             not both"
                .into(),
        );
    }
    if cli.mtls_clients.is_empty() {
        return Err(
            "mutual TLS needs at least one --mtls-client CN=SCOPES (MCP_MTLS_CLIENTS)".into(),
        );
    }
    let mut mtls = MtlsAuth::from_pem_files(cert, key, ca).map_err(|e| e.to_string())?;
    for spec in &cli.mtls_clients {
        let (cn, grant) =
            MtlsAuth::parse_client(spec).map_err(|e| format!("--mtls-client: {e}"))?;
        mtls = mtls.client(cn, grant);
    }
    Ok(mtls)
}

/// The options both authentication modes share.
async fn serve_http_with(
    cli: Cli,
    bind: std::net::SocketAddr,
    tools: secure_tools::ToolSetBuilder<Root>,
    mut config: HttpConfig,
) -> Result<(), String> {
    config.bind = bind;
    config.allowed_origins = cli.allowed_origins;
    config.allowed_hosts.extend(cli.allowed_hosts);
    config.server_id = Some(cli.server_id);
    config.audit_log = cli.audit_log;
    config.server_info = Implementation::new("secure-file-server", env!("CARGO_PKG_VERSION"));
    if let Some(max) = cli.max_message_bytes {
        config.max_request_body_bytes = max;
    }
    if let Some(text) = cli.min_protocol_version {
        config.versions = VersionPolicy::minimum_named(&text)?;
    }
    if let Some(text) = cli.http_header_timeout {
        config.header_read_timeout = secure_tools::call::parse_duration(&text)
            .map_err(|e| format!("--http-header-timeout: {e}"))?;
    }
    if let Some(max) = cli.http_max_connections {
        config.max_connections = max;
    }
    config.serve(tools).await.map_err(|e| e.to_string())
}

/// Mints an HS256 test token with the secret in `MCP_AUTH_HS256_SECRET`.
fn mint_token(
    issuer: &str,
    audience: &str,
    subject: &str,
    scopes: &str,
    ttl: u64,
) -> Result<(), String> {
    let secret = std::env::var(HS256_SECRET_VAR)
        .ok()
        .filter(|s| s.len() >= 32)
        .ok_or_else(|| format!("set {HS256_SECRET_VAR} to a secret of at least 32 bytes"))?;
    let grant = Grant::parse(scopes).map_err(|e| format!("--scopes: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": grant.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

/// An audit log inside the data root could be read, or overwritten, through the tools.
fn refuse_audit_log_inside(log: &Path, data_root: &Path) -> Result<(), String> {
    let root = data_root
        .canonicalize()
        .map_err(|e| format!("data root {}: {e}", data_root.display()))?;
    let log_abs = if log.is_absolute() {
        log.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(log)
    };
    // Resolve what exists: the file itself, or else its directory.
    let resolved = match log_abs.canonicalize() {
        Ok(path) => path,
        Err(_) => {
            let parent = log_abs.parent().unwrap_or(Path::new("/"));
            let parent = parent
                .canonicalize()
                .map_err(|e| format!("audit log directory {}: {e}", parent.display()))?;
            parent.join(log_abs.file_name().unwrap_or_default())
        }
    };
    if resolved.starts_with(&root) {
        return Err(format!(
            "the audit log {} is inside the data root {}; put it elsewhere, where the tools cannot reach it",
            log.display(),
            data_root.display()
        ));
    }
    Ok(())
}
