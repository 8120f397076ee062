//! Serving a tool set over MCP with rmcp: a server handler, routes to merge into an existing rmcp server, the
//! protocol version policy, and the stdio runner.

#[cfg(feature = "http")]
pub mod http;
mod id_scan;
mod settings;
mod stdin;
mod stdio;
mod transport;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation, InitializeRequestParams,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{MaybeSendFuture, RequestContext};
use rmcp::{RoleServer, ServerHandler};

pub use settings::{CallLimits, InvalidSetting};
pub use stdio::{DEFAULT_SHUTDOWN_GRACE, StdioConfig, StdioError, serve_stdio};
pub use transport::{DEFAULT_MAX_MESSAGE_BYTES, LineTransport};

use crate::call::{CallError, CallId, CallRequest, Caller, Connection, SessionState};
use crate::toolset::ToolSet;

/// Which tools `tools/list` shows a caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Listing {
    /// Every tool, each with the scopes it requires in `_meta` (the default). A caller, and the person behind the
    /// host, can see what exists and what it would take to use it; hiding a tool protects nothing, since every
    /// call is checked anyway, and many clients only call tools they have listed.
    #[default]
    All,
    /// Only the tools whose scopes the caller holds. The list then depends on the caller, so it is not marked
    /// cacheable across callers.
    CallableOnly,
}

/// The protocol versions a server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPolicy {
    accepted: Vec<ProtocolVersion>,
    strict: bool,
}

impl Default for VersionPolicy {
    /// Every version rmcp knows, negotiated as the specification says: a client asking for a version the server
    /// does not have is offered the newest one it does.
    fn default() -> Self {
        VersionPolicy {
            accepted: ProtocolVersion::KNOWN_VERSIONS.to_vec(),
            strict: false,
        }
    }
}

impl VersionPolicy {
    /// Every known version from `minimum` on, strictly: a client asking for anything else is refused.
    pub fn minimum(minimum: ProtocolVersion) -> Self {
        VersionPolicy {
            accepted: ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .filter(|v| v.as_str() >= minimum.as_str())
                .cloned()
                .collect(),
            strict: true,
        }
    }

    /// [`VersionPolicy::minimum`] from a version's name (`2025-06-18`), as configuration gives it; an unknown name
    /// is an error whose message lists the known ones.
    pub fn minimum_named(name: &str) -> Result<Self, String> {
        match ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .find(|v| v.as_str() == name.trim())
        {
            Some(minimum) => Ok(VersionPolicy::minimum(minimum.clone())),
            None => {
                let names: Vec<_> = ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .map(|v| v.as_str())
                    .collect();
                Err(format!(
                    "unknown protocol version `{}`; expected one of {}",
                    name.escape_debug(),
                    names.join(", ")
                ))
            }
        }
    }

    /// Exactly these versions, strictly.
    pub fn only(versions: impl IntoIterator<Item = ProtocolVersion>) -> Self {
        VersionPolicy {
            accepted: versions.into_iter().collect(),
            strict: true,
        }
    }

    /// Whether a client asking for a version outside the policy is refused (`true`) or offered one inside it.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The versions accepted, oldest first.
    pub fn accepted(&self) -> &[ProtocolVersion] {
        &self.accepted
    }

    /// Whether out-of-policy versions are refused.
    pub fn is_strict(&self) -> bool {
        self.strict
    }
}

/// An rmcp [`ServerHandler`] serving a [`ToolSet`]: `tools/list`, `tools/call` through the secure pipeline,
/// `get_tool`, and `logging/setLevel` (so tools can log to the client, see [`ClientLog`](crate::ClientLog)).
///
/// The caller of a request is the [`Caller`] found in the request's extensions (an authenticating transport puts
/// it there), or else the server's default caller (for stdio, the local user with the `MCP_SCOPES` grant; by
/// default, an anonymous caller holding nothing). What the transport knows of the request's origin comes the same
/// way, as a [`Connection`].
///
/// Serve each session with its own copy, [`SecureServer::for_session`], so that a client's log level stays its own.
pub struct SecureServer<S> {
    tools: ToolSet<S>,
    options: Arc<Options>,
    session: Arc<SessionState>,
    session_id: Option<Arc<str>>,
}

struct Options {
    default_caller: Caller,
    listing: Listing,
    versions: VersionPolicy,
    info: Implementation,
    instructions: Option<String>,
    transport: Option<&'static str>,
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

    fn options_mut(&mut self) -> &mut Options {
        Arc::get_mut(&mut self.options).expect("options are set before the server is cloned")
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

/// A value an HTTP layer put into the request: directly in rmcp's extensions, or, over streamable HTTP, inside the
/// `http::request::Parts` rmcp puts there.
fn from_request<T: Clone + Send + Sync + 'static>(
    context: &RequestContext<RoleServer>,
) -> Option<T> {
    let direct = context.extensions.get::<T>();
    #[cfg(feature = "http")]
    let direct = direct.or_else(|| {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<T>())
    });
    direct.cloned()
}

fn caller_of(context: &RequestContext<RoleServer>, default: &Caller) -> Caller {
    from_request::<Caller>(context).unwrap_or_else(|| default.clone())
}

/// What the transport put into the request about its origin; over a transport that says nothing (stdio, a
/// session in process), the client's own `initialize` may be trusted for its name.
fn connection_of(context: &RequestContext<RoleServer>) -> Connection {
    from_request::<Connection>(context).unwrap_or_else(|| Connection {
        trust_peer_info: true,
        ..Connection::default()
    })
}

/// A call through the pipeline, as an rmcp tool answer. The request moves into the call before the future is
/// made, so it is not copied along with it.
fn call_through_pipeline<'a, S: Send + Sync + 'static>(
    tools: &'a ToolSet<S>,
    caller: Caller,
    connection: Connection,
    name: Cow<'static, str>,
    arguments: Option<rmcp::model::JsonObject>,
    context: RequestContext<RoleServer>,
) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + Send + 'a {
    let request = CallRequest {
        caller,
        request_id: context.id.clone(),
        tool: name.into_owned(),
        arguments,
        connection,
        rmcp: Some(context),
    };
    let call = tools.call(request);
    async move {
        match call.await {
            Ok(response) => Ok(CallToolResponse::Complete(response.into_call_tool_result())),
            Err(CallError::UnknownTool(_)) => {
                Err(ErrorData::invalid_params("tool not found", None))
            }
        }
    }
}

impl<S: Send + Sync + 'static> ServerHandler for SecureServer<S> {
    fn get_info(&self) -> ServerConfig {
        #[allow(deprecated)]
        // logging is deprecated by SEP-2577 but part of every released revision
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_logging()
            .build();
        let mut config =
            InitializeResult::new(capabilities).with_server_info(self.options.info.clone());
        if let Some(instructions) = &self.options.instructions {
            config = config.with_instructions(instructions.clone());
        }
        config
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
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + MaybeSendFuture + '_ {
        let caller = self.caller(&context);
        let connection = self.connection(&context);
        call_through_pipeline(
            &self.tools,
            caller,
            connection,
            request.name,
            request.arguments,
            context,
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.definition(name).map(|d| d.to_rmcp_tool())
    }
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// Routes for an existing rmcp server: merge them into the router of your `#[tool_router]`
    /// (`Self::tool_router() + tools.tool_router(caller)`), and your handler serves secure tools next to its own.
    ///
    /// Each call goes through the secure pipeline. Its caller is the [`Caller`] in the request's extensions, or
    /// else `default_caller`. A tool that logs to the client does so at `info` and above, unless the request's
    /// `_meta` says otherwise: `logging/setLevel` is your server's to answer.
    pub fn tool_router<H: Send + Sync + 'static>(&self, default_caller: Caller) -> ToolRouter<H> {
        let mut router = ToolRouter::new();
        for definition in self.definitions() {
            let tools = self.clone();
            let default_caller = default_caller.clone();
            router.add_route(ToolRoute::new_dyn(
                definition.to_rmcp_tool(),
                move |context: ToolCallContext<'_, H>| {
                    let tools = tools.clone();
                    let caller = caller_of(&context.request_context, &default_caller);
                    let connection = connection_of(&context.request_context);
                    Box::pin(async move {
                        call_through_pipeline(
                            &tools,
                            caller,
                            connection,
                            context.name,
                            context.arguments,
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
