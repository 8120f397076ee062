//! Testing your tools in a few lines (feature `testing`): call a tool as a given caller with JSON arguments, read
//! its output typed and its audit records, or drive it end to end through an MCP client in the same process.
//!
//! ```
//! use secure_tools::testing::{self, ToolTester};
//! use secure_tools::{secure_tool, Outcome, ToolError, ToolSet};
//!
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! struct Sum {
//!     total: i64,
//! }
//!
//! /// Adds two numbers.
//! #[secure_tool(scope = "math.add", read_only)]
//! async fn add(a: i64, b: i64) -> Result<Sum, ToolError> {
//!     Ok(Sum { total: a + b })
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tester = ToolTester::new(ToolSet::builder(()).tool::<add>()).unwrap();
//!
//! let called = tester.call(&testing::caller("alice", "math.add"), "add", serde_json::json!({"a": 2, "b": 3})).await;
//! assert_eq!(called.output::<Sum>().total, 5);
//! assert_eq!(called.record().outcome, Outcome::Ok);
//!
//! let called = tester.call(&testing::caller("bob", ""), "add", serde_json::json!({"a": 2, "b": 3})).await;
//! assert_eq!(called.code(), Some("missing_scope:math.add"));
//! assert_eq!(called.record().outcome, Outcome::Denied);
//! # });
//! ```

use rmcp::ServiceExt;
use rmcp::model::{JsonObject, RequestId};
use rmcp::service::{RoleClient, RunningService};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::audit::{AuditEvent, AuditRecord, CallStartedEvent, MemorySink, ToolCallEvent};
use crate::call::{CallError, CallRequest, CallResponse, Caller, Refusal};
use crate::output::ToolOutput;
use crate::scope::Grant;
use crate::serve::{DEFAULT_MAX_MESSAGE_BYTES, LineTransport, SecureServer, Secured};
use crate::tool::DefinitionError;
use crate::toolset::{ToolSet, ToolSetBuilder};

/// A caller with identity `id` holding the scopes in `scopes` (space- or comma-separated).
///
/// # Panics
/// If `scopes` holds something that is not a scope: a mistake in the test itself.
pub fn caller(id: &str, scopes: &str) -> Caller {
    let grant = Grant::parse(scopes)
        .unwrap_or_else(|error| panic!("testing::caller({id:?}, {scopes:?}): {error}"));
    Caller::new(id, grant)
}

/// A tool set built for a test: its audit records are also kept in memory, to be read back.
pub struct ToolTester<S> {
    tools: ToolSet<S>,
    audit: MemorySink,
}

impl<S: Send + Sync + 'static> ToolTester<S> {
    /// Builds `builder` with an in-memory audit sink added to its own.
    pub fn new(builder: ToolSetBuilder<S>) -> Result<Self, DefinitionError> {
        let audit = MemorySink::new();
        let tools = builder.audit_sink(audit.clone()).build()?;
        Ok(ToolTester { tools, audit })
    }

    /// The tool set.
    pub fn tools(&self) -> &ToolSet<S> {
        &self.tools
    }

    /// Calls `tool` as `caller` with `arguments` (a JSON object, or `null` for none) through the whole pipeline.
    /// The output is the pipeline's, before a transport shapes it for the client's protocol revision: a
    /// structured output that is not an object reaches a client of a revision before 2026-07-28 as text only (see
    /// [`client`](Self::client) for what a client receives).
    ///
    /// # Panics
    /// If `arguments` is neither an object nor `null`.
    pub async fn call(&self, caller: &Caller, tool: &str, arguments: Value) -> Called {
        let arguments = match arguments {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => panic!("arguments must be a JSON object or null, not {other}"),
        };
        self.call_request(CallRequest::new(caller.clone(), tool, arguments))
            .await
    }

    /// Calls with a request of your own (a JSON-RPC id, a connection, ...).
    pub async fn call_request(&self, request: CallRequest) -> Called {
        let before = self.audit.with_records(<[_]>::len);
        // An unknown tool's call is known by its record only: by its tool, caller and request id, as recorded.
        let sent = (
            crate::audit::shorten_str(&request.tool),
            crate::audit::shorten_str(request.caller.id()),
            crate::audit::bounded_request_id(&request.request_id),
        );
        let response = self.tools.call(request).await;
        // The records written since, only: those of other calls made meanwhile (by other tasks) are left out below.
        let mut records = self
            .audit
            .with_records(|records| records.get(before..).unwrap_or_default().to_vec());
        let call_id = match &response {
            Ok(response) => Some(response.call_id()),
            Err(_) => records.iter().rev().find_map(|r| match &r.event {
                AuditEvent::ToolCall(call)
                    if *call.tool == *sent.0
                        && *call.caller == *sent.1
                        && call.request_id == sent.2 =>
                {
                    Some(call.call_id)
                }
                _ => None,
            }),
        };
        records.retain(|r| match &r.event {
            AuditEvent::ToolCall(call) => Some(call.call_id) == call_id,
            AuditEvent::CallStarted(start) => Some(start.call_id) == call_id,
            _ => false,
        });
        Called { response, records }
    }

    /// Every record written so far, as a JSON Lines reader would see them.
    pub fn records(&self) -> Vec<Value> {
        self.audit.records()
    }

    /// The last `tool_call` record, typed.
    pub fn last_call_record(&self) -> Option<ToolCallEvent> {
        self.audit.with_records(|records| {
            records.iter().rev().find_map(|r| match &r.event {
                AuditEvent::ToolCall(call) => Some(call.clone()),
                _ => None,
            })
        })
    }

    /// An MCP client connected in process to the tool set, whose requests come from `caller`: for end-to-end
    /// tests through rmcp (`tools/list`, `tools/call`, progress, logging ...). The server end is the stdio
    /// runner's: its line transport (the message size limit, arguments held out of rmcp's logs, the `session`
    /// and version records) and [`Secured`] around a [`SecureServer`], so a test sees what
    /// a host launching the server would. Drop it, or call `cancel().await`, to end the session.
    pub async fn client(
        &self,
        caller: Caller,
    ) -> Result<RunningService<RoleClient, ()>, rmcp::service::ClientInitializeError> {
        self.client_with(caller, ()).await
    }

    /// [`Self::client`] for a server of your own: the handler `make` makes from the tool set's `SecureServer` (as
    /// [`Settings::serve_with`](crate::serve::Settings::serve_with) makes it), under the policy as the runner serves
    /// it ([`Secured`]): your plain tools and declared methods through the pipeline and the method gate, with their
    /// records. `ToolTester::call` reaches a secure tool only; this reaches them all, as a client does.
    pub async fn client_of<H, F>(
        &self,
        caller: Caller,
        make: F,
    ) -> Result<RunningService<RoleClient, ()>, rmcp::service::ClientInitializeError>
    where
        H: rmcp::ServerHandler + Clone,
        F: FnOnce(SecureServer<S>) -> H + Send + 'static,
    {
        self.connect(caller, (), move |session| {
            Secured::new(make(session.clone()), session)
        })
        .await
    }

    /// [`Self::client`] with a client handler of the test's (`rmcp::ClientHandler`): it declares the client's
    /// capabilities (`get_info`) and answers what the tool asks, so a tool that asks the user (elicitation) or a
    /// model (sampling), reports progress or logs is tested in process, its handler given the answers.
    pub async fn client_with<H: rmcp::ClientHandler>(
        &self,
        caller: Caller,
        handler: H,
    ) -> Result<RunningService<RoleClient, H>, rmcp::service::ClientInitializeError> {
        self.connect(caller, handler, |session| {
            Secured::new(session.clone(), session)
        })
        .await
    }

    /// A client with `handler`, connected over an in-memory pipe to the server `serve` makes from a session's
    /// `SecureServer`, served as the stdio runner serves it.
    async fn connect<C, H, F>(
        &self,
        caller: Caller,
        handler: C,
        serve: F,
    ) -> Result<RunningService<RoleClient, C>, rmcp::service::ClientInitializeError>
    where
        C: rmcp::ClientHandler,
        H: rmcp::ServerHandler + Clone,
        F: FnOnce(SecureServer<S>) -> Secured<H, S> + Send + 'static,
    {
        let server = SecureServer::new(self.tools.clone())
            .default_caller(caller)
            .transport("in-process");
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let (read, write) = tokio::io::split(server_end);
        let transport = LineTransport::new(
            read,
            write,
            DEFAULT_MAX_MESSAGE_BYTES,
            self.tools.audit().clone(),
        )
        .hold_tool_arguments();
        tokio::spawn(async move {
            let session = server.for_session();
            let service = serve(session).without_lifecycle_records();
            if let Ok(running) = rmcp::serve_server(service, transport).await {
                let _ = running.waiting().await;
            }
        });
        handler.serve(client_end).await
    }
}

/// What a call gave: its response, and its audit records.
#[derive(Debug)]
pub struct Called {
    response: Result<CallResponse, CallError>,
    records: Vec<AuditRecord>,
}

impl Called {
    /// The response of a known tool.
    ///
    /// # Panics
    /// If the tool is unknown (see [`Called::unknown_tool`]).
    pub fn response(&self) -> &CallResponse {
        match &self.response {
            Ok(response) => response,
            Err(error) => panic!("expected a tool result, got a protocol error: {error}"),
        }
    }

    /// The result a client is sent: `isError`, the content, the structured content, and a refusal's notice
    /// under `_meta["secure-tools/refusal"]`.
    ///
    /// # Panics
    /// If the tool is unknown (see [`Called::unknown_tool`]).
    pub fn call_tool_result(&self) -> rmcp::model::CallToolResult {
        self.response().to_call_tool_result()
    }

    /// Whether the call named no tool of the set (a protocol error).
    pub fn unknown_tool(&self) -> bool {
        matches!(self.response, Err(CallError::UnknownTool(_)))
    }

    /// The refusal, if the call was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.response.as_ref().ok().and_then(CallResponse::refusal)
    }

    /// The refusal's code, if the call was refused (`unknown_tool` for an unknown tool).
    pub fn code(&self) -> Option<&str> {
        match &self.response {
            Ok(response) => response.error_code(),
            Err(CallError::UnknownTool(_)) => Some(crate::call::codes::UNKNOWN_TOOL),
        }
    }

    /// The output: the structured content, or the text as a JSON string.
    ///
    /// # Panics
    /// If the call was refused, saying how.
    pub fn output_json(&self) -> Value {
        match self.response().result() {
            Ok(ToolOutput::Structured { value, .. }) => value.clone(),
            Ok(ToolOutput::Text(text)) => Value::String(text.clone()),
            Ok(ToolOutput::Content(blocks)) => serde_json::to_value(blocks).unwrap_or(Value::Null),
            Ok(ToolOutput::Result(result)) => serde_json::to_value(result).unwrap_or(Value::Null),
            Ok(ToolOutput::InputRequired(input)) => {
                serde_json::to_value(input).unwrap_or(Value::Null)
            }
            Err(refusal) => panic!("expected an output, the call was refused: {refusal}"),
        }
    }

    /// The output, deserialized into `T`.
    ///
    /// # Panics
    /// If the call was refused, or its output is not a `T`.
    pub fn output<T: DeserializeOwned>(&self) -> T {
        let value = self.output_json();
        serde_json::from_value(value.clone()).unwrap_or_else(|error| {
            panic!(
                "the output is not a `{}`: {error}: {value}",
                std::any::type_name::<T>()
            )
        })
    }

    /// The call's `tool_call` record.
    ///
    /// # Panics
    /// If there is none (its sink failed).
    pub fn record(&self) -> &ToolCallEvent {
        self.records
            .iter()
            .find_map(|r| match &r.event {
                AuditEvent::ToolCall(call) => Some(call),
                _ => None,
            })
            .expect("the call has a tool_call record")
    }

    /// The call's `call_started` record, for a tool not marked `read_only` whose handler ran.
    pub fn started_record(&self) -> Option<&CallStartedEvent> {
        self.records.iter().find_map(|r| match &r.event {
            AuditEvent::CallStarted(start) => Some(start),
            _ => None,
        })
    }

    /// Every record of the call, in the order written.
    pub fn records(&self) -> &[AuditRecord] {
        &self.records
    }
}

/// Arguments for [`CallRequest::new`] from JSON, for tests that build requests themselves.
///
/// # Panics
/// If `value` is neither an object nor `null`.
pub fn arguments(value: Value) -> Option<JsonObject> {
    match value {
        Value::Null => None,
        Value::Object(map) => Some(map),
        other => panic!("arguments must be a JSON object or null, not {other}"),
    }
}

/// A request id for [`CallRequest::with_request_id`].
pub fn request_id(id: i64) -> RequestId {
    RequestId::Number(id)
}

/// An HS256 access token for tests (feature `http` too): issued by `issuer` for `audience` (the server's resource
/// URL), to `subject`, with `scopes` (space-separated, as the `scope` claim), valid for `ttl` from now, signed with
/// `secret` (the server's `MCP_AUTH_HS256_SECRET`). Real tokens come from your authorization server; this lives
/// here, out of every production path, so tests and local experiments can mint their own.
///
/// ```
/// let token = secure_tools::testing::hs256_token(
///     "a-test-secret-of-at-least-32-bytes!!",
///     "https://issuer.test",
///     "http://127.0.0.1:8080/mcp",
///     "alice",
///     "files.read",
///     std::time::Duration::from_secs(600),
/// );
/// assert_eq!(token.split('.').count(), 3);
/// ```
#[cfg(feature = "http")]
pub fn hs256_token(
    secret: &str,
    issuer: &str,
    audience: &str,
    subject: &str,
    scopes: &str,
    ttl: std::time::Duration,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": scopes,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing does not fail")
}

/// The variable that makes [`assert_tools_locked`] write the lockfile instead of checking it.
pub const UPDATE_LOCK_VARIABLE: &str = "SECURE_TOOLS_UPDATE_LOCK";

/// Fails the test when tool definitions differ from the committed lockfile, the way snapshot tests do, with a
/// report of what changed and the command that accepts the change (`SECURE_TOOLS_UPDATE_LOCK=1 cargo test`,
/// which writes the lockfile for review). Give it what the server lists, e.g. [`ToolSet::listed_tools`].
///
/// ```no_run
/// # fn tools() -> secure_tools::ToolSet<()> { unimplemented!() }
/// secure_tools::testing::assert_tools_locked(
///     &tools().listed_tools(),
///     concat!(env!("CARGO_MANIFEST_DIR"), "/tools.lock.json"),
/// );
/// ```
///
/// [`ToolSet::listed_tools`]: crate::ToolSet::listed_tools
#[track_caller]
pub fn assert_tools_locked(tools: &[rmcp::model::Tool], lock: impl AsRef<std::path::Path>) {
    use crate::integrity::ToolsLock;
    let path = lock.as_ref();
    let live = ToolsLock::from_tools(tools);
    if std::env::var_os(UPDATE_LOCK_VARIABLE).is_some_and(|v| !v.is_empty() && v != "0") {
        if let Err(error) = live.write(path) {
            panic!("{error}");
        }
        eprintln!(
            "secure-tools: wrote {} ({UPDATE_LOCK_VARIABLE} is set); review its diff and commit it",
            path.display()
        );
        return;
    }
    let accept = format!(
        "to accept the definitions as they are now: {UPDATE_LOCK_VARIABLE}=1 cargo test, then review the \
         lockfile's diff and commit it"
    );
    let locked = match ToolsLock::read(path) {
        Ok(locked) => locked,
        Err(error) => panic!("{error}\n{accept}"),
    };
    let changes = locked.compare_tools(tools);
    if !changes.is_empty() {
        panic!(
            "tool definitions differ from {}:\n{changes}\n{accept}",
            path.display()
        );
    }
}
