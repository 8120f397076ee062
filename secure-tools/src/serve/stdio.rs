//! The stdio runner: a tool set (or a server of your own) served over stdin and stdout, the transport MCP hosts
//! launch local servers with.

use rmcp::service::ServerInitializeError;
use rmcp::{RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;

use super::lifecycle::ServeError;
use super::settings::{Settings, Transport};
use super::{LineTransport, SecureServer, Secured};
use crate::toolset::{ToolSet, ToolSetBuilder};

/// Serves over stdin and stdout as `settings` say, within the shared lifecycle.
pub(super) async fn run<S, H, F>(
    settings: &Settings,
    tools: ToolSet<S>,
    secure: SecureServer<S>,
    make: F,
) -> Result<(), ServeError>
where
    S: Send + Sync + 'static,
    H: ServerHandler + Clone,
    F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
{
    if let super::settings::Auth::None { grant } = &settings.auth
        && grant.is_empty()
    {
        eprintln!(
            "{}: warning: MCP_SCOPES is unset or empty, so the stdio caller holds no scope and every scoped tool \
             call will be denied",
            super::program_name()
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
    let input_ended = transport.input_ended();
    super::lifecycle::run(
        &tools,
        "stdio",
        settings,
        Some(input_ended),
        |stop| async move {
            transport.give_up_unread_at(&stop);
            let ended = sessions(secure, make, transport.clone(), stop).await;
            // Answers still queued, such as refusals of lines read before a session started, go out before the exit.
            let mut transport = transport;
            if let Err(err) = rmcp::transport::Transport::<RoleServer>::close(&mut transport).await
            {
                tracing::debug!(error = %err, "the output could not be flushed at exit");
            }
            ended
        },
    )
    .await
}

/// How long rmcp's end of a session is waited for once the server stops (its answers of calls that ended go out
/// well within it).
const AFTER_STOP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

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
        transport.set_session_id(session.session_id());
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
                        // The calls have ended or been stopped by now, but for one past its point of no return, which
                        // rmcp waits for (5 s after the input ends): not waited for past half a second, so that a
                        // host that kills a server two seconds after asking it to stop finds its records written
                        // (red-team finding). The call's record is written as the process ends.
                        cancel.cancel();
                        let _ = tokio::time::timeout(AFTER_STOP_WAIT, waiting).await;
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
