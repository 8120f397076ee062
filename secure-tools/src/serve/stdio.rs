//! The stdio runner: a tool set (or a server of your own) served over stdin and stdout, the transport MCP hosts
//! launch local servers with.

use rmcp::service::ServerInitializeError;
use rmcp::transport::Transport as _;
use rmcp::{RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;

use super::lifecycle::ServeError;
use super::settings::{Settings, Transport};
use super::{LineTransport, SecureServer, Secured};
use crate::toolset::{ToolSet, ToolSetBuilder};

<<<<<<< HEAD
/// Serves over stdin and stdout as `settings` say, within the shared lifecycle.
pub(super) async fn run<S, H, F>(
    settings: &Settings,
    tools: ToolSet<S>,
    secure: SecureServer<S>,
    make: F,
) -> Result<(), ServeError>
=======
/// The identity of the stdio caller in audit records.
pub const STDIO_CALLER: &str = "stdio";

/// How the stdio runner is set up; [`StdioConfig::from_env`] reads it from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StdioConfig {
    /// The grant of the one caller on the other end of the pipe.
    pub grant: Grant,
    /// The id stamped on audit records, if set.
    pub server_id: Option<String>,
    /// Append audit records to this file instead of writing them to standard error.
    pub audit_log: Option<PathBuf>,
    /// The largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// The protocol versions accepted.
    pub versions: VersionPolicy,
    /// Which tools `tools/list` shows.
    pub listing: Listing,
    /// The name and version announced to clients.
    pub server_info: Implementation,
    /// How long calls still running at shutdown may take to finish before they are stopped.
    pub shutdown_grace: std::time::Duration,
    /// Limits on every call: rate, timeout, concurrency.
    pub limits: super::CallLimits,
}

/// How long calls still running at shutdown may take to finish, unless configured: 10 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the stdio runner could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// `MCP_SCOPES` holds something that is not a scope.
    #[error("MCP_SCOPES: {0}")]
    Scopes(#[from] ScopeError),
    /// A variable holds a value that cannot be used.
    #[error("{name}: {message}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {path}: {source}")]
    AuditLog {
        /// The path.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A tool is not valid.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// Standard input or output failed.
    #[error("stdio: {0}")]
    Io(#[from] std::io::Error),
    /// The audit trail could not be flushed at shutdown.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl Default for StdioConfig {
    fn default() -> Self {
        StdioConfig {
            grant: Grant::none(),
            server_id: None,
            audit_log: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            versions: VersionPolicy::default(),
            listing: Listing::default(),
            server_info: Implementation::new("secure-tools", env!("CARGO_PKG_VERSION")),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            limits: super::CallLimits::default(),
        }
    }
}

impl StdioConfig {
    /// Reads the configuration from the environment:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `MCP_SCOPES` | the stdio caller's grant, comma- or space-separated; unset or empty grants nothing |
    /// | `MCP_SERVER_ID` | the id on audit records |
    /// | `MCP_AUDIT_LOG` | a file to append audit records to (default: standard error) |
    /// | `MCP_MAX_MESSAGE_BYTES` | the largest message accepted (default 4 MiB) |
    /// | `MCP_MIN_PROTOCOL_VERSION` | refuse clients asking for an older protocol version (strict policy) |
    /// | `MCP_RATE_LIMIT` | how often each caller may call each tool, e.g. `60/min` (default: no limit) |
    /// | `MCP_TOOL_TIMEOUT` | how long a handler may run, e.g. `30s` (default 60 s) |
    /// | `MCP_MAX_CONCURRENT_CALLS` | how many calls run at once (default 64) |
    /// | `MCP_SHUTDOWN_GRACE` | how long calls in flight may take to finish at SIGTERM, e.g. `5s` (default 10 s) |
    pub fn from_env() -> Result<Self, StdioError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = StdioConfig {
            grant: Grant::parse(&var("MCP_SCOPES").unwrap_or_default())?,
            server_id: var("MCP_SERVER_ID"),
            audit_log: var("MCP_AUDIT_LOG").map(PathBuf::from),
            limits: super::CallLimits::from_env().map_err(|e| StdioError::Invalid {
                name: e.name,
                message: e.message,
            })?,
            ..StdioConfig::default()
        };
        if let Some(text) = var("MCP_MAX_MESSAGE_BYTES") {
            config.max_message_bytes = text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or_else(|| StdioError::Invalid {
                    name: "MCP_MAX_MESSAGE_BYTES",
                    message: format!(
                        "expected a number of bytes, at least 1024; got `{}`",
                        text.escape_debug()
                    ),
                })?;
        }
        if let Some(text) = var("MCP_SHUTDOWN_GRACE") {
            config.shutdown_grace =
                crate::call::parse_duration(&text).map_err(|message| StdioError::Invalid {
                    name: "MCP_SHUTDOWN_GRACE",
                    message,
                })?;
        }
        if let Some(text) = var("MCP_MIN_PROTOCOL_VERSION") {
            config.versions =
                VersionPolicy::minimum_named(&text).map_err(|message| StdioError::Invalid {
                    name: "MCP_MIN_PROTOCOL_VERSION",
                    message,
                })?;
        }
        Ok(config)
    }

    /// Builds the tool set and serves it over stdin and stdout until the input ends or SIGTERM or SIGINT arrives;
    /// then flushes the audit trail and returns.
    pub async fn serve<S: Send + Sync + 'static>(
        self,
        builder: ToolSetBuilder<S>,
    ) -> Result<(), StdioError> {
        let builder = builder
            .runner_settings(
                self.server_id.as_deref(),
                self.limits,
                self.audit_log.as_deref(),
            )
            .map_err(|source| StdioError::AuditLog {
                path: self.audit_log.clone().unwrap_or_default(),
                source,
            })?;
        let tools = builder.build()?;
        let audit = tools.audit().clone();
        if self.grant.is_empty() {
            eprintln!(
                "secure-tools: warning: MCP_SCOPES is unset or empty, so the stdio caller holds no scope and every \
                 scoped tool call will be denied"
            );
        }
        audit.record(AuditEvent::ServerStart {
            transport: "stdio",
            tools: tools.definitions().map(|d| d.name().to_owned()).collect(),
            grant: Some(self.grant.iter().map(|s| s.to_string()).collect()),
            protocol_versions: self
                .versions
                .accepted()
                .iter()
                .map(|v| v.to_string())
                .collect(),
        })?;

        let server = SecureServer::new(tools.clone())
            .default_caller(Caller::new(STDIO_CALLER, self.grant))
            .listing(self.listing)
            .versions(self.versions)
            .server_info(self.server_info)
            .transport("stdio");
        let (input, output) = super::stdin::stdio()?;
        let mut transport =
            LineTransport::new(input, output, self.max_message_bytes, audit.clone())
                .hold_tool_arguments();
        let reason = run(server, transport.clone(), self.shutdown_grace).await;
        // Answers still queued, such as refusals of lines read before a session started, go out before the exit.
        if let Err(err) = Transport::<RoleServer>::close(&mut transport).await {
            tracing::debug!(error = %err, "the output could not be flushed at exit");
        }
        // Every call has its record before the stop record.
        tools.shutdown(self.shutdown_grace).await;
        audit.flush()?;
        audit.record(AuditEvent::ServerStop {
            reason: reason.into(),
        })?;
        audit.flush()?;
        Ok(())
    }
}

/// Serves sessions on one stream until it ends or a signal arrives; returns why it stopped. On a signal, calls in
/// flight get `grace` to finish (new ones are refused) before the session is closed.
async fn run<S, R, W>(
    server: SecureServer<S>,
    transport: LineTransport<R, W>,
    grace: std::time::Duration,
) -> &'static str
>>>>>>> 0c40cff (rmcp's debug logs: stdio keeps call arguments out of them; logging::filter() for every other transport)
where
    S: Send + Sync + 'static,
    H: ServerHandler + Clone,
    F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
{
    if let super::settings::Auth::None { grant } = &settings.auth
        && grant.is_empty()
    {
        eprintln!(
            "secure-tools: warning: MCP_SCOPES is unset or empty, so the stdio caller holds no scope and every \
             scoped tool call will be denied"
        );
    }
    let (input, output) = super::stdin::stdio()?;
    // Tool arguments travel in the request's extensions, out of rmcp's own debug logs.
    let transport = LineTransport::new(
        input,
        output,
        settings.max_message_bytes,
        tools.audit().clone(),
    )
    .hold_tool_arguments();
    super::lifecycle::run(&tools, "stdio", settings, |stop| async move {
        let ended = sessions(secure, make, transport.clone(), stop).await;
        // Answers still queued, such as refusals of lines read before a session started, go out before the exit.
        let mut transport = transport;
        if let Err(err) = rmcp::transport::Transport::<RoleServer>::close(&mut transport).await {
            tracing::debug!(error = %err, "the output could not be flushed at exit");
        }
        ended
    })
    .await
}

/// Serves sessions on one stream until it ends or `stop` is cancelled; says why it ended.
async fn sessions<S, H, F, R, W>(
    secure: SecureServer<S>,
    make: F,
    transport: LineTransport<R, W>,
    stop: CancellationToken,
) -> Result<&'static str, ServeError>
where
    S: Send + Sync + 'static,
    H: ServerHandler + Clone,
    F: Fn(SecureServer<S>) -> H,
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let session = secure.for_session();
        // The line transport writes the session and version records itself.
        let service = Secured::new(make(session.clone()), session).without_lifecycle_records();
        let started = tokio::select! {
            started = rmcp::serve_server(service, transport.clone()) => started,
            () = stop.cancelled() => return Ok("stopped"),
        };
        match started {
            Ok(running) => {
                let cancel = running.cancellation_token();
                let mut waiting = std::pin::pin!(running.waiting());
                tokio::select! {
                    _ = &mut waiting => return Ok("eof"),
                    () = stop.cancelled() => {
                        cancel.cancel();
                        let _ = waiting.await;
                        return Ok("stopped");
                    }
                }
            }
            // A refused `initialize` (a version outside a strict policy, say) was answered; the client may try
            // again on the same stream.
            Err(ServerInitializeError::InitializeFailed(error)) => {
                tracing::info!(%error, "initialize refused; waiting for another");
            }
            Err(ServerInitializeError::ConnectionClosed(_)) => return Ok("eof"),
            Err(error) => {
                tracing::error!(%error, "session ended before it started");
                return Err(ServeError::Io(std::io::Error::other(error.to_string())));
            }
        }
    }
}

/// Serves `builder`'s tools over stdin and stdout, configured from the environment and the config file it names ([`Settings::from_env`]).
///
/// ```no_run
/// # use secure_tools::{secure_tool, ToolError, ToolSet};
/// /// Says hello.
/// #[secure_tool(scope = "greet")]
/// async fn hello() -> Result<String, ToolError> {
///     Ok("hello".into())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), secure_tools::serve::ServeError> {
///     secure_tools::serve::serve_stdio(ToolSet::builder(()).tool::<hello>()).await
/// }
/// ```
pub async fn serve_stdio<S: Send + Sync + 'static>(
    builder: ToolSetBuilder<S>,
) -> Result<(), ServeError> {
    let settings = Settings::from_env().await?;
    if !matches!(settings.transport, Transport::Stdio) {
        return Err(ServeError::Config(
            "MCP_HTTP is set, but this server serves stdio only (see `Settings::serve`)".into(),
        ));
    }
    settings.serve(builder).await
}
