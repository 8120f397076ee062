//! The lifecycle every runner shares: build the tool set, write the start record, serve until the input ends, a
//! signal (SIGTERM, SIGINT) arrives or the settings' cancellation token is cancelled; then (over HTTP, after the
//! shutdown delay, if one is set) give the calls in flight their grace, stop, and write the stop record after every
//! call's own, flushed.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::ServerHandler;
use tokio_util::sync::CancellationToken;

use super::settings::{Settings, Transport};
use super::{SecureServer, VersionPolicy};
use crate::audit::AuditEvent;
use crate::call::Caller;
use crate::tool::DefinitionError;
use crate::toolset::{ToolSet, ToolSetBuilder};

/// The identity of the stdio caller in audit records.
pub const STDIO_CALLER: &str = "stdio";

/// Why a server could not start or stopped with an error.
///
/// Its `Debug` is its message and those of its causes it does not already say, so that a `main` returning
/// `Result<(), Box<dyn Error>>` prints them, not the variant's fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Settings could not be read or used.
    #[error(transparent)]
    Settings(#[from] super::settings::SettingsError),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {path} (--audit-log / MCP_AUDIT_LOG): {source}")]
    AuditLog {
        /// The path.
        path: std::path::PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A tool is not valid.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// Standard input or output, or the listening socket, failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The audit trail could not be written or flushed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The audit log did not take the server's first record (`server_start`): the server does not serve.
    #[error(
        "the audit log {path} (--audit-log / MCP_AUDIT_LOG) did not take the server's start record: {source}"
    )]
    AuditStart {
        /// The path.
        path: std::path::PathBuf,
        /// The reason.
        source: crate::audit::AuditError,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Config(String),
    /// The tool definitions differ from the lockfile (what changed went to standard error and the audit).
    #[error("the tool definitions differ from {path}; review the change, then pin the lock again")]
    ToolsLock {
        /// The lockfile.
        path: std::path::PathBuf,
    },
}

impl std::fmt::Debug for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::serve::message_with_causes(self, f)
    }
}

impl Settings {
    /// Builds the tool set and serves it as these settings say, until the input ends (stdio), SIGTERM, SIGINT or SIGHUP
    /// arrives, or [`cancellation`](Settings::cancellation) is cancelled; then flushes the audit trail and
    /// returns.
    ///
    /// ```no_run
    /// # use secure_tools::{secure_tool, ToolError, ToolSet};
    /// # use secure_tools::serve::Settings;
    /// /// Says hello.
    /// #[secure_tool(scope = "greet", read_only)]
    /// async fn hello() -> Result<String, ToolError> {
    ///     Ok("hello".into())
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let settings = Settings::from_env().await?;
    ///     settings.serve(ToolSet::builder(()).tool::<hello>()).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn serve<S: Send + Sync + 'static>(
        self,
        builder: ToolSetBuilder<S>,
    ) -> Result<(), ServeError> {
        self.serve_with(builder, |secure| secure).await
    }

    /// As [`serve`](Self::serve), for a server of your own: `make` builds your rmcp handler for each session from
    /// the [`SecureServer`] of the tool set (merge its routes into yours with
    /// [`ToolSet::tool_router`](crate::ToolSet::tool_router), or delegate to it). The runner puts your handler
    /// under the tool set's policy ([`Secured`](super::Secured)): the same authentication, limits, records and
    /// version policy as a tool set served alone, and no tool of yours runs unless the tool set declares it
    /// ([`ToolSetBuilder::plain_tool`]). `make` is also called once at start, to read the definitions of the
    /// plain tools it declares (the start record's digest, the lockfile check).
    pub async fn serve_with<S, H, F>(
        mut self,
        builder: ToolSetBuilder<S>,
        make: F,
    ) -> Result<(), ServeError>
    where
        S: Send + Sync + 'static,
        H: ServerHandler + Clone,
        F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
    {
        self.check_sections_read()?;
        ignore_file_size_signal();
        #[cfg(feature = "otel")]
        {
            self.otel =
                self.runner_otel(builder.has_telemetry(), &|name| std::env::var(name).ok())?;
        }
        let tools = self.build(builder)?;
        warn_of_scopes_no_tool_requires(&self.auth, &tools);
        let secure = secure_server(&tools, &self);
        let listed = listed_tools(&tools, &make(secure.for_session()))?;
        check_plain_redactions(&tools, &listed)?;
        self.toolset_digest = Some(crate::integrity::ToolsLock::from_tools(&listed).toolset);
        if let Some((path, mode)) = &self.tools_lock {
            check_tools_lock(path, *mode, &listed, &tools)?;
        }
        let served = self.run(tools, secure, make).await;
        // What is still batched goes out (the stop record's log among it) before the process ends.
        #[cfg(feature = "otel")]
        if let Some(otel) = self.otel.take() {
            // Over stdio, within a second: a host stops the server a second or two after closing its input, and a
            // collector that does not answer held the stop for the SDK's 5 s (an OTel round's).
            let within = match &self.transport {
                Transport::Stdio => std::time::Duration::from_secs(1),
                #[allow(unreachable_patterns)]
                _ => std::time::Duration::from_secs(5),
            };
            let _ = tokio::task::spawn_blocking(move || otel.shutdown_within(within)).await;
        }
        served
    }

    /// The OpenTelemetry SDK the runner sets up from the `OTEL_*` variables (read through `var`), unless the tool
    /// set brings a [`Telemetry`](crate::telemetry::Telemetry) of its own: then the SDK is the user's, and the
    /// runner reads no variable (a value it could not honour itself, `grpc` say, may be the user's SDK's to read),
    /// replaces no global provider and serves no Prometheus page (which reads the runner's own meter provider).
    #[cfg(feature = "otel")]
    fn runner_otel(
        &self,
        own_telemetry: bool,
        var: crate::telemetry::Lookup<'_>,
    ) -> Result<Option<std::sync::Arc<crate::telemetry::Otel>>, ServeError> {
        let prometheus = match &self.transport {
            #[cfg(feature = "http")]
            Transport::Http(http) => http.metrics.is_some(),
            _ => false,
        };
        if own_telemetry {
            return match prometheus {
                true => Err(ServeError::Config(
                    "--http-metrics serves the runner's own metrics, and this tool set reports to a `Telemetry` of \
                     its own (`ToolSetBuilder::telemetry`): serve them from your meter provider (a Prometheus \
                     reader) instead"
                        .into(),
                )),
                false => Ok(None),
            };
        }
        Ok(
            crate::telemetry::Otel::from_vars(var, &self.server_info.name, prometheus)
                .map_err(|error| ServeError::Config(error.to_string()))?
                .map(std::sync::Arc::new),
        )
    }

    async fn run<S, H, F>(
        &self,
        tools: crate::ToolSet<S>,
        secure: SecureServer<S>,
        make: F,
    ) -> Result<(), ServeError>
    where
        S: Send + Sync + 'static,
        H: ServerHandler + Clone,
        F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
    {
        #[cfg(feature = "redis")]
        tools.probe_rate_store();
        match &self.transport {
            Transport::Stdio => {
                if self.auth.unauthenticated_grant().is_none() {
                    return Err(ServeError::Config(
                        "stdio has no authentication of its own: its one caller holds the stdio grant".into(),
                    ));
                }
                super::stdio::run(self, tools, secure, make).await
            }
            #[cfg(feature = "http")]
            Transport::Http(http) => {
                let http = http.clone();
                super::http::run(self, &http, tools, secure, make).await
            }
        }
    }

    /// The rate limits' store in Redis, its keys named by the server's name and where its callers come from unless
    /// a namespace was given: the same for every replica of one server, whatever ids they have each, and apart for
    /// servers whose callers' names mean different callers (red-team finding: replicas trusting different issuers
    /// shared one allowance per `sub`, and a token whose `sub` was `stdio` used up a stdio server's).
    #[cfg(feature = "redis")]
    pub(crate) fn rate_limit_store_for_build(
        &self,
    ) -> Option<crate::call::shared_rate::RedisRates> {
        use super::settings::Auth;
        #[allow(unreachable_patterns)]
        let callers = match &self.auth {
            Auth::None { .. } if matches!(self.transport, Transport::Stdio) => "stdio".to_owned(),
            Auth::None { .. } => "anonymous".to_owned(),
            #[cfg(feature = "http")]
            Auth::Bearer(bearer) => format!("iss={}", bearer.issuer()),
            #[cfg(feature = "mtls")]
            Auth::MutualTls(_) => "mtls".to_owned(),
            _ => "other".to_owned(),
        };
        self.rate_limit_store
            .clone()
            .map(|store| store.named_if_unnamed(&format!("{} {callers}", self.server_info.name)))
    }

    /// The tool set with the settings' server id, limits and audit log.
    pub(crate) fn build<S: Send + Sync + 'static>(
        &self,
        builder: ToolSetBuilder<S>,
    ) -> Result<ToolSet<S>, ServeError> {
        // The records as OpenTelemetry logs: the audit file's lines as written, or, without a file, a sink of their
        // own beside the default one.
        #[cfg(feature = "otel")]
        let (builder, mirror) = match self.otel.as_ref().and_then(|otel| otel.audit_logs()) {
            Some(logs) if self.audit_log.is_some() => (
                builder,
                Some(std::sync::Arc::new(logs)
                    as std::sync::Arc<dyn crate::audit::chain::LineMirror>),
            ),
            Some(logs) => (builder.audit_mirror(std::sync::Arc::new(logs)), None),
            None => (builder, None),
        };
        #[cfg(not(feature = "otel"))]
        let mirror = None;
        let builder =
            builder
                .runner_settings(self, mirror)
                .map_err(|source| ServeError::AuditLog {
                    path: self.audit_log.clone().unwrap_or_default(),
                    source,
                })?;
        #[cfg(feature = "redis")]
        let builder = match self.rate_limit_store_for_build() {
            Some(store) => builder.rate_limit_store(store),
            None => builder,
        };
        #[cfg(feature = "otel")]
        let builder = match &self.otel {
            Some(otel) => builder.telemetry(otel.telemetry()),
            None => builder,
        };
        let tools = builder.build()?;
        // A store with no rate to keep would leave replicas unlimited while the operator believes them limited.
        #[cfg(feature = "redis")]
        if self.rate_limit_store.is_some()
            && tools.inner.rate.is_none()
            && tools
                .inner
                .tools
                .values()
                .all(|tool| tool.entry.rate.is_none())
        {
            return Err(ServeError::Config(
                "--rate-limit-redis / MCP_RATE_LIMIT_REDIS: no rate limit to keep in Redis: give --rate-limit / \
                 MCP_RATE_LIMIT (or a tool a `rate` of its own)"
                    .into(),
            ));
        }
        Ok(tools)
    }
}

/// The handler of the tool set as the settings describe it: its default caller (the stdio caller, or over HTTP
/// the anonymous one), listing, versions and announced name.
pub(crate) fn secure_server<S: Send + Sync + 'static>(
    tools: &ToolSet<S>,
    settings: &Settings,
) -> SecureServer<S> {
    let grant = settings.auth.unauthenticated_grant();
    let (transport, default_caller) = match &settings.transport {
        Transport::Stdio => (
            "stdio",
            grant.map_or_else(Caller::anonymous, |grant| {
                Caller::new(STDIO_CALLER, grant.clone())
            }),
        ),
        #[cfg(feature = "http")]
        Transport::Http(_) => (
            "http",
            grant.map_or_else(Caller::anonymous, |grant| {
                Caller::new("anonymous", grant.clone())
            }),
        ),
    };
    SecureServer::new(tools.clone())
        .default_caller(default_caller)
        .listing(settings.listing)
        .versions(settings.versions.clone())
        .server_info(settings.server_info.clone())
        .transport(transport)
}

/// Every tool a server of `tools` and your `handler` lists to a caller who may call them all: the secure tools, and
/// the plain tools the tool set declares as your handler defines them, with their scopes (as `tools/list` shows
/// them). It is what the runners hold to `--tools-lock` and digest in `server_start`; in a test, make `handler` as
/// your `make` would (from `SecureServer::new(tools.clone())`) and give the list to `testing::assert_tools_locked`
/// (feature `testing`), which [`ToolSet::listed_tools`] alone cannot do for a merged server: it lists the secure
/// tools only.
///
/// A declared plain tool the handler does not describe (`ServerHandler::get_tool`, which `#[tool_handler]`
/// implements) is a configuration error: it would be served outside the tools lock, with its redactions unchecked
/// and no schema to tell its declared arguments from others.
pub fn listed_tools<S: Send + Sync + 'static, H: ServerHandler>(
    tools: &ToolSet<S>,
    handler: &H,
) -> Result<Vec<rmcp::model::Tool>, ServeError> {
    let mut listed = tools.listed_tools();
    for name in tools.plain_tool_names() {
        let (Some(mut tool), Some(definition)) = (handler.get_tool(name), tools.plain_tool(name))
        else {
            return Err(ServeError::Config(format!(
                "the plain tool `{name}` is declared to the tool set, but the server's handler does not describe it \
                 (`ServerHandler::get_tool`, which `#[tool_handler]` implements): without its definition it cannot \
                 be held to the tools lock, nor its redactions checked; implement `get_tool` for it (or is `{name}` \
                 not the name its `#[tool]` has? names are matched exactly)"
            )));
        };
        super::handler::publish_scopes(&mut tool, definition);
        listed.push(tool);
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

/// The scopes a configured grant holds that no tool of the set requires, each with the setting that grants it and
/// to whom (`None`: every caller of the transport). Token grants are the identity provider's, and hold its own
/// scopes (`openid`) by design: they are not looked at.
fn scopes_no_tool_requires<'a>(
    auth: &'a super::settings::Auth,
    required: &std::collections::BTreeSet<&crate::scope::Scope>,
) -> Vec<(&'static str, Option<String>, &'a crate::scope::Scope)> {
    use super::settings::Auth;
    let grants: Vec<(&'static str, Option<String>, &crate::scope::Grant)> = match auth {
        Auth::None { grant } => vec![("--scopes / MCP_SCOPES", None, grant)],
        #[cfg(feature = "mtls")]
        Auth::MutualTls(mtls) => mtls
            .grants()
            .map(|(name, grant)| {
                (
                    "--mtls-client / MCP_MTLS_CLIENTS",
                    Some(name.to_string()),
                    grant,
                )
            })
            .collect(),
        #[allow(unreachable_patterns)]
        _ => Vec::new(),
    };
    grants
        .into_iter()
        .flat_map(|(setting, whom, grant)| {
            grant
                .iter()
                .filter(|scope| !required.contains(scope))
                .map(move |scope| (setting, whom.clone(), scope))
        })
        .collect()
}

/// Says so on stderr for each scope a configured grant holds that no tool requires: a misspelt scope
/// (`files.wrte`) would leave its caller without the one meant, and only refusals would tell. Not refused: one
/// grant may serve several servers, or tools to come.
fn warn_of_scopes_no_tool_requires<S: Send + Sync + 'static>(
    auth: &super::settings::Auth,
    tools: &ToolSet<S>,
) {
    let required: std::collections::BTreeSet<_> = tools.all_scopes().collect();
    let unrequired = scopes_no_tool_requires(auth, &required);
    if unrequired.is_empty() {
        return;
    }
    let names: Vec<&str> = required.iter().map(|scope| scope.as_str()).collect();
    let wanted = match names.is_empty() {
        true => "no tool requires a scope".to_owned(),
        false => format!("the tools require: {}", names.join(", ")),
    };
    for (setting, whom, scope) in unrequired {
        let whom = whom.map(|name| format!(" to {name}")).unwrap_or_default();
        eprintln!(
            "{}: warning: {setting} grants `{scope}`{whom}, which no tool requires ({wanted})",
            super::program_name(),
        );
    }
}

/// A plain tool's redactions must name arguments of its input schema, as a secure tool's must: a redaction that
/// names nothing (a typo, `api_key` for `apiKey`) would leave the secret in clear in every record.
fn check_plain_redactions<S: Send + Sync + 'static>(
    tools: &ToolSet<S>,
    listed: &[rmcp::model::Tool],
) -> Result<(), ServeError> {
    for tool in listed {
        let Some(definition) = tools.plain_tool(&tool.name) else {
            continue;
        };
        let arguments = crate::toolset::argument_names(&tool.input_schema);
        if let Some(unknown) = definition
            .audit_redact()
            .iter()
            .find(|name| !arguments.contains(**name))
        {
            return Err(ServeError::Config(format!(
                "the plain tool `{}` redacts `{unknown}`, which its input schema does not declare; a redaction \
                 must name an argument, or the value it means would be recorded in clear",
                tool.name
            )));
        }
    }
    Ok(())
}

/// Compares the definitions served with the lockfile: on a difference, says what changed on stderr, audits it, and
/// refuses to start unless the mode is `warn`.
fn check_tools_lock<S: Send + Sync + 'static>(
    path: &std::path::Path,
    mode: crate::integrity::LockMode,
    listed: &[rmcp::model::Tool],
    tools: &ToolSet<S>,
) -> Result<(), ServeError> {
    use crate::integrity::{LockMode, ToolsLock};
    let lock = ToolsLock::read(path).map_err(|e| ServeError::Config(e.to_string()))?;
    let changes = lock.compare_tools(listed);
    if changes.is_empty() {
        return Ok(());
    }
    let action = match mode {
        LockMode::Refuse => "refused",
        LockMode::Warn => "warned",
    };
    eprintln!(
        "{}: the tool definitions differ from {}:\n{changes}",
        super::program_name(),
        path.display()
    );
    tools.audit().record(AuditEvent::ToolsLockMismatch {
        lock: path.display().to_string(),
        action,
        added: changes.added.iter().map(|a| a.tool.clone()).collect(),
        removed: changes.removed.clone(),
        changed: changes.changed.iter().map(|c| c.tool.clone()).collect(),
    })?;
    match mode {
        LockMode::Refuse => Err(ServeError::ToolsLock {
            path: path.to_owned(),
        }),
        LockMode::Warn => Ok(()),
    }
}

/// The versions a policy accepts, as the start record lists them.
fn version_names(versions: &VersionPolicy) -> Vec<String> {
    versions.accepted().iter().map(|v| v.to_string()).collect()
}

/// The longest grace calls get once a stdio server's input has ended: rmcp stops serving 5 s after it.
const AFTER_INPUT_GRACE: Duration = Duration::from_secs(4);

/// Runs a server's lifecycle around `serve`, which serves until `stop` is cancelled or it ends by itself, and
/// says why it ended (`eof`, ...). A signal or the settings' token first lets the calls in flight finish (new
/// ones are refused), at most for the grace, then cancels `stop`; with an HTTP shutdown delay, it serves on as
/// before for the delay first, its health check failing. Over stdio, `input_ended` (the end of the input) starts
/// the stop too, as the host's request.
pub(crate) async fn run<S, F, Fut>(
    tools: &ToolSet<S>,
    transport: &'static str,
    settings: &Settings,
    input_ended: Option<CancellationToken>,
    serve: F,
) -> Result<(), ServeError>
where
    S: Send + Sync + 'static,
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<&'static str, ServeError>>,
{
    let audit = tools.audit().clone();
    let grant = match &settings.transport {
        Transport::Stdio => settings
            .auth
            .unauthenticated_grant()
            .map(|grant| grant.iter().map(|s| s.to_string()).collect()),
        #[cfg(feature = "http")]
        Transport::Http(_) => None,
    };
    // Listened for before the start record: a signal from then on stops the server through its records, not by
    // the default action, which would leave a start without a stop.
    let mut signals = Signals::new();
    audit
        .record(AuditEvent::ServerStart {
            transport,
            tools: tools
                .definitions()
                .map(|d| d.name().to_owned())
                .chain(tools.plain_tool_names().map(str::to_owned))
                .collect(),
            grant,
            protocol_versions: version_names(&settings.versions),
            toolset_digest: settings.toolset_digest.clone(),
            tools_lock: settings
                .tools_lock
                .as_ref()
                .map(|(path, _)| crate::audit::shorten_str(&path.display().to_string())),
        })
        // Named by its setting and path (operator trial finding: it said only "audit sink could not write").
        .map_err(|source| match &settings.audit_log {
            Some(path) => ServeError::AuditStart {
                path: path.clone(),
                source,
            },
            None => ServeError::Audit(source),
        })?;
    let stop = CancellationToken::new();
    let requested: Arc<Mutex<Option<&'static str>>> = Arc::default();
    let watcher = {
        let requested = requested.clone();
        let cancellation = settings.cancellation.clone();
        let stop = stop.clone();
        let tools = tools.clone();
        let grace = settings.shutdown_grace;
        let delay = match &settings.transport {
            Transport::Stdio => Duration::ZERO,
            #[cfg(feature = "http")]
            Transport::Http(http) => http.shutdown_delay,
        };
        let input_ended = input_ended.unwrap_or_default();
        tokio::spawn(async move {
            let reason = tokio::select! {
                signal = signals.next() => signal,
                () = cancellation.cancelled() => "cancelled",
                // The server ended by itself.
                () = stop.cancelled() => return,
                // Over stdio the end of the input is how a host asks a server to stop (MCP's stdio transport), and
                // it sends SIGTERM if the server has not exited soon after (the Python SDK 2 s later, and SIGKILL 2 s
                // after that). Calls in flight get the grace, then are stopped; requests already read still run
                // (a client piping its requests in closes the input right after them). A signal meanwhile is the
                // host insisting: they are stopped at once.
                () = input_ended.cancelled() => {
                    // Within rmcp's own wait after the input ends (5 s), past which it drops the calls still
                    // running as if their client had cancelled them: the stop is the server's, and recorded so.
                    let insisted = tokio::select! {
                        () = tokio::time::sleep(grace.min(AFTER_INPUT_GRACE)) => None,
                        signal = signals.next() => Some(signal),
                        () = stop.cancelled() => return,
                    };
                    *requested.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(insisted.unwrap_or("eof"));
                    // A call past its point of no return runs on: rmcp answers it (a client piping its requests
                    // in reads on) as long as its own wait after the input ends lasts, which ends the session; only
                    // a signal, the host insisting, cuts that wait (red-team finding: cutting it always lost a
                    // piped call's answer), and gives up on the call (answered and recorded as such).
                    if insisted.is_some() {
                        tools.stop_now().await;
                    } else {
                        tools.stop_calls(Duration::ZERO, false).await;
                    }
                    if insisted.is_none() {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            signal = signals.next() => {
                                *requested.lock().unwrap_or_else(PoisonError::into_inner) = Some(signal);
                                tools.stop_now().await;
                            }
                        }
                    }
                    stop.cancel();
                    return;
                }
            };
            *requested.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
            // Serving on as before, the health check saying `503`, until a balancer has taken the server out; a
            // second signal (an operator who will not wait) ends the delay.
            if !delay.is_zero() {
                tools.announce_stop();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = signals.next() => {}
                    () = stop.cancelled() => {}
                }
            }
            // Answers still go out while the calls in flight finish; a second signal (an operator's second
            // Ctrl-C) stops them at once, each still recorded.
            tokio::select! {
                () = tools.shutdown(grace) => {}
                _ = signals.next() => tools.stop_now().await,
            }
            stop.cancel();
        })
    };
    let ended = serve(stop.clone()).await;
    // A server that ended by itself (its input closed) does not wait for the grace a signal would give.
    stop.cancel();
    if !watcher.is_finished() {
        let asked = requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if !asked {
            watcher.abort();
        }
    }
    let _ = watcher.await;
    // Every call has its record before the stop record.
    tools.shutdown(Duration::ZERO).await;
    let requested = *requested.lock().unwrap_or_else(PoisonError::into_inner);
    let reason = match (&ended, requested) {
        (Err(_), _) => "error",
        (Ok(_), Some(signal)) => signal,
        (Ok(reason), None) => reason,
    };
    audit.flush()?;
    audit.record(AuditEvent::ServerStop {
        reason: reason.into(),
    })?;
    audit.flush()?;
    ended.map(|_| ())
}

/// A write past the process's file size limit (`ulimit -f`) fails with `EFBIG`, as on a full disk, which the audit
/// sinks handle (the record cut back, the call refused `audit_unavailable`), rather than ending the process by
/// SIGXFSZ's default action mid-record (red-team finding). From the runners' start, before the audit file is opened
/// (a second round's lockfile mismatch record, written before serving, still killed the server).
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" installs no handler and touches no Rust state.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// SIGTERM, SIGINT and SIGHUP, where the platform has them; listened for from the moment this is made. SIGHUP (a
/// terminal's hang-up, and what log rotation scripts often send) stops the server as SIGTERM does: by default it
/// ended the process at once, with no `server_stop` and no final checkpoint (red-team finding). SIGXFSZ is ignored
/// from then on.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            ignore_file_size_signal();
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
                hup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = received(&mut self.term) => "sigterm",
                () = received(&mut self.int) => "sigint",
                () = received(&mut self.hup) => "sighup",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "sigint"
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{PlainTool, ToolSet};

    /// Trial finding: the README's `main`s return `Box<dyn Error>`, which Rust prints with `Debug` at exit: a start
    /// refused for a setting printed `Error: Invalid(InvalidSetting { name: ... })`. It prints the message now.
    #[test]
    fn a_refused_start_prints_its_message_from_main() {
        let error: Box<dyn std::error::Error> = Box::new(super::ServeError::Config(
            "--http-metrics needs --http".into(),
        ));
        assert_eq!(format!("{error:?}"), "--http-metrics needs --http");
        let error: Box<dyn std::error::Error> =
            Box::new(super::super::settings::SettingsError::from(
                super::super::settings::InvalidSetting::new(
                    "--rate-limit / MCP_RATE_LIMIT",
                    "not a rate",
                ),
            ));
        let shown = format!("{error:?}");
        assert!(!shown.contains("InvalidSetting {"), "{shown}");
        assert!(shown.contains("not a rate"), "{shown}");
    }

    /// A grant naming a scope no tool requires (`files.wrte`) was taken without a word: each one is found, with
    /// the setting that grants it and to whom.
    #[test]
    fn the_scopes_a_grant_holds_that_no_tool_requires_are_found() {
        use crate::serve::settings::Auth;
        let tools = ToolSet::builder(())
            .plain_tool(PlainTool::new("read").scope("files.read"))
            .plain_tool(PlainTool::new("write").scope("files.write"))
            .build()
            .unwrap();
        let required = tools.all_scopes().collect();
        let found = |auth: &Auth| -> Vec<String> {
            super::scopes_no_tool_requires(auth, &required)
                .into_iter()
                .map(|(setting, whom, scope)| format!("{setting} {whom:?} {scope}"))
                .collect()
        };
        let grant = |scopes| crate::Grant::parse(scopes).unwrap();
        assert!(
            found(&Auth::None {
                grant: grant("files.read files.write")
            })
            .is_empty()
        );
        assert_eq!(
            found(&Auth::None {
                grant: grant("files.read files.wrte")
            }),
            ["--scopes / MCP_SCOPES None files.wrte"]
        );
        #[cfg(feature = "mtls")]
        {
            let pki = crate::serve::http::mtls::tests::pki();
            let mtls = crate::serve::http::mtls::MtlsAuth::from_pem(
                pki.cert.as_bytes(),
                pki.key.as_bytes(),
                pki.ca.as_bytes(),
            )
            .unwrap()
            .client("alice", grant("files.read"))
            .client("bob", grant("files.read Files.Write"));
            assert_eq!(
                found(&Auth::MutualTls(mtls)),
                ["--mtls-client / MCP_MTLS_CLIENTS Some(\"bob\") Files.Write"]
            );
        }
    }

    /// Red-team finding: replicas of one server trusting different issuers shared their limits through Redis, so a
    /// token of one issuer with the `sub` of another's user used up that user's allowance (and a token whose `sub` is
    /// `stdio`, a stdio server's). Without a namespace given, the keys are kept under the server's name and where its
    /// callers come from: the issuer, mutual TLS, or the one caller of stdio or of no authentication.
    #[cfg(all(feature = "redis", feature = "http"))]
    #[test]
    fn a_redis_store_is_kept_apart_by_where_the_callers_come_from() {
        use crate::serve::http::{BearerAuth, VerificationKeys};
        let store = || {
            Some(
                crate::call::shared_rate::RedisRates::open_unnamed("redis://127.0.0.1:1/0")
                    .unwrap(),
            )
        };
        let prefix = |auth: crate::serve::settings::Auth| {
            let mut settings = super::Settings::stdio(crate::Grant::none());
            settings.auth = auth;
            settings.rate_limit_store = store();
            settings
                .rate_limit_store_for_build()
                .unwrap()
                .prefix()
                .to_owned()
        };
        let bearer = |issuer: &str| {
            crate::serve::settings::Auth::Bearer(BearerAuth::new(
                issuer,
                "https://mcp.example/mcp",
                VerificationKeys::hmac_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
            ))
        };
        let stdio = prefix(crate::serve::settings::Auth::None {
            grant: crate::Grant::none(),
        });
        let (one, other) = (
            prefix(bearer("https://one.example")),
            prefix(bearer("https://other.example")),
        );
        assert_eq!(one, prefix(bearer("https://one.example")), "replicas share");
        assert!(
            one != other && one != stdio && other != stdio,
            "{one} {other} {stdio}"
        );
        // A namespace given is kept as given.
        let mut settings = super::Settings::stdio(crate::Grant::none());
        settings.auth = bearer("https://one.example");
        settings.rate_limit_store = Some(
            crate::call::shared_rate::RedisRates::open("redis://127.0.0.1:1/0", "files").unwrap(),
        );
        let given = settings
            .rate_limit_store_for_build()
            .unwrap()
            .prefix()
            .to_owned();
        assert!(given.ends_with(":files:"), "{given}");
    }

    /// Trial finding: `--rate-limit-redis` without any rate was taken silently, and replicas meant to share a
    /// limit ran unlimited.
    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_store_with_no_rate_to_keep_is_refused() {
        let mut settings = super::Settings::stdio(crate::Grant::none());
        settings.rate_limit_store = Some(
            crate::call::shared_rate::RedisRates::open("redis://127.0.0.1:1/0", "files").unwrap(),
        );
        let tools = || ToolSet::builder(()).plain_tool(PlainTool::new("search").scope("s.read"));
        let refused = settings.build(tools()).unwrap_err().to_string();
        assert!(refused.contains("no rate limit to keep"), "{refused}");
        let rate = crate::Rate::per_minute(10).unwrap();
        assert!(settings.build(tools().rate_limit(rate)).is_ok());
    }

    /// Trial finding: a server of its own with `ToolSetBuilder::telemetry` (its SDK set up from the same `OTEL_*`
    /// variables, over gRPC say) was refused at start by the runner, which read them for an SDK of its own and
    /// replaced the server's telemetry with it. The variables are now the runner's only when it sets up the SDK.
    #[cfg(feature = "otel")]
    #[test]
    fn a_tool_set_with_telemetry_of_its_own_leaves_the_otel_variables_to_it() {
        let vars = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:9".to_owned()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
            _ => None,
        };
        let settings = super::Settings::stdio(crate::Grant::none());
        let refused = settings.runner_otel(false, &vars).unwrap_err().to_string();
        assert!(
            refused.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
            "{refused}"
        );
        assert!(settings.runner_otel(true, &vars).unwrap().is_none());
    }

    /// With a telemetry of its own, the runner's Prometheus page (its own meter provider's) is refused at start
    /// rather than served empty; checked through `serve_with` itself.
    #[cfg(all(feature = "otel", feature = "http"))]
    #[tokio::test]
    async fn the_runners_metrics_page_is_refused_beside_telemetry_of_its_own() {
        let mut settings = super::Settings::http(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            crate::serve::Auth::None {
                grant: crate::Grant::none(),
            },
        );
        settings.http_mut().unwrap().metrics =
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let telemetry = crate::telemetry::Telemetry::new(
            &opentelemetry::trace::noop::NoopTracerProvider::new(),
            &opentelemetry::metrics::noop::NoopMeterProvider::new(),
        );
        let served = settings.serve(ToolSet::builder(()).telemetry(telemetry));
        let refused = tokio::time::timeout(std::time::Duration::from_secs(10), served)
            .await
            .expect("served instead of refusing")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("--http-metrics serves the runner's own metrics"),
            "{refused}"
        );
    }

    fn listed(properties: serde_json::Value) -> Vec<rmcp::model::Tool> {
        let schema = serde_json::json!({"type": "object", "properties": properties});
        vec![rmcp::model::Tool::new(
            "search",
            "Searches.",
            std::sync::Arc::new(schema.as_object().unwrap().clone()),
        )]
    }

    /// Review finding: a plain tool's redactions were never compared with its schema, so a misspelt one left the
    /// secret in clear in every record. The server now refuses to start with one.
    #[test]
    fn a_plain_tools_redaction_must_name_one_of_its_arguments() {
        let tools = ToolSet::builder(())
            .plain_tool(
                PlainTool::new("search")
                    .scope("s.read")
                    .audit_redact(["api_key"]),
            )
            .build()
            .unwrap();
        let refused =
            super::check_plain_redactions(&tools, &listed(serde_json::json!({"apiKey": {}})))
                .unwrap_err()
                .to_string();
        assert!(refused.contains("`search` redacts `api_key`"), "{refused}");
        assert!(
            super::check_plain_redactions(&tools, &listed(serde_json::json!({"api_key": {}})))
                .is_ok()
        );
    }
}
