//! The transport-neutral handler. [`SecureServer`] serves a [`ToolSet`] as an rmcp [`ServerHandler`]; [`Secured`]
//! puts any rmcp server (a [`SecureServer`], or your own handler with its own tools merged with secure ones) under
//! the tool set's policy: the version policy on every request, session and version records on every transport,
//! and every tool call through the pipeline, a plain tool's included.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, ErrorData, Implementation,
    InitializeRequestParams, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext};
use rmcp::{RoleServer, ServerHandler};

use super::{Listing, VersionPolicy};
use crate::audit::AuditEvent;
use crate::call::{CallError, CallId, CallRequest, Caller, Connection, Forward, SessionState};
use crate::toolset::ToolSet;

/// An rmcp [`ServerHandler`] serving a [`ToolSet`]: `tools/list`, `tools/call` through the secure pipeline,
/// `get_tool`, and `logging/setLevel` (so tools can log to the client, see [`ClientLog`](crate::ClientLog)).
///
/// The caller of a request is the one the HTTP runner authenticated, or the [`Caller`] found in the request's
/// extensions (an authenticating transport or layer of yours puts it there), or else the server's default caller
/// (for stdio, the local user with the `MCP_SCOPES` grant; by default, an anonymous caller holding nothing). What
/// the transport knows of the request's origin comes the same way, as a [`Connection`].
///
/// Serve each session with its own copy, [`SecureServer::for_session`], so that a client's log level stays its own.
pub struct SecureServer<S> {
    tools: ToolSet<S>,
    options: Arc<Options>,
    session: Arc<SessionState>,
    session_id: Option<Arc<str>>,
}

#[derive(Clone)]
struct Options {
    default_caller: Caller,
    listing: Listing,
    versions: VersionPolicy,
    info: Implementation,
    instructions: Option<String>,
    transport: Option<&'static str>,
    /// What `initialize` answers (and rmcp asks for on every stateless HTTP request), made once from the above.
    config: std::sync::OnceLock<ServerConfig>,
}

impl<S> Clone for SecureServer<S> {
    fn clone(&self) -> Self {
        SecureServer {
            tools: self.tools.clone(),
            options: self.options.clone(),
            session: self.session.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

impl<S: Send + Sync + 'static> SecureServer<S> {
    /// A server for `tools`, with default options.
    pub fn new(tools: ToolSet<S>) -> Self {
        SecureServer {
            tools,
            options: Arc::new(Options {
                default_caller: Caller::anonymous(),
                listing: Listing::default(),
                versions: VersionPolicy::default(),
                info: Implementation::new("secure-tools", env!("CARGO_PKG_VERSION")),
                instructions: None,
                transport: None,
                config: std::sync::OnceLock::new(),
            }),
            session: Arc::default(),
            session_id: None,
        }
    }

    /// A copy for a new session: the same tools and options, a session state of its own, and, for a transport
    /// whose sessions have no id of their own (stdio), a new session id for the audit records.
    pub fn for_session(&self) -> Self {
        SecureServer {
            tools: self.tools.clone(),
            options: self.options.clone(),
            session: Arc::default(),
            session_id: self
                .options
                .transport
                .filter(|t| *t == "stdio")
                .map(|_| Arc::from(CallId::next().to_string())),
        }
    }

    /// The id its calls' records carry when the transport gives none (stdio's, made by
    /// [`for_session`](Self::for_session)).
    pub(crate) fn session_id(&self) -> Option<Arc<str>> {
        self.session_id.clone()
    }

    /// The options of this server alone: shared with its clones until one of them changes its own.
    fn options_mut(&mut self) -> &mut Options {
        let options = Arc::make_mut(&mut self.options);
        options.config = std::sync::OnceLock::new();
        options
    }

    /// The caller of requests that carry none.
    pub fn default_caller(mut self, caller: Caller) -> Self {
        self.options_mut().default_caller = caller;
        self
    }

    /// Which tools `tools/list` shows.
    pub fn listing(mut self, listing: Listing) -> Self {
        self.options_mut().listing = listing;
        self
    }

    /// The protocol versions accepted.
    pub fn versions(mut self, versions: VersionPolicy) -> Self {
        self.options_mut().versions = versions;
        self
    }

    /// The name and version announced to clients.
    pub fn server_info(mut self, info: Implementation) -> Self {
        self.options_mut().info = info;
        self
    }

    /// Instructions announced to clients.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.options_mut().instructions = Some(instructions.into());
        self
    }

    /// The transport's name in audit records (`stdio`, `http`) for requests that do not say.
    pub fn transport(mut self, name: &'static str) -> Self {
        self.options_mut().transport = Some(name);
        self
    }

    /// The tool set served.
    pub fn tools(&self) -> &ToolSet<S> {
        &self.tools
    }

    /// Routes for your own rmcp server (`Self::tool_router() + secure.tool_router()`), calling the secure tools
    /// through the pipeline with this server's default caller for requests that carry none. See
    /// [`ToolSet::tool_router`].
    pub fn tool_router<H: Send + Sync + 'static>(&self) -> ToolRouter<H> {
        self.tools.tool_router(self.options.default_caller.clone())
    }

    /// The version policy.
    pub fn version_policy(&self) -> &VersionPolicy {
        &self.options.versions
    }

    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        caller_of(context, &self.options.default_caller)
    }

    fn connection(&self, context: &RequestContext<RoleServer>) -> Connection {
        let mut connection = connection_of(context);
        connection.transport = connection.transport.or(self.options.transport);
        if connection.session_id.is_none() {
            connection.session_id = self.session_id.clone();
        }
        connection.session = Some(self.session.clone());
        connection
    }
}

/// Who started a session, for its `session` record: see `session_origin`.
struct SessionOrigin {
    caller: Option<String>,
    remote_addr: Option<String>,
    forwarded_for: Option<String>,
    token_id: Option<String>,
    session_id: Option<String>,
}

/// The JSON-RPC error code of a method of the inner handler refused for a missing scope: the one a tool's refusal
/// has over HTTP (`INSUFFICIENT_SCOPE_CODE`), an implementation-defined server error.
const METHOD_SCOPE_CODE: i32 = -32003;

/// Who sent a request refused before it became a call (`caller`, as the pipeline would have taken it, and
/// `connection`), for its `message_rejected` record: what the transport told of it, its address, token and session.
/// The caller only when the request came with one or through the HTTP runner: over stdio it is the one on the other
/// end of the pipe, as on the session's record, and is not named.
fn rejection_origin(
    context: &RequestContext<RoleServer>,
    caller: &Caller,
    connection: &Connection,
) -> SessionOrigin {
    let told =
        from_request::<Connection>(context).is_some() || from_request::<Caller>(context).is_some();
    SessionOrigin::of(told.then_some(caller), connection)
}

impl SessionOrigin {
    /// `caller`, if named, and what `connection` tells: its address, token and session, bounded.
    fn of(caller: Option<&Caller>, connection: &Connection) -> Self {
        SessionOrigin {
            caller: caller.map(|caller| crate::audit::shorten_str(caller.id())),
            remote_addr: connection.remote_addr.map(|addr| addr.to_string()),
            forwarded_for: connection.forwarded_for.map(|addr| addr.to_string()),
            token_id: connection
                .token_id
                .as_deref()
                .map(crate::audit::shorten_str),
            session_id: connection
                .session_id
                .as_deref()
                .map(crate::audit::shorten_str),
        }
    }
}

/// A value an HTTP layer put into the request: directly in rmcp's extensions, or, over streamable HTTP, inside the
/// `http::request::Parts` rmcp puts there.
fn from_request<T: Send + Sync + 'static>(context: &RequestContext<RoleServer>) -> Option<&T> {
    let direct = context.extensions.get::<T>();
    #[cfg(feature = "http")]
    let direct = direct.or_else(|| {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<T>())
    });
    direct
}

/// The caller the runner's HTTP authentication put into the request's [`Connection`], or else a [`Caller`] an
/// authenticating layer of the user's put into the request, or else `default`. The runner's own authentication
/// comes first, as it did when it put its caller into the request over any other.
fn caller_of(context: &RequestContext<RoleServer>, default: &Caller) -> Caller {
    from_request::<Connection>(context)
        .and_then(|c| c.caller.as_ref())
        .or_else(|| from_request::<Caller>(context))
        .unwrap_or(default)
        .clone()
}

/// What the transport put into the request about its origin; over a transport that says nothing (stdio, a
/// session in process), the client's own `initialize` may be trusted for its name.
fn connection_of(context: &RequestContext<RoleServer>) -> Connection {
    from_request::<Connection>(context)
        .cloned()
        .unwrap_or_else(|| Connection {
            trust_peer_info: true,
            ..Connection::default()
        })
}

/// The refusal of an `initialize` when no version `accepted` has one (the stateless revision, 2026-07-28, has
/// none): `-32022` as for any version refused, saying what to send instead (red-team finding: the bare refusal listed
/// the version asked for among those supported). `None` when some accepted version has `initialize`.
fn no_initialize_error(
    requested: &rmcp::model::ProtocolVersion,
    accepted: &[rmcp::model::ProtocolVersion],
) -> Option<ErrorData> {
    if accepted
        .iter()
        .any(rmcp::model::ProtocolVersion::has_initialize)
    {
        return None;
    }
    let names: Vec<&str> = accepted.iter().map(|v| v.as_str()).collect();
    let mut error = ErrorData::unsupported_protocol_version(requested.clone(), accepted);
    error.message = format!(
        "Unsupported protocol version: the versions this server accepts ({}) have no `initialize`; send \
         `server/discover`, then requests carrying their version in `_meta`",
        names.join(", ")
    )
    .into();
    Some(error)
}

/// Where `server/discover` names the server, in its result's `_meta`.
const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";

/// What a `tools/call` carries that a client may keep secret, moved by a transport from the request's params into
/// its extensions, which rmcp's `debug` and `trace` events (they print the request whole) show only as `Extensions`:
/// its arguments, and under the stateless revision the client's answers (`inputResponses`: what its user typed, what
/// its model said) and those taken in earlier rounds, which ride in `requestState`. See
/// [`LineTransport::hold_tool_arguments`](super::LineTransport::hold_tool_arguments) for stdio; over streamable
/// HTTP the runner holds them out of the request body before rmcp reads it. Held together: a call whose arguments
/// are in its params had nothing held.
#[derive(Clone, Default)]
pub(crate) struct HeldArguments {
    arguments: Option<rmcp::model::JsonObject>,
    input_responses: Option<rmcp::model::InputResponses>,
    request_state: Option<String>,
}

impl HeldArguments {
    /// Whether a call's arguments must be held out of rmcp's sight now: whether anything may hear rmcp's `debug`
    /// or `trace` events, which print requests whole. `tracing`'s global maximum level is the most detailed level
    /// any subscriber's filter enables (an `EnvFilter` counts its every directive); an event more detailed than it
    /// is not built at all, so below `debug` rmcp prints nothing and holding would only cost a parse and a copy of
    /// every call. `tracing` built with its `log` or `log-always` feature also hands events to the `log` crate, so
    /// the maximum level of `log`'s logger counts too. A filter raised to `debug` at run time (a reloaded
    /// `EnvFilter`) applies to the requests read after it.
    pub(crate) fn needed() -> bool {
        Self::needed_at(
            tracing::level_filters::LevelFilter::current(),
            log::max_level(),
        )
    }

    fn needed_at(
        tracing_max: tracing::level_filters::LevelFilter,
        log_max: log::LevelFilter,
    ) -> bool {
        tracing_max >= tracing::level_filters::LevelFilter::DEBUG
            || log_max >= log::LevelFilter::Debug
    }

    fn is_empty(&self) -> bool {
        self.arguments.is_none() && self.input_responses.is_none() && self.request_state.is_none()
    }

    /// Moves a `tools/call`'s arguments and answers into its extensions; any other message is left as it is.
    pub(crate) fn hold(message: &mut rmcp::model::ClientJsonRpcMessage) {
        if let rmcp::model::ClientJsonRpcMessage::Request(request) = message
            && let rmcp::model::ClientRequest::CallToolRequest(call) = &mut request.request
        {
            let held = HeldArguments {
                arguments: call.params.arguments.take(),
                input_responses: call.params.input_responses.take(),
                request_state: call.params.request_state.take(),
            };
            if !held.is_empty() {
                call.extensions.insert(held);
            }
        }
    }

    /// Holds a `tools/call`'s arguments and answers out of a JSON request body before rmcp parses it: the body with
    /// `params.arguments`, `params.inputResponses` and `params.requestState` replaced by `null` (which rmcp reads as
    /// none), and what they held. A member not of its type (arguments that are no object, a `requestState` that is
    /// no string) is replaced by `0` instead, and params that cannot be read member by member (a member twice, an
    /// array) by `{}`: rmcp still refuses the call as misshapen, but its events no longer print what it held (a
    /// review's finding: answers of the wrong type made the whole body go to rmcp as it was, arguments and all).
    /// `None` for any other body (another method, no params, nothing to hold, not JSON at all), which is left for
    /// rmcp to answer as it is. Only the body's top level and those members are decoded, each once.
    #[cfg(feature = "http")]
    pub(crate) fn hold_in_body(body: &[u8]) -> Option<(Vec<u8>, HeldArguments)> {
        use serde_json::value::RawValue;
        #[derive(serde::Deserialize)]
        struct Peek<'a> {
            #[serde(borrow)]
            method: Option<Cow<'a, str>>,
            #[serde(borrow)]
            params: Option<&'a RawValue>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct PeekParams<'a> {
            #[serde(borrow)]
            arguments: Option<&'a RawValue>,
            #[serde(borrow)]
            input_responses: Option<&'a RawValue>,
            #[serde(borrow)]
            request_state: Option<&'a RawValue>,
        }
        /// Where `raw`, a slice of `body`, lies in it.
        fn place(body: &[u8], raw: &RawValue) -> Option<(usize, usize)> {
            let raw = raw.get();
            let start = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            let end = start
                .checked_add(raw.len())
                .filter(|&end| end <= body.len())?;
            Some((start, end))
        }
        /// `raw` read as a `T`: held, and `null` put in its place; or, not one, `0` in its place.
        fn take<T: serde::de::DeserializeOwned>(
            body: &[u8],
            raw: Option<&RawValue>,
            places: &mut Vec<(usize, usize, &'static [u8])>,
        ) -> Option<Option<T>> {
            let Some(raw) = raw else {
                return Some(None);
            };
            let (start, end) = place(body, raw)?;
            match serde_json::from_str(raw.get()) {
                Ok(value) => {
                    places.push((start, end, b"null"));
                    Some(Some(value))
                }
                Err(_) => {
                    places.push((start, end, b"0"));
                    Some(None)
                }
            }
        }
        let peek: Peek<'_> = serde_json::from_slice(body).ok()?;
        if peek.method.as_deref() != Some("tools/call") {
            return None;
        }
        let raw_params = peek.params?;
        let mut places = Vec::with_capacity(3);
        let held = match serde_json::from_str::<PeekParams<'_>>(raw_params.get()) {
            Ok(params) => HeldArguments {
                arguments: take(body, params.arguments, &mut places)?,
                input_responses: take(body, params.input_responses, &mut places)?,
                request_state: take(body, params.request_state, &mut places)?,
            },
            // Not params of a call at all (an array), or not readable member by member: refused by rmcp either
            // way, with nothing of them to print.
            Err(_) => {
                let (start, end) = place(body, raw_params)?;
                places.push((start, end, b"{}"));
                HeldArguments::default()
            }
        };
        if places.is_empty() {
            return None;
        }
        places.sort_unstable();
        let mut out = Vec::with_capacity(body.len() + 4 * places.len());
        let mut from = 0;
        for (start, end, with) in places {
            out.extend_from_slice(body.get(from..start)?);
            out.extend_from_slice(with);
            from = end;
        }
        out.extend_from_slice(&body[from..]);
        Some((out, held))
    }

    /// Puts back what a transport held of a call (in the extensions, or over streamable HTTP in the
    /// `http::request::Parts` rmcp puts there). Nothing was held of a call whose arguments are in its params.
    fn restore(
        arguments: &mut Option<rmcp::model::JsonObject>,
        input_responses: &mut Option<rmcp::model::InputResponses>,
        request_state: &mut Option<String>,
        extensions: &mut rmcp::model::Extensions,
    ) {
        if arguments.is_some() {
            return;
        }
        let held = extensions.remove::<HeldArguments>();
        #[cfg(feature = "http")]
        let held = held.or_else(|| {
            extensions
                .get_mut::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.remove::<HeldArguments>())
        });
        let Some(held) = held else {
            return;
        };
        *arguments = held.arguments;
        if input_responses.is_none() {
            *input_responses = held.input_responses;
        }
        if request_state.is_none() {
            *request_state = held.request_state;
        }
    }
}

/// A call through the pipeline, as an rmcp tool answer. The request moves into the call before the future is
/// made, so it is not copied along with it.
fn call_through_pipeline<'a, S: Send + Sync + 'static>(
    tools: &'a ToolSet<S>,
    caller: Caller,
    connection: Connection,
    name: Cow<'static, str>,
    arguments: Option<rmcp::model::JsonObject>,
    answers: Option<Box<crate::call::Answers>>,
    context: RequestContext<RoleServer>,
) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + Send + 'a {
    // Built in one piece: the builder's steps would move the request (rmcp's context makes it large) three times.
    let request = CallRequest {
        caller,
        request_id: context.id.clone(),
        tool: name.into_owned(),
        arguments,
        connection,
        rmcp: Some(context),
        forward: None,
        answers,
    };
    // A combinator, not an async block: awaiting a future an async block holds would keep two copies of it.
    futures_util::FutureExt::map(tools.call_begun(request), |answer| match answer {
        Ok(response) => Ok(response.into_call_tool_response()),
        Err(CallError::UnknownTool(_)) => Err(ErrorData::invalid_params("tool not found", None)),
    })
}

impl<S: Send + Sync + 'static> ServerHandler for SecureServer<S> {
    fn get_info(&self) -> ServerConfig {
        let options = &self.options;
        options
            .config
            .get_or_init(|| {
                #[allow(deprecated)]
                // logging is deprecated by SEP-2577 but part of every released revision
                let capabilities = ServerCapabilities::builder()
                    .enable_tools()
                    .enable_logging()
                    .build();
                let mut config =
                    InitializeResult::new(capabilities).with_server_info(options.info.clone());
                if let Some(instructions) = &options.instructions {
                    config = config.with_instructions(instructions.clone());
                }
                config
            })
            .clone()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(self.options.versions.accepted.clone())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let versions = &self.options.versions;
        if let Some(error) = no_initialize_error(&request.protocol_version, &versions.accepted) {
            return Err(error);
        }
        if versions.strict && !versions.accepted.contains(&request.protocol_version) {
            return Err(ErrorData::unsupported_protocol_version(
                request.protocol_version.clone(),
                &versions.accepted,
            ));
        }
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    #[allow(deprecated)] // logging is deprecated by SEP-2577 but part of every released revision
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.set_log_level(request.level);
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context);
        let tools: Vec<Tool> = self
            .tools
            .definitions()
            .filter(|definition| match self.options.listing {
                Listing::All => true,
                Listing::CallableOnly => caller.grant().check(definition.scopes()).is_ok(),
            })
            .map(|definition| definition.to_rmcp_tool())
            .collect();
        let mut list = ListToolsResult::with_all_items(tools);
        let current = receives_any_output_schema(&context);
        if self.options.listing == Listing::CallableOnly {
            crate::integrity::mark_callable_only(&mut list);
            if current {
                // Each caller's own list: not to be shared by a cache across callers.
                list.cache_scope = Some(rmcp::model::CacheScope::Private);
            }
        }
        crate::integrity::publish_for(&mut list, current);
        Ok(list)
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + MaybeSendFuture + '_ {
        let caller = self.caller(&context);
        let connection = self.connection(&context);
        let mut request = request;
        HeldArguments::restore(
            &mut request.arguments,
            &mut request.input_responses,
            &mut request.request_state,
            &mut context.extensions,
        );
        let arguments = request.arguments;
        let answers =
            crate::call::answers_of(request.input_responses, request.request_state.as_deref());
        call_through_pipeline(
            &self.tools,
            caller,
            connection,
            request.name,
            arguments,
            answers,
            context,
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.definition(name).map(|d| d.to_rmcp_tool())
    }

    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        let origin =
            || rejection_origin(&context, &self.caller(&context), &self.connection(&context));
        if let Some(error) = refuse_misshapen_call(&self.tools, &request, &context, origin) {
            return Err(error);
        }
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            request.method,
            None,
        ))
    }
}

/// rmcp takes a `tools/call` whose params do not have its shape (a name that is missing or not a string, arguments
/// that are not an object) for a request of a method it does not know, and hands it to `on_custom_request`, whose
/// default answers `-32601`, with no record. It is invalid params (`-32602`), refused and audited as the stdio
/// transport refuses it before rmcp sees it (`message_rejected`, `invalid_params`). `None` for any other method.
fn refuse_misshapen_call<S: Send + Sync + 'static>(
    tools: &ToolSet<S>,
    request: &rmcp::model::CustomRequest,
    context: &RequestContext<RoleServer>,
    origin: impl FnOnce() -> SessionOrigin,
) -> Option<ErrorData> {
    let error = super::transport::misshapen_params_error(&request.method)?;
    let origin = origin();
    let event = AuditEvent::MessageRejected {
        request_id: Some(context.id.clone()),
        method: None,
        target: None,
        reason: super::transport::MISSHAPEN_CALL_REASON,
        code: Some(error.code.0),
        bytes: message_bytes(&request.method, &request.params, context),
        caller: origin.caller,
        remote_addr: origin.remote_addr,
        forwarded_for: origin.forwarded_for,
        token_id: origin.token_id,
        session_id: origin.session_id,
        transport: None,
        client_name: None,
        client_version: None,
    };
    if let Err(err) = tools.audit().record(event) {
        tracing::error!(error = %err, "audit record not written");
    }
    Some(error)
}

/// The size of a request rmcp parsed: over HTTP its body's, as the client gave it; else (or when the body's
/// length was not given) the request encoded again, which is near it.
fn message_bytes(
    method: &str,
    params: &impl serde::Serialize,
    context: &RequestContext<RoleServer>,
) -> usize {
    #[cfg(feature = "http")]
    if let Some(length) = super::http::declared_body_length(&context.extensions) {
        return length;
    }
    let message = serde_json::json!({
        "jsonrpc": "2.0", "id": context.id, "method": method, "params": params
    });
    serde_json::to_vec(&message).map_or(0, |encoded| encoded.len())
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// Routes for an existing rmcp server: merge them into the router of your `#[tool_router]`
    /// (`Self::tool_router() + tools.tool_router(caller)`), and your handler serves secure tools next to its own.
    ///
    /// Each call goes through the secure pipeline. Its caller is the one the HTTP runner authenticated, or the
    /// [`Caller`] in the request's extensions, or else `default_caller`. A tool that logs to the client does so at
    /// `info` and above, unless the request's `_meta` says otherwise: `logging/setLevel` is your server's to answer.
    pub fn tool_router<H: Send + Sync + 'static>(&self, default_caller: Caller) -> ToolRouter<H> {
        let mut router = ToolRouter::new();
        for definition in self.definitions() {
            let tools = self.clone();
            let default_caller = default_caller.clone();
            router.add_route(ToolRoute::new_dyn(
                definition.to_rmcp_tool(),
                move |mut context: ToolCallContext<'_, H>| {
                    let tools = tools.clone();
                    let caller = caller_of(&context.request_context, &default_caller);
                    let connection = connection_of(&context.request_context);
                    HeldArguments::restore(
                        &mut context.arguments,
                        &mut context.input_responses,
                        &mut context.request_state,
                        &mut context.request_context.extensions,
                    );
                    let arguments = context.arguments.take();
                    let answers = crate::call::answers_of(
                        context.input_responses,
                        context.request_state.as_deref(),
                    );
                    Box::pin(async move {
                        call_through_pipeline(
                            &tools,
                            caller,
                            connection,
                            context.name,
                            arguments,
                            answers,
                            context.request_context,
                        )
                        .await
                    })
                },
            ));
        }
        router
    }
}

/// Any rmcp server under the policy of a tool set: what the runners serve. Wrap your own handler (its plain tools
/// merged with secure ones, see [`ToolSet::tool_router`]) with [`Secured::new`], or let
/// [`Settings::serve_with`](super::Settings::serve_with) do it.
///
/// On top of what the inner handler does, it:
/// - enforces the version policy on every request: `initialize` asking for a version outside a strict policy,
///   and any later request made under one (its `_meta` version, or over HTTP its `MCP-Protocol-Version`, taken as
///   `2025-03-26` when absent, as the specification says), are refused, and audited `version_rejected`;
/// - audits the start of each session (`session`);
/// - calls secure tools through the pipeline (never a route of the same name in the inner handler), plain tools
///   declared with [`ToolSetBuilder::plain_tool`](crate::ToolSetBuilder::plain_tool) through the pipeline around
///   the inner handler's own `call_tool`, and refuses every other tool of the inner handler (`undeclared_tool`,
///   audited), which `tools/list` does not show either.
pub struct Secured<H, S> {
    inner: H,
    secure: SecureServer<S>,
    /// Whether this instance serves a session (stdio, HTTP sessions) rather than one stateless request: it then
    /// records the session's start once.
    sessions: bool,
    /// Whether it writes `session` and `version_rejected` records (a transport that writes them itself does not).
    records_lifecycle: bool,
    session_started: AtomicBool,
    /// An `initialize` was taken (being answered, or answered): another is refused. Given back when one is refused
    /// (its version outside the policy, the inner handler's error), so that the client may try another version.
    initialize_taken: AtomicBool,
}

impl<H, S> Secured<H, S>
where
    H: ServerHandler + Clone,
    S: Send + Sync + 'static,
{
    /// `inner` under the policy of `secure`'s tool set, with `secure`'s default caller, listing and versions.
    pub fn new(inner: H, secure: SecureServer<S>) -> Self {
        Secured {
            inner,
            secure,
            sessions: true,
            records_lifecycle: true,
            session_started: AtomicBool::new(false),
            initialize_taken: AtomicBool::new(false),
        }
    }

    /// An instance that serves one stateless request rather than a session.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn stateless(mut self) -> Self {
        self.sessions = false;
        self
    }

    /// Leaves `session` and `version_rejected` records to the transport.
    pub(crate) fn without_lifecycle_records(mut self) -> Self {
        self.records_lifecycle = false;
        self
    }

    /// The handler inside.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    fn record(&self, event: AuditEvent) {
        if !self.records_lifecycle {
            return;
        }
        if let Err(error) = self.secure.tools().audit().record(event) {
            tracing::error!(%error, "could not audit a session event");
        }
    }

    fn refuse_version(&self, context: &RequestContext<RoleServer>, error: &ErrorData) {
        let data = error.data.clone().unwrap_or(serde_json::Value::Null);
        let origin = self.session_origin(context);
        self.record(AuditEvent::VersionRejected {
            caller: origin.caller,
            remote_addr: origin.remote_addr,
            forwarded_for: origin.forwarded_for,
            token_id: origin.token_id,
            session_id: origin.session_id,
            request_id: Some(context.id.clone()),
            requested: data
                .get("requested")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            supported: data
                .get("supported")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        });
    }

    /// The version a request is made under, when it says: its `_meta`, else over HTTP its header (absent, the
    /// specification's default).
    fn requested_version(context: &RequestContext<RoleServer>) -> Option<ProtocolVersion> {
        if let Some(version) = context.meta.protocol_version() {
            return Some(version);
        }
        #[cfg(feature = "http")]
        if let Some(parts) = context.extensions.get::<axum::http::request::Parts>() {
            let header = parts
                .headers
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(ProtocolVersion::V_2025_03_26.as_str());
            return serde_json::from_value(serde_json::Value::String(header.to_owned())).ok();
        }
        None
    }

    /// Refuses a request made under a version outside a strict policy.
    fn check_version(&self, context: &RequestContext<RoleServer>) -> Result<(), ErrorData> {
        let policy = self.secure.version_policy();
        if !policy.is_strict() {
            return Ok(());
        }
        let Some(requested) = Self::requested_version(context) else {
            return Ok(());
        };
        if policy.accepted().contains(&requested) {
            return Ok(());
        }
        let error = ErrorData::unsupported_protocol_version(requested, policy.accepted());
        self.refuse_version(context, &error);
        Err(error)
    }

    /// The first request of a session that negotiates inline (no `initialize`, its version in `_meta`) starts it.
    /// Over HTTP there is no such session: a request of the stateless revision stands alone, served by an instance
    /// of its own even when the runner keeps sessions for `initialize` clients, so it starts none.
    fn note_inline_session(&self, context: &RequestContext<RoleServer>) {
        if !self.sessions || self.session_started.load(Ordering::Relaxed) {
            return;
        }
        #[cfg(feature = "http")]
        if context
            .extensions
            .get::<axum::http::request::Parts>()
            .is_some()
        {
            return;
        }
        let Some(version) = context.meta.protocol_version() else {
            return;
        };
        if self.session_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let client = context.meta.get("io.modelcontextprotocol/clientInfo");
        let field = |name: &str| {
            client
                .and_then(|c| c.get(name))
                .and_then(|v| v.as_str())
                .map(crate::audit::shorten_str)
        };
        let origin = self.session_origin(context);
        self.record(AuditEvent::Session {
            lifecycle: "stateless",
            protocol_version: version.to_string(),
            client_name: field("name"),
            client_version: field("version"),
            caller: origin.caller,
            remote_addr: origin.remote_addr,
            forwarded_for: origin.forwarded_for,
            token_id: origin.token_id,
            session_id: origin.session_id,
        });
    }

    /// Who started a session, as the transport says (over HTTP, the authenticated caller, its address and its
    /// token's id): for the `session` record, which the session's calls can then be traced to.
    fn session_origin(&self, context: &RequestContext<RoleServer>) -> SessionOrigin {
        SessionOrigin::of(Some(&self.secure.caller(context)), &connection_of(context))
    }

    /// Who sent a request refused before it became a call, for its `message_rejected` record.
    fn rejection_origin(&self, context: &RequestContext<RoleServer>) -> SessionOrigin {
        rejection_origin(
            context,
            &self.secure.caller(context),
            &self.secure.connection(context),
        )
    }

    async fn initialize_checked(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        // A session is initialized once (red-team finding: a second `initialize` was answered as the first, wrote a
        // second `session` record and replaced the client's name and version on the session's later records).
        if self.sessions
            && (self.session_started.load(Ordering::Acquire)
                || self.initialize_taken.swap(true, Ordering::AcqRel))
        {
            return Err(self.refuse_initialize_again(&request, &context));
        }
        let answer = self.initialize_once(request, context).await;
        if answer.is_err() {
            self.initialize_taken.store(false, Ordering::Release);
        }
        answer
    }

    /// Refuses an `initialize` in a session already initialized (or being initialized): `-32600`, audited
    /// `message_rejected`, reason `already_initialized`, whichever transport carried it.
    fn refuse_initialize_again(
        &self,
        request: &InitializeRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> ErrorData {
        let error = ErrorData::invalid_request(
            "Invalid request: the session is already initialized (`initialize` is sent once, first)",
            None,
        );
        let bytes = message_bytes("initialize", request, context);
        self.record_rejected(
            context,
            None,
            None,
            super::transport::ALREADY_INITIALIZED_REASON,
            &error,
            bytes,
        );
        error
    }

    /// The `message_rejected` record of a request refused with `error` before it became a call (`method`: the
    /// method refused, when the refusal is of the method itself), with who sent it.
    fn record_rejected(
        &self,
        context: &RequestContext<RoleServer>,
        method: Option<String>,
        target: Option<&str>,
        reason: &'static str,
        error: &ErrorData,
        bytes: usize,
    ) {
        let origin = self.rejection_origin(context);
        let connection = self.secure.connection(context);
        let client = client_of(&connection, context);
        // A method refused past the transport names who asked, over stdio too (a trial's: its records named no
        // caller).
        let caller = origin.caller.or_else(|| {
            method
                .is_some()
                .then(|| crate::audit::shorten_str(self.secure.caller(context).id()))
        });
        let event = AuditEvent::MessageRejected {
            request_id: Some(context.id.clone()),
            method,
            target: target.map(|target| crate::audit::shorten_str(&recorded_target(target))),
            reason,
            code: Some(error.code.0),
            bytes,
            caller,
            remote_addr: origin.remote_addr,
            forwarded_for: origin.forwarded_for,
            token_id: origin.token_id,
            session_id: origin.session_id,
            transport: connection.transport,
            client_name: client.as_ref().map(|c| crate::audit::shorten_str(&c.name)),
            client_version: client
                .as_ref()
                .map(|c| crate::audit::shorten_str(&c.version)),
        };
        if let Err(err) = self.secure.tools().audit().record(event) {
            tracing::error!(error = %err, "audit record not written");
        }
        // Recorded here: the HTTP layer does not record the status it is answered with again.
        if let Some(recorded) = &connection.refusal_recorded {
            recorded.store(true, Ordering::SeqCst);
        }
    }

    async fn initialize_once(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let policy = self.secure.version_policy();
        let refused =
            no_initialize_error(&request.protocol_version, policy.accepted()).or_else(|| {
                (policy.is_strict() && !policy.accepted().contains(&request.protocol_version)).then(
                    || {
                        ErrorData::unsupported_protocol_version(
                            request.protocol_version.clone(),
                            policy.accepted(),
                        )
                    },
                )
            });
        if let Some(error) = refused {
            self.refuse_version(&context, &error);
            return Err(error);
        }
        let client_name = crate::audit::shorten_str(&request.client_info.name);
        let client_version = crate::audit::shorten_str(&request.client_info.version);
        let origin = self.session_origin(&context);
        let request_context = context.clone();
        let mut answer = self.inner.initialize(request, context).await;
        match &mut answer {
            Ok(result) => {
                self.advertise_tools(&mut result.capabilities);
                self.announce_as_set(&mut result.server_info);
                self.session_started.store(true, Ordering::Relaxed);
                // Over HTTP in sessions mode, the session's end is recorded from now on.
                #[cfg(feature = "http")]
                if let Some(announce) = request_context
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<super::http::Announce>())
                {
                    announce.announced();
                }
                self.record(AuditEvent::Session {
                    lifecycle: "initialize",
                    protocol_version: result.protocol_version.to_string(),
                    client_name: Some(client_name),
                    client_version: Some(client_version),
                    caller: origin.caller,
                    remote_addr: origin.remote_addr,
                    forwarded_for: origin.forwarded_for,
                    token_id: origin.token_id,
                    session_id: origin.session_id,
                });
            }
            Err(error) if error.code == ErrorCode::UNSUPPORTED_PROTOCOL_VERSION => {
                self.refuse_version(&request_context, error);
            }
            Err(_) => {}
        }
        answer
    }

    /// Announces the server as its settings name it (`Settings::server_info`, `SecureServer::server_info`) when the
    /// inner handler left rmcp's placeholder (`rmcp` and rmcp's version, which `ServerConfig::new` fills in): trial
    /// finding, a handler written as the README shows announced itself as `rmcp` whatever the settings said. A name
    /// the handler gives is its own.
    fn announce_as_set(&self, info: &mut Implementation) {
        static PLACEHOLDER: std::sync::LazyLock<Implementation> =
            std::sync::LazyLock::new(Implementation::from_build_env);
        if *info == *PLACEHOLDER {
            info.clone_from(&self.secure.options.info);
        }
    }

    /// Advertises the tools capability when the tool set has secure tools and the inner handler enables none (a
    /// server of prompts only): they are served all the same, and a client does not look for tools a server does
    /// not advertise. The inner handler's own capabilities stay as it set them.
    fn advertise_tools(&self, capabilities: &mut ServerCapabilities) {
        if capabilities.tools.is_none() && self.secure.tools().definitions().next().is_some() {
            capabilities.tools = Some(rmcp::model::ToolsCapability::default());
        }
    }

    /// What every request but `initialize` and `ping` passes first: the version policy, and the session's start.
    fn admit_request(&self, context: &RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.check_version(context)?;
        self.note_inline_session(context);
        Ok(())
    }

    /// A request of the inner handler's own other than a tool's (`resources/read`, `prompts/get`, a custom method):
    /// served only when the tool set declares its method ([`ToolSetBuilder::plain_method`
    /// ](crate::ToolSetBuilder::plain_method)), to a caller holding its scopes; refused otherwise (`-32601`
    /// `method_not_declared`, or `-32003` `missing_scope:SCOPE`), audited `message_rejected` with that reason (a red
    /// team's: a token with no scope read a merged server's resource, unrecorded). Deny by default, as for tools.
    fn admit_method(
        &self,
        method: &str,
        params: &impl serde::Serialize,
        target: Option<&str>,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let shown = crate::audit::shorten_str(method);
        let (reason, error) = match self.secure.tools().method_scopes(method) {
            // Nothing is served unrecorded: while the trail cannot be written, declared methods are refused before
            // their handler runs, as calls are.
            Some(_) if self.secure.tools().audit().is_failing() => (
                crate::call::codes::AUDIT_UNAVAILABLE,
                ErrorData::internal_error(
                    format!(
                        "{}: the audit trail cannot be written, so nothing is served",
                        crate::call::codes::AUDIT_UNAVAILABLE
                    ),
                    None,
                ),
            ),
            None => (
                "method_not_declared",
                ErrorData::new(
                    rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                    format!(
                        "method_not_declared: `{}` is not under the server's policy, so it is not served",
                        shown.escape_debug()
                    ),
                    None,
                ),
            ),
            Some(scopes) => match self.secure.caller(context).grant().check(scopes) {
                Ok(()) => return Ok(()),
                Err(missing) => (
                    "missing_scope",
                    ErrorData::new(
                        rmcp::model::ErrorCode(METHOD_SCOPE_CODE),
                        format!("{}{}", crate::call::codes::MISSING_SCOPE_PREFIX, missing.0),
                        None,
                    ),
                ),
            },
        };
        let bytes = message_bytes(method, params, context);
        self.record_rejected(context, Some(shown), target, reason, &error, bytes);
        Err(error)
    }

    /// The `method_call` record of an admitted request of `method`, to be written as it is answered.
    fn method_call(
        &self,
        method: String,
        target: Option<&str>,
        context: &RequestContext<RoleServer>,
    ) -> MethodCall<'_> {
        let connection = self.secure.connection(context);
        let client = client_of(&connection, context);
        MethodCall {
            audit: self.secure.tools().audit(),
            started: std::time::Instant::now(),
            event: Some(MethodCallParts {
                request_id: context.id.clone(),
                method,
                target: target.map(|target| crate::audit::shorten_str(&recorded_target(target))),
                caller: crate::audit::shorten_str(self.secure.caller(context).id()),
                transport: connection.transport,
                client,
                origin: self.rejection_origin(context),
            }),
        }
    }

    /// A call: refused before anything else by the version policy; a secure tool's straight to the pipeline,
    /// whose future is the one returned (not kept inside another alongside the request, which an async fn would
    /// do); any other tool's through [`Secured::call_other_tool`], boxed.
    fn call_tool_checked(
        &self,
        mut params: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + MaybeSendFuture + '_ {
        use futures_util::future::Either;
        if let Err(error) = self.admit_request(&context) {
            return Either::Left(Either::Left(std::future::ready(Err(error))));
        }
        // Past rmcp's own logging: the arguments go back where every handler looks for them.
        HeldArguments::restore(
            &mut params.arguments,
            &mut params.input_responses,
            &mut params.request_state,
            &mut context.extensions,
        );
        // A secure tool goes to the pipeline itself, not through the inner handler's router: a route of the same
        // name there (a plain `#[tool]` merged after the secure routes) must not run in its place, unscoped.
        if self.secure.tools().definition(&params.name).is_some() {
            return Either::Left(Either::Right(self.secure.call_tool(params, context)));
        }
        Either::Right(Box::pin(self.call_other_tool(params, context)))
    }

    /// A call of a tool the tool set does not define: a plain tool declared to it, through the pipeline; a tool of
    /// the inner handler not declared, refused; an unknown tool, a protocol error.
    async fn call_other_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tools = self.secure.tools();
        let declared = tools.plain_tool(&params.name).is_some();
        let undeclared = !declared && self.inner.get_tool(&params.name).is_some();
        let caller = self.secure.caller(&context);
        let connection = self.secure.connection(&context);
        let mut call = CallRequest::new(caller, params.name.to_string(), params.arguments.clone())
            .with_connection(connection)
            .with_rmcp_context(context.clone());
        if undeclared {
            tracing::warn!(tool = %params.name, "a tool of the server not declared to the tool set was refused");
            let response = tools.refuse_undeclared(call).await;
            return Ok(response.into_call_tool_response());
        }
        if declared {
            // What the server says the tool takes, once: an argument it does not name is recorded as a secret.
            tools.learn_plain_arguments(&params.name, || self.inner.get_tool(&params.name));
            let inner = self.inner.clone();
            let mut params = params;
            call.forward = Some(Forward::new(move |arguments| {
                // The plain handler gets a token of its own, cancelled when the pipeline stops its call.
                let mut context = context;
                let token = context.ct.child_token();
                context.ct = token.clone();
                params.arguments = arguments;
                Box::pin(async move {
                    let _stop = token.drop_guard();
                    match inner.call_tool(params, context).await? {
                        CallToolResponse::Complete(result) => Ok(result),
                        _ => Err(ErrorData::internal_error(
                            "a plain tool under the policy must answer at once (no input request, no task)",
                            None,
                        )),
                    }
                })
            }));
        }
        match tools.call(call).await {
            Ok(response) => Ok(response.into_call_tool_response()),
            Err(CallError::UnknownTool(_)) => {
                Err(ErrorData::invalid_params("tool not found", None))
            }
        }
    }

    async fn list_tools_checked(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.admit_request(&context)?;
        let caller = self.secure.caller(&context);
        let current = receives_any_output_schema(&context);
        let mut list = match self.inner.list_tools(request, context).await {
            // A handler without tools of its own (rmcp's default `tools/list` for a server that enables none).
            Err(error) if error.code == ErrorCode::METHOD_NOT_FOUND => ListToolsResult::default(),
            other => other?,
        };
        let tools = self.secure.tools();
        let callable_only = self.secure.options.listing == Listing::CallableOnly;
        let mut secure_listed = std::collections::BTreeSet::new();
        list.tools.retain_mut(|tool| {
            let definition = match tools.definition(&tool.name) {
                // A secure tool is listed as its own definition, whatever the inner handler says of it (a plain
                // route of the same name that won a router merge described another tool, with no scopes): its
                // calls go to the pipeline, and the lockfile holds this definition.
                Some(definition) => {
                    if !secure_listed.insert(definition.name()) {
                        return false;
                    }
                    *tool = definition.to_rmcp_tool();
                    definition
                }
                None => match tools.plain_tool(&tool.name) {
                    Some(definition) => {
                        publish_scopes(tool, definition);
                        definition
                    }
                    None => return false,
                },
            };
            !callable_only || caller.grant().check(definition.scopes()).is_ok()
        });
        // Secure tools the inner handler does not have (its router was not merged with the tool set's) are
        // callable all the same: the last page lists them. One it has is on one of its pages (an earlier one, when
        // it pages), listed there.
        if list.next_cursor.is_none() {
            let missing = tools
                .definitions()
                .filter(|d| !secure_listed.contains(d.name()))
                .filter(|d| self.inner.get_tool(d.name()).is_none())
                .filter(|d| !callable_only || caller.grant().check(d.scopes()).is_ok())
                .map(crate::tool::ToolDefinition::to_rmcp_tool)
                .collect::<Vec<_>>();
            list.tools.extend(missing);
        }
        if callable_only {
            crate::integrity::mark_callable_only(&mut list);
        }
        // A listing behind the policy's authentication, and with callable-only listing each caller's own: not to be
        // shared by a cache across callers. `#[tool_handler]` marks its listing `public`; a tool set served alone
        // says `private` (a red team's: the merged server's full listing said `public`).
        if list.cache_scope.is_some() {
            list.cache_scope = Some(rmcp::model::CacheScope::Private);
        }
        crate::integrity::publish_for(&mut list, current);
        Ok(list)
    }
}

/// Whether the client negotiated `2026-07-28` or later, and so receives output schemas whose root is not an object
/// (rmcp drops them for earlier versions; the published digests must cover what is received).
fn receives_any_output_schema(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28)
}

/// Puts the scopes a plain tool is declared with into its `_meta`, as a secure tool's are.
pub(crate) fn publish_scopes(tool: &mut Tool, definition: &crate::tool::ToolDefinition) {
    let mut meta = tool.meta.take().unwrap_or_default();
    meta.0.insert(
        crate::tool::SCOPES_META_KEY.into(),
        definition
            .scopes()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .into(),
    );
    tool.meta = Some(meta);
}

/// The client a request came from, as a call's records name it: the one its session began with (`initialize`),
/// else the one a stateless request's `_meta` names.
fn client_of(
    connection: &Connection,
    context: &RequestContext<RoleServer>,
) -> Option<Implementation> {
    connection
        .trust_peer_info
        .then(|| context.peer.peer_info())
        .flatten()
        .map(|initialized| initialized.client_info.clone())
        .or_else(|| {
            (!context.meta.0.is_empty())
                .then(|| context.meta.client_info())
                .flatten()
        })
}

/// A request's target as recorded, without what commonly carries a credential in a URI (reviews' and red teams':
/// `user:pw@`, a `?token=` under any name or encoding, an `#access_token=`). Its query and fragment (from the first
/// `?` or `#`) are replaced by `***`, whatever the target. One with a `:` before them, or beginning `//`, is taken
/// for a URI, a well-formed scheme or not (a round's ` https://`, `//u:pw@h`, `1abc://` were recorded whole; a
/// third's `:` or `//` inside a query was taken for the authority's start): past its authority's start (after `//`
/// following the scheme, or else after the `:`), whatever comes before its last `@` is replaced by `***`, or, when a
/// `/`, `?` or `#` lies before that `@` (a password holding one, an `@` in the path or the query), all of it. A
/// prompt's name, with none of these, is kept as it is.
fn recorded_target(target: &str) -> Cow<'_, str> {
    let query = target.find(['?', '#']);
    let head = &target[..query.unwrap_or(target.len())];
    let authority = if head.starts_with("//") {
        Some(2)
    } else {
        head.find(':').map(|colon| {
            if target[colon + 1..].starts_with("//") {
                colon + 3
            } else {
                colon + 1
            }
        })
    };
    let mut recorded = String::with_capacity(target.len() + 6);
    let mut from = 0;
    if let Some(start) = authority {
        recorded.push_str(&target[..start]);
        let rest = &target[start..];
        match rest.rfind('@') {
            Some(at) if !rest[..at].contains(['/', '?', '#']) => {
                recorded.push_str("***");
                from = start + at;
            }
            Some(_) => {
                recorded.push_str("***");
                return Cow::Owned(recorded);
            }
            None => from = start,
        }
    }
    let rest = &target[from..];
    match rest.find(['?', '#']) {
        Some(at) => {
            recorded.push_str(&rest[..=at]);
            recorded.push_str("***");
        }
        None => recorded.push_str(rest),
    }
    if recorded == target {
        Cow::Borrowed(target)
    } else {
        Cow::Owned(recorded)
    }
}

/// What a request of a merged handler's own method names, for its `method_call` record: a resource's URI, a
/// prompt's name. Nothing else a request carries is recorded (a prompt's arguments may be secrets).
trait MethodTarget {
    fn target(&self) -> Option<&str> {
        None
    }
}

impl MethodTarget for Option<PaginatedRequestParams> {}

/// `MethodTarget` for params whose target is one field of theirs.
macro_rules! target_field {
    ($($(#[$attr:meta])* $params:ty => $field:ident;)*) => {$(
        $(#[$attr])*
        impl MethodTarget for $params {
            fn target(&self) -> Option<&str> {
                Some(&self.$field)
            }
        }
    )*};
}

target_field! {
    rmcp::model::ReadResourceRequestParams => uri;
    #[allow(deprecated)]
    rmcp::model::SubscribeRequestParams => uri;
    #[allow(deprecated)]
    rmcp::model::UnsubscribeRequestParams => uri;
    rmcp::model::GetSkillRequestParams => uri;
    rmcp::model::ReadResourceDirectoryRequestParams => uri;
    rmcp::model::GetPromptRequestParams => name;
}

impl MethodTarget for rmcp::model::CompleteRequestParams {
    fn target(&self) -> Option<&str> {
        match &self.r#ref {
            rmcp::model::Reference::Resource(template) => Some(&template.uri),
            rmcp::model::Reference::Prompt(prompt) => Some(&prompt.name),
            _ => None,
        }
    }
}

/// The `method_call` record of one admitted request of a declared method: written once, as the inner handler
/// answers, or, if the request's future is dropped first (its client gone, the server stopping), as it is dropped,
/// `cancelled`.
struct MethodCall<'a> {
    audit: &'a crate::audit::Audit,
    started: std::time::Instant,
    /// Taken when the record is written.
    event: Option<MethodCallParts>,
}

struct MethodCallParts {
    request_id: rmcp::model::RequestId,
    method: String,
    target: Option<String>,
    caller: String,
    transport: Option<&'static str>,
    client: Option<Implementation>,
    origin: SessionOrigin,
}

impl MethodCall<'_> {
    /// Runs the inner handler's answer: a panic in it is answered `-32603`, its message withheld (it may quote what
    /// the request carried), rather than leaving the client without an answer; the answer is given only once its
    /// record is written.
    async fn serve<T>(
        mut self,
        running: crate::call::panic::Running,
        answer: impl Future<Output = Result<T, ErrorData>>,
    ) -> Result<T, ErrorData> {
        use futures_util::FutureExt as _;
        let settled = crate::call::panic::Guarded::running(
            running,
            std::panic::AssertUnwindSafe(answer).catch_unwind(),
        )
        .await;
        let (outcome, answer) = match settled {
            Ok(Ok(answer)) => (crate::audit::Outcome::Ok, Ok(answer)),
            Ok(Err(error)) => (crate::audit::Outcome::Error, Err(error)),
            // The payload may quote what the request carried: dropped unread.
            Err(_payload) => (
                crate::audit::Outcome::Panic,
                Err(ErrorData::internal_error(
                    "the method's handler panicked (its message is withheld: it may quote what the request \
                     carried)",
                    None,
                )),
            ),
        };
        let code = answer.as_ref().err().map(|error| error.code.0);
        match self.write(outcome, code) {
            Ok(()) => answer,
            Err(error) => {
                tracing::error!(%error, "method_call record not written; the answer is withheld");
                Err(ErrorData::internal_error(
                    format!(
                        "{}: the answer is withheld: its audit record could not be written",
                        crate::call::codes::AUDIT_UNAVAILABLE
                    ),
                    None,
                ))
            }
        }
    }

    fn write(
        &mut self,
        outcome: crate::audit::Outcome,
        code: Option<i32>,
    ) -> Result<(), crate::audit::AuditError> {
        let Some(parts) = self.event.take() else {
            return Ok(());
        };
        let elapsed = self.started.elapsed();
        self.audit.record(AuditEvent::MethodCall {
            request_id: parts.request_id,
            method: parts.method,
            target: parts.target,
            outcome,
            code,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            caller: parts.caller,
            transport: parts.transport,
            client_name: parts
                .client
                .as_ref()
                .map(|client| crate::audit::shorten_str(&client.name)),
            client_version: parts
                .client
                .as_ref()
                .map(|client| crate::audit::shorten_str(&client.version)),
            remote_addr: parts.origin.remote_addr,
            forwarded_for: parts.origin.forwarded_for,
            token_id: parts.origin.token_id,
            session_id: parts.origin.session_id,
        })
    }
}

impl Drop for MethodCall<'_> {
    fn drop(&mut self) {
        if self.event.is_some()
            && let Err(error) = self.write(crate::audit::Outcome::Cancelled, None)
        {
            tracing::error!(%error, "method_call record not written");
        }
    }
}

/// Requests passed on to the inner handler once admitted (version policy, session start): methods the gate never
/// consults (see `NOT_DECLARABLE` in the tool set).
macro_rules! admitted {
    ($($(#[$attr:meta])* $name:ident($param:ty) -> $out:ty;)*) => {$(
        $(#[$attr])*
        async fn $name(
            &self,
            request: $param,
            context: RequestContext<RoleServer>,
        ) -> Result<$out, ErrorData> {
            self.admit_request(&context)?;
            self.inner.$name(request, context).await
        }
    )*};
}

/// The handler's own methods, denied by default: served by the inner handler only as the tool set declares them,
/// to a caller holding their scopes (see [`Secured::admit_method`]), each request with its `method_call` record.
macro_rules! declared {
    ($($(#[$attr:meta])* $name:ident($param:ty) -> $out:ty = $method:literal;)*) => {$(
        $(#[$attr])*
        async fn $name(
            &self,
            request: $param,
            context: RequestContext<RoleServer>,
        ) -> Result<$out, ErrorData> {
            self.admit_request(&context)?;
            self.admit_method($method, &request, MethodTarget::target(&request), &context)?;
            let record = self.method_call($method.to_owned(), MethodTarget::target(&request), &context);
            record
                .serve(
                    crate::call::panic::Running::Method($method),
                    // Made inside the wrapper: a handler whose `fn` panics before its future exists
                    // (rmcp lets one return any future) is caught too (a review's).
                    async move { self.inner.$name(request, context).await },
                )
                .await
        }
    )*};
}

/// Notifications passed on as they are.
macro_rules! notified {
    ($($name:ident($param:ty);)*) => {$(
        async fn $name(&self, notification: $param, context: NotificationContext<RoleServer>) {
            self.inner.$name(notification, context).await
        }
    )*};
}

impl<H, S> ServerHandler for Secured<H, S>
where
    H: ServerHandler + Clone,
    S: Send + Sync + 'static,
{
    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.inner.ping(context).await
    }

    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, ErrorData>> + MaybeSendFuture + '_ {
        // Boxed: rmcp's future for a request is as large as the largest of its handler's futures, and this one
        // (2 KB) was the largest by far; every request's future (over stateless HTTP, a task spawned per request,
        // copied whole as it is made and as it ends) carried its room.
        Box::pin(self.initialize_checked(request, context))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(self.secure.version_policy().accepted().to_vec())
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::DiscoverResult, ErrorData> {
        let mut discovered = self.inner.discover(context).await?;
        self.advertise_tools(&mut discovered.capabilities);
        // The inner handler lists the versions it was written for (rmcp's default: all it knows); the policy says
        // which are served (a review's finding: a minimum of 2026-07-28 still listed the four before it).
        discovered.supported_versions = self.secure.version_policy().accepted().to_vec();
        // Announced as in `initialize` (see `announce_as_set`): its placeholder named `rmcp` here too.
        if let Some(meta) = discovered.meta.as_mut()
            && let Some(info) = meta.get_mut(SERVER_INFO_META)
            && let Ok(mut announced) = serde_json::from_value::<Implementation>(info.clone())
        {
            self.announce_as_set(&mut announced);
            if let Ok(value) = serde_json::to_value(&announced) {
                *info = value;
            }
        }
        Ok(discovered)
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + MaybeSendFuture + '_ {
        self.call_tool_checked(request, context)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.list_tools_checked(request, context).await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let tools = self.secure.tools();
        if let Some(definition) = tools.definition(name) {
            return Some(definition.to_rmcp_tool());
        }
        tools
            .plain_tool(name)
            .and_then(|_| self.inner.get_tool(name))
    }

    admitted! {
        #[allow(deprecated)]
        set_level(rmcp::model::SetLevelRequestParams) -> ();
        get_task(rmcp::model::GetTaskParams) -> rmcp::model::GetTaskResult;
        update_task(rmcp::model::UpdateTaskParams) -> ();
        cancel_task(rmcp::model::CancelTaskParams) -> ();
    }

    declared! {
        complete(rmcp::model::CompleteRequestParams) -> rmcp::model::CompleteResult = "completion/complete";
        get_prompt(rmcp::model::GetPromptRequestParams) -> rmcp::model::GetPromptResponse = "prompts/get";
        list_prompts(Option<PaginatedRequestParams>) -> rmcp::model::ListPromptsResult = "prompts/list";
        list_resources(Option<PaginatedRequestParams>) -> rmcp::model::ListResourcesResult = "resources/list";
        list_resource_templates(Option<PaginatedRequestParams>) -> rmcp::model::ListResourceTemplatesResult =
            "resources/templates/list";
        read_resource(rmcp::model::ReadResourceRequestParams) -> rmcp::model::ReadResourceResponse =
            "resources/read";
        #[allow(deprecated)]
        subscribe(rmcp::model::SubscribeRequestParams) -> () = "resources/subscribe";
        #[allow(deprecated)]
        unsubscribe(rmcp::model::UnsubscribeRequestParams) -> () = "resources/unsubscribe";
        list_skills(Option<PaginatedRequestParams>) -> rmcp::model::ListSkillsResult = "skills/list";
        get_skill(rmcp::model::GetSkillRequestParams) -> rmcp::model::GetSkillResult = "skills/get";
        read_resource_directory(rmcp::model::ReadResourceDirectoryRequestParams) -> rmcp::model::ReadResourceDirectoryResult =
            "resources/directory/read";
    }

    /// A `tools/call` rmcp did not parse as one is refused here (see `refuse_misshapen_call`), never passed to
    /// the inner handler; any other method is, once admitted and declared ([`ToolSetBuilder::plain_method`
    /// ](crate::ToolSetBuilder::plain_method)).
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        // Recorded as the gate's refusals are, naming who asked, the transport and the client (a red team's: these
        // records named none of them).
        if let Some(error) = super::transport::misshapen_params_error(&request.method) {
            let bytes = message_bytes(&request.method, &request.params, &context);
            self.record_rejected(
                &context,
                Some(crate::audit::shorten_str(&request.method)),
                None,
                super::transport::MISSHAPEN_CALL_REASON,
                &error,
                bytes,
            );
            return Err(error);
        }
        self.admit_request(&context)?;
        self.admit_method(&request.method, &request.params, None, &context)?;
        let record = self.method_call(crate::audit::shorten_str(&request.method), None, &context);
        record
            .serve(crate::call::panic::Running::CustomMethod, async move {
                self.inner.on_custom_request(request, context).await
            })
            .await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        self.inner.listen(context).await
    }

    notified! {
        on_cancelled(rmcp::model::CancelledNotificationParam);
        on_progress(rmcp::model::ProgressNotificationParam);
        on_custom_notification(rmcp::model::CustomNotification);
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_initialized(context).await
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_roots_list_changed(context).await
    }

    fn get_info(&self) -> ServerConfig {
        let mut info = self.inner.get_info();
        self.advertise_tools(&mut info.capabilities);
        self.announce_as_set(&mut info.server_info);
        info
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::HeldArguments;
    use serde_json::json;

    #[test]
    fn arguments_are_held_whenever_rmcp_may_print_requests() {
        use log::LevelFilter as Log;
        use tracing::level_filters::LevelFilter;
        // rmcp prints requests at `debug` and `trace`; at `info` and below nothing it prints shows them.
        assert!(HeldArguments::needed_at(LevelFilter::TRACE, Log::Off));
        assert!(HeldArguments::needed_at(LevelFilter::DEBUG, Log::Off));
        assert!(!HeldArguments::needed_at(LevelFilter::INFO, Log::Off));
        assert!(!HeldArguments::needed_at(LevelFilter::ERROR, Log::Info));
        assert!(!HeldArguments::needed_at(LevelFilter::OFF, Log::Off));
        // No `tracing` subscriber, but a `log` logger at `debug`, which `tracing`'s `log` features feed.
        assert!(HeldArguments::needed_at(LevelFilter::OFF, Log::Debug));
        assert!(HeldArguments::needed_at(LevelFilter::WARN, Log::Trace));
    }

    /// A request context with a live peer (an rmcp client over an in-memory pipe), for the lookups that read it.
    async fn request_context() -> rmcp::service::RequestContext<rmcp::RoleServer> {
        use rmcp::ServiceExt as _;
        let (server_io, client_io) = tokio::io::duplex(4096);
        let tools = crate::ToolSet::builder(()).build().unwrap();
        let server = tokio::spawn(async move {
            super::SecureServer::new(tools)
                .serve(server_io)
                .await
                .unwrap()
        });
        let client = ().serve(client_io).await.unwrap();
        let running = server.await.unwrap();
        let peer = running.peer().clone();
        // Both ends stay up for the test's length.
        std::mem::forget((client, running));
        rmcp::service::RequestContext::new(rmcp::model::RequestId::Number(1), peer)
    }

    /// The caller the runner's HTTP authentication vouches for wins over a `Caller` some other layer put into the
    /// request; that one, over the default.
    #[tokio::test]
    async fn the_runners_authenticated_caller_comes_first() {
        use crate::{Caller, Connection, Grant};
        let authenticated = Caller::new("alice", Grant::parse("files.read").unwrap());
        let other = Caller::new("layer", Grant::parse("files.write").unwrap());
        let default = Caller::anonymous();

        let mut context = request_context().await;
        assert_eq!(super::caller_of(&context, &default).id(), default.id());
        context.extensions.insert(other.clone());
        assert_eq!(super::caller_of(&context, &default).id(), "layer");
        context.extensions.insert(Connection {
            caller: Some(authenticated),
            ..Connection::default()
        });
        assert_eq!(super::caller_of(&context, &default).id(), "alice");
    }

    #[test]
    fn a_calls_arguments_are_held_out_of_its_body_and_nothing_else_moves() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools\/call","params":{"name":"store","arguments":{"secret":"s3","n":[1,{"a":2}]},"_meta":{"k":1}}}"#;
        let (held_body, held) = HeldArguments::hold_in_body(body).expect("held");
        assert_eq!(
            std::str::from_utf8(&held_body).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools\/call","params":{"name":"store","arguments":null,"_meta":{"k":1}}}"#
        );
        assert_eq!(
            serde_json::Value::Object(held.arguments.unwrap()),
            json!({"secret": "s3", "n": [1, {"a": 2}]})
        );
        // rmcp reads `null` as no arguments.
        let message: rmcp::model::ClientJsonRpcMessage =
            serde_json::from_slice(&held_body).unwrap();
        let rmcp::model::ClientJsonRpcMessage::Request(request) = message else {
            panic!("not a request")
        };
        let rmcp::model::ClientRequest::CallToolRequest(call) = request.request else {
            panic!("not a call")
        };
        assert!(call.params.arguments.is_none());
    }

    /// Red-team finding: a client's answers (`inputResponses`, and those riding in `requestState`) were printed
    /// whole in rmcp's `debug` events. They are held with the arguments, in whatever order they come.
    #[test]
    fn a_calls_answers_are_held_out_of_its_body_with_its_arguments() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"requestState":"{\"answers\":{\"a\":1}}","name":"ask","inputResponses":{"elicitation-0":{"action":"accept","content":{"pin":"1234"}}},"_meta":{"k":1}}}"#;
        let (held_body, held) = HeldArguments::hold_in_body(body).expect("held");
        assert_eq!(
            std::str::from_utf8(&held_body).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"requestState":null,"name":"ask","inputResponses":null,"_meta":{"k":1}}}"#
        );
        assert!(held.arguments.is_none());
        assert_eq!(
            held.request_state.as_deref(),
            Some(r#"{"answers":{"a":1}}"#)
        );
        assert_eq!(
            serde_json::to_value(held.input_responses.as_ref().unwrap()).unwrap(),
            json!({"elicitation-0": {"action": "accept", "content": {"pin": "1234"}}})
        );
        let message: rmcp::model::ClientJsonRpcMessage =
            serde_json::from_slice(&held_body).unwrap();
        let rmcp::model::ClientJsonRpcMessage::Request(request) = message else {
            panic!("not a request")
        };
        let rmcp::model::ClientRequest::CallToolRequest(mut call) = request.request else {
            panic!("not a call")
        };
        assert!(call.params.input_responses.is_none() && call.params.request_state.is_none());
        // Put back as the handler finds them.
        call.extensions.insert(held);
        let params = &mut call.params;
        HeldArguments::restore(
            &mut params.arguments,
            &mut params.input_responses,
            &mut params.request_state,
            &mut call.extensions,
        );
        assert!(params.input_responses.is_some());
        assert_eq!(
            params.request_state.as_deref(),
            Some(r#"{"answers":{"a":1}}"#)
        );

        // All three, arguments last.
        let body = br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"ask","inputResponses":{},"requestState":"s","arguments":{"x":1}}}"#;
        let (held_body, held) = HeldArguments::hold_in_body(body).expect("held");
        assert_eq!(
            std::str::from_utf8(&held_body).unwrap(),
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"ask","inputResponses":null,"requestState":null,"arguments":null}}"#
        );
        assert_eq!(held.request_state.as_deref(), Some("s"));
        assert!(held.arguments.is_some() && held.input_responses.is_some());
    }

    #[test]
    fn any_other_body_is_left_as_it_is() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"arguments":{"a":1}}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"a":1}}}]"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"a":1}}"#,
            b"not json",
        ] {
            assert!(
                HeldArguments::hold_in_body(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// A review's finding: a call whose answers were not of their types went to rmcp as it was, and rmcp's events
    /// printed its arguments, redacted ones included. What is of its type is held; what is not, or params that
    /// cannot be read member by member, are put out of sight (`0`, `{}`), and rmcp still refuses the call as
    /// misshapen.
    #[test]
    fn a_misshapen_calls_members_are_held_or_put_out_of_sight() {
        for (body, expected, holds_arguments) in [
            (
                &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"secret":"s"},"inputResponses":"SECRET"}}"#[..],
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null,"inputResponses":0}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","requestState":{"a":"SECRET"},"arguments":{"secret":"s"}}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","requestState":0,"arguments":null}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"secret=SECRET"}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":0}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1},"arguments":{"secret":"SECRET"}}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["SECRET"]}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                false,
            ),
        ] {
            let (held_body, held) = HeldArguments::hold_in_body(body).expect("held");
            assert_eq!(std::str::from_utf8(&held_body).unwrap(), expected);
            assert_eq!(held.arguments.is_some(), holds_arguments, "{expected}");
            // Still no call rmcp takes.
            let message: rmcp::model::ClientJsonRpcMessage =
                serde_json::from_slice(&held_body).unwrap();
            let rmcp::model::ClientJsonRpcMessage::Request(request) = message else {
                panic!("not a request")
            };
            assert!(
                !matches!(
                    request.request,
                    rmcp::model::ClientRequest::CallToolRequest(_)
                ),
                "{expected}"
            );
        }
    }
}

#[cfg(test)]
mod option_tests {
    use rmcp::ServerHandler as _;

    /// Review finding: setting an option on a server that shared its options (one made by `for_session`, as
    /// `serve_with` hands them to its `make`) panicked. Each server now changes its own copy.
    #[test]
    fn a_session_copy_takes_options_of_its_own_without_touching_the_original() {
        let tools = crate::ToolSet::builder(()).build().unwrap();
        let original = super::SecureServer::new(tools).instructions("the original's");
        let copy = original.for_session().instructions("the copy's");
        assert_eq!(copy.get_info().instructions.as_deref(), Some("the copy's"));
        assert_eq!(
            original.get_info().instructions.as_deref(),
            Some("the original's")
        );
    }
}
