//! The tool set: the registered tools, their state, their limits and guards, and the audit trail. Calls go
//! through [`ToolSet::call`], the pipeline in [`crate::call`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::JsonObject;
use serde_json::Value;

use crate::audit::{self, Audit, AuditSink};
use crate::call::guard::Guard;
use crate::call::limits::{ConcurrencyLimit, PerCallerLimit, Rate, RateLimiter};
use crate::call::panic;
use crate::call::{Lifecycle, RunFn, run_plain, run_stages};
use crate::scope::Scope;
use crate::tool::{DefinitionError, SecureTool, ToolDefinition};

/// The default time a handler may run before it is stopped: 60 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default number of calls a tool set runs at once: 64. One more is refused `overloaded`.
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 64;

/// What the pipeline needs of a registered tool, whatever the set's state.
pub(crate) struct ToolEntry {
    pub(crate) definition: ToolDefinition,
    /// The name and scopes again, shared with each call's context and audit record.
    pub(crate) name: Arc<str>,
    pub(crate) scopes: Arc<[Scope]>,
    /// Argument names the schema allows, when it allows no others.
    pub(crate) allowed: Option<BTreeSet<String>>,
    /// Whether a `call_started` record must reach the audit before the handler runs: every tool not marked
    /// `read_only`.
    pub(crate) records_start: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) rate: Option<RateLimiter>,
    pub(crate) concurrency: Option<ConcurrencyLimit>,
    pub(crate) guards: Vec<Arc<dyn Guard>>,
    /// A plain rmcp tool of the server's, under the policy: not listed or routed by the set.
    pub(crate) plain: bool,
    /// For a plain tool, the argument names of the input schema its server lists, once known (the server is asked
    /// at its first call): arguments it does not name are recorded as secrets, as for a secure tool.
    pub(crate) plain_arguments: std::sync::OnceLock<BTreeSet<String>>,
    /// For a plain tool, whether its server lists it with an output schema, once known (with its arguments).
    pub(crate) plain_output_schema: std::sync::OnceLock<bool>,
}

impl ToolEntry {
    /// A plain tool's argument names that may be recorded in clear (when not redacted), once its server has
    /// described it. (A secure tool's are its schema's `properties`: see the pipeline's `Call::inputs`.)
    pub(crate) fn known_arguments(&self) -> Option<&BTreeSet<String>> {
        self.plain_arguments.get()
    }

    /// Whether the tool is listed with an output schema: a secure tool's own; a plain tool's as its server lists it,
    /// taken to have one while that is not known (so that a refusal carries no `structuredContent` that the schema
    /// would not admit).
    pub(crate) fn has_output_schema(&self) -> bool {
        if self.plain {
            return self.plain_output_schema.get().copied().unwrap_or(true);
        }
        self.definition.output_schema().is_some()
    }
}

pub(crate) struct Registered<S> {
    pub(crate) entry: ToolEntry,
    pub(crate) run: RunFn<S>,
}

/// A set of secure tools with their shared state `S`, limits, guards and audit trail: the one way a tool is called.
///
/// Cheap to clone; clones share everything.
pub struct ToolSet<S = ()> {
    pub(crate) inner: Arc<Inner<S>>,
}

pub(crate) struct Inner<S> {
    pub(crate) tools: BTreeMap<&'static str, Registered<S>>,
    pub(crate) state: S,
    pub(crate) audit: Audit,
    pub(crate) timeout: Duration,
    pub(crate) rate: Option<RateLimiter>,
    pub(crate) concurrency: Option<ConcurrencyLimit>,
    /// How many calls one caller may have running at once.
    pub(crate) per_caller: Option<PerCallerLimit>,
    pub(crate) guards: Vec<Arc<dyn Guard>>,
    pub(crate) lifecycle: Lifecycle,
    #[cfg(feature = "otel")]
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
    /// The methods of a merged handler served under the policy, with the scopes each requires.
    pub(crate) methods: BTreeMap<String, Arc<[Scope]>>,
}

impl<S> Clone for ToolSet<S> {
    fn clone(&self) -> Self {
        ToolSet {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for ToolSet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSet")
            .field("tools", &self.inner.tools.keys().collect::<Vec<_>>())
            .field("audit", &self.inner.audit)
            .field("timeout", &self.inner.timeout)
            .field("rate", &self.inner.rate.as_ref().map(RateLimiter::rate))
            .field(
                "max_concurrent_calls",
                &self.inner.concurrency.as_ref().map(ConcurrencyLimit::max),
            )
            .field(
                "max_concurrent_calls_per_caller",
                &self.inner.per_caller.as_ref().map(PerCallerLimit::max),
            )
            .field("guards", &self.inner.guards.len())
            .finish()
    }
}

/// Per-tool settings, given to [`ToolSetBuilder::tool_with`]. They start from what the attribute declared.
#[must_use]
pub struct ToolOptions {
    timeout: Option<Duration>,
    rate: Option<Rate>,
    concurrency: Option<u32>,
    guards: Vec<Arc<dyn Guard>>,
}

impl ToolOptions {
    /// How long the handler may run before it is stopped (outcome and code `timeout`); overrides the set's. At
    /// least 1 ms: a shorter one is refused when the set is built.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How often each caller may call this tool (`rate_limited` past it); applies as well as the set's rate. The
    /// set's rate is checked first: a call it admits uses up one of its calls even when this rate then refuses it.
    pub fn rate_limit(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// How many calls of this tool may run at once (`overloaded` past it); applies as well as the set's limit.
    pub fn max_concurrent_calls(mut self, max: u32) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// Adds a guard for this tool; it runs after the set's guards.
    pub fn guard(mut self, guard: impl Guard) -> Self {
        self.guards.push(Arc::new(guard));
        self
    }
}

/// A plain rmcp tool put under the policy: its name as its server lists it, the scopes it requires, the arguments
/// its records withhold, and its limits. See [`ToolSetBuilder::plain_tool`].
#[must_use]
pub struct PlainTool {
    name: String,
    scopes: Vec<String>,
    unscoped: bool,
    audit_redact: Vec<String>,
    read_only: bool,
    options: ToolOptions,
}

impl PlainTool {
    /// The tool `name`, requiring nothing yet: give it a scope, or say it needs none.
    pub fn new(name: impl Into<String>) -> Self {
        PlainTool {
            name: name.into(),
            scopes: Vec::new(),
            unscoped: false,
            audit_redact: Vec::new(),
            read_only: false,
            options: ToolOptions {
                timeout: None,
                rate: None,
                concurrency: None,
                guards: Vec::new(),
            },
        }
    }

    /// Requires `scope` (as well as any given before).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Requires no scope: every caller may call it (still audited, still limited).
    pub fn unscoped(mut self) -> Self {
        self.unscoped = true;
        self
    }

    /// Arguments whose values never reach an audit record (nor, when its server refuses the call, the message).
    pub fn audit_redact(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audit_redact.extend(names.into_iter().map(Into::into));
        self
    }

    /// The tool changes nothing: no `call_started` record is written before it runs.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Limits and guards of its own.
    pub fn options(mut self, configure: impl FnOnce(ToolOptions) -> ToolOptions) -> Self {
        self.options = configure(self.options);
        self
    }
}

/// A request method of your own server other than a tool's (`resources/read`, `prompts/get`, `prompts/list`,
/// `completion/complete`, a custom method), declared to the tool set ([`ToolSetBuilder::plain_method`]) so that a
/// server serving your handler under the policy ([`Secured`](crate::serve::Secured), [`Settings::serve_with`
/// ](crate::serve::Settings::serve_with)) serves it, to callers holding its scopes. A method of your handler not
/// declared is refused (`method_not_declared`): deny by default, as for tools.
#[must_use]
#[derive(Debug, Clone)]
pub struct PlainMethod {
    method: String,
    scopes: Vec<String>,
    unscoped: bool,
    /// Declared with [`PlainMethod::custom`]: not taken for a typo of a method MCP defines.
    custom: bool,
}

impl PlainMethod {
    /// The method `method` (as a request names it: `resources/read`), requiring nothing yet: give it a scope, or
    /// say it needs none.
    ///
    /// A name a letter or two from a method MCP defines, in its namespace (`resource/read`, `prompts/gte`), stops
    /// the build as a typo of it; declare a method of your own there with [`custom`](Self::custom).
    pub fn new(method: impl Into<String>) -> Self {
        PlainMethod {
            method: method.into(),
            scopes: Vec::new(),
            unscoped: false,
            custom: false,
        }
    }

    /// A custom method of yours, named as close to one MCP defines as it is on purpose (`prompts/set`): not taken
    /// for a typo (see [`new`](Self::new)).
    pub fn custom(method: impl Into<String>) -> Self {
        PlainMethod {
            custom: true,
            ..Self::new(method)
        }
    }

    /// Requires `scope` (as well as any given before).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Requires no scope: every caller the transport let in may ask it.
    pub fn unscoped(mut self) -> Self {
        self.unscoped = true;
        self
    }
}

/// The longest server id ([`ToolSetBuilder::server_id`]), in bytes.
pub const MAX_SERVER_ID_BYTES: usize = 256;

/// Whether `id` may be a server id: 1 to [`MAX_SERVER_ID_BYTES`] bytes of printable ASCII, spaces within only (a
/// second round's bidirectional overrides, zero-width spaces and an id of spaces alone were taken: an identifier on
/// every record, shown to operators, is plain text).
fn check_server_id(id: &str) -> Result<(), String> {
    let printable = id.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if id.is_empty()
        || id.len() > MAX_SERVER_ID_BYTES
        || !printable
        || id.starts_with(' ')
        || id.ends_with(' ')
    {
        return Err(format!(
            "must be 1 to {MAX_SERVER_ID_BYTES} bytes of printable ASCII, without spaces around it"
        ));
    }
    Ok(())
}

/// Methods a [`PlainMethod`] cannot declare: the policy answers them itself, or passes them on as they are (the
/// tasks methods rmcp types; `tasks/list` and `tasks/result`, which it does not, reach the gate as custom requests).
const NOT_DECLARABLE: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "logging/setLevel",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "subscriptions/listen",
];

/// The methods MCP defines that a [`PlainMethod`] may declare: a name a letter or two from one of them is taken for
/// a typo of it (a trial's: `resource/read` built as a custom method, and `resources/read` stayed refused).
const DECLARABLE: &[&str] = &[
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/directory/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "skills/list",
    "skills/get",
    "tasks/list",
    "tasks/result",
];

/// The method a declaration serves that `method` looks like a typo of, case aside: itself with another separator
/// (`resources.read`, `resources_read`, `/resources/read`); within two edits of it with no separator
/// (`resourcesread`); or within two edits of it in its namespace or one two edits from it (`resource/read`,
/// `rpompts/get`). A name elsewhere (`pong`, `tools/lint`, `acme/read`) is a method of one's own (a review's: those
/// were refused too; a red team's: the typos above were let through).
fn typo_of(method: &str) -> Option<&'static str> {
    if DECLARABLE.contains(&method) || NOT_DECLARABLE.contains(&method) {
        return None;
    }
    let normal: String = method
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '.' | '_' | ':' => '/',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let namespace = |name: &str| {
        name.split_once('/')
            .map(|(namespace, _)| namespace.to_owned())
    };
    let own = namespace(&normal);
    DECLARABLE
        .iter()
        .filter(|known| match &own {
            Some(own) => namespace(known).is_some_and(|theirs| edit_distance(own, &theirs, 2) <= 2),
            None => true,
        })
        .find(|known| edit_distance(&normal, known, 2) <= 2)
        .copied()
}

/// Levenshtein distance between `a` and `b`, or `limit + 1` once it is over `limit` (names are short).
fn edit_distance(a: &str, b: &str, limit: usize) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > limit || a.len() > 64 {
        return limit + 1;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(x != y))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Builds a [`ToolSet`].
#[must_use]
pub struct ToolSetBuilder<S> {
    state: S,
    tools: Vec<Result<Registered<S>, DefinitionError>>,
    server_id: Cow<'static, str>,
    sinks: Vec<Arc<dyn AuditSink>>,
    timeout: Duration,
    rate: Option<Rate>,
    concurrency: Option<u32>,
    per_caller: Option<u32>,
    guards: Vec<Arc<dyn Guard>>,
    #[cfg(feature = "otel")]
    telemetry: Option<crate::telemetry::Telemetry>,
    /// Sinks that copy the trail elsewhere (OpenTelemetry logs): added after the default, never instead of it.
    mirrors: Vec<Arc<dyn AuditSink>>,
    #[cfg(feature = "redis")]
    rate_store: Option<crate::call::shared_rate::RedisRates>,
    methods: Vec<PlainMethod>,
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// Starts a tool set whose handlers share `state` (use `()` for none).
    pub fn builder(state: S) -> ToolSetBuilder<S> {
        ToolSetBuilder {
            state,
            tools: Vec::new(),
            server_id: Cow::Borrowed("secure-tools"),
            sinks: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            rate: None,
            concurrency: Some(DEFAULT_MAX_CONCURRENT_CALLS),
            per_caller: None,
            guards: Vec::new(),
            #[cfg(feature = "otel")]
            telemetry: None,
            mirrors: Vec::new(),
            #[cfg(feature = "redis")]
            rate_store: None,
            methods: Vec::new(),
        }
    }
}

impl<S: Send + Sync + 'static> ToolSetBuilder<S> {
    /// Adds the tool made by `#[secure_tool]` on the function `T`, with the settings its attribute declares.
    pub fn tool<T: SecureTool<S>>(self) -> Self {
        self.tool_with::<T>(|options| options)
    }

    /// Adds the tool made by `#[secure_tool]` on the function `T`, with settings of its own: a guard, a timeout, a
    /// rate, a concurrency limit.
    ///
    /// ```
    /// # use secure_tools::{secure_tool, Rate, ToolError, ToolSet};
    /// # /// Deletes everything.
    /// # #[secure_tool(scope = "admin.purge", destructive)]
    /// # async fn purge() -> Result<String, ToolError> { Ok("done".into()) }
    /// let tools = ToolSet::builder(())
    ///     .tool_with::<purge>(|tool| tool.rate_limit(Rate::per_minute(1).unwrap()).max_concurrent_calls(1))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn tool_with<T: SecureTool<S>>(
        mut self,
        configure: impl FnOnce(ToolOptions) -> ToolOptions,
    ) -> Self {
        let meta = T::META;
        let options = configure(ToolOptions {
            timeout: meta.timeout,
            rate: meta.rate,
            concurrency: meta.concurrency,
            guards: Vec::new(),
        });
        let registered = ToolDefinition::of::<S, T>().and_then(|definition| {
            let concurrency = options
                .concurrency
                .map(|max| concurrency_limit(definition.name(), max))
                .transpose()?;
            let rate = options
                .rate
                .map(|rate| rate_limiter(definition.name(), rate))
                .transpose()?;
            let timeout = options
                .timeout
                .map(|timeout| checked_timeout(definition.name(), timeout))
                .transpose()?;
            Ok(Registered {
                entry: ToolEntry {
                    allowed: allowed_arguments(definition.input_schema()),
                    plain_arguments: std::sync::OnceLock::new(),
                    plain_output_schema: std::sync::OnceLock::new(),
                    name: Arc::from(definition.name()),
                    scopes: definition.scopes().into(),
                    records_start: definition.annotations().read_only_hint != Some(true),
                    timeout,
                    rate,
                    concurrency,
                    guards: options.guards,
                    definition,
                    plain: false,
                },
                run: run_stages::<S, T>,
            })
        });
        self.tools.push(registered);
        self
    }

    /// Puts a plain rmcp tool of your server (a `#[tool]` of your own `#[tool_router]`, merged with secure tools)
    /// under the policy: a server run by this crate's runners calls it through the pipeline, with its scopes, the
    /// limits and guards, and its audit records, like a secure tool. Its server still lists it and decodes its
    /// arguments. A tool of your server that is neither a secure tool nor declared here is refused
    /// (`undeclared_tool`) and hidden from `tools/list`: no tool escapes the policy (and no other method of
    /// your server is served unless declared: [`Self::plain_method`]).
    ///
    /// ```
    /// # use secure_tools::{PlainTool, ToolSet};
    /// let tools = ToolSet::builder(())
    ///     .plain_tool(PlainTool::new("search_tickets").scope("tickets.read").read_only())
    ///     .plain_tool(PlainTool::new("ping").unscoped())
    ///     .build()
    ///     .unwrap();
    /// assert!(tools.plain_tool("ping").is_some());
    /// ```
    pub fn plain_tool(mut self, tool: PlainTool) -> Self {
        let registered = ToolDefinition::plain(
            &tool.name,
            &tool.scopes,
            tool.unscoped,
            &tool.audit_redact,
            tool.read_only,
        )
        .and_then(|definition| {
            let options = tool.options;
            let concurrency = options
                .concurrency
                .map(|max| concurrency_limit(definition.name(), max))
                .transpose()?;
            let rate = options
                .rate
                .map(|rate| rate_limiter(definition.name(), rate))
                .transpose()?;
            let timeout = options
                .timeout
                .map(|timeout| checked_timeout(definition.name(), timeout))
                .transpose()?;
            Ok(Registered {
                entry: ToolEntry {
                    allowed: None,
                    plain_arguments: std::sync::OnceLock::new(),
                    plain_output_schema: std::sync::OnceLock::new(),
                    name: Arc::from(definition.name()),
                    scopes: definition.scopes().into(),
                    records_start: !tool.read_only,
                    timeout,
                    rate,
                    concurrency,
                    guards: options.guards,
                    definition,
                    plain: true,
                },
                run: run_plain::<S>,
            })
        });
        self.tools.push(registered);
        self
    }

    /// Declares a request method of your own server other than a tool's (see [`PlainMethod`]): a server serving your
    /// handler under the policy serves it only to callers holding its scopes, and refuses every method of your
    /// handler not declared so (`method_not_declared`), each refusal audited `message_rejected`.
    ///
    /// ```
    /// # use secure_tools::{PlainMethod, ToolSet};
    /// let tools = ToolSet::builder(())
    ///     .plain_method(PlainMethod::new("resources/read").scope("docs.read"))
    ///     .plain_method(PlainMethod::new("resources/list").unscoped())
    ///     .build()
    ///     .unwrap();
    /// assert!(tools.method_scopes("resources/read").is_some());
    /// assert!(tools.method_scopes("prompts/get").is_none());
    /// ```
    pub fn plain_method(mut self, method: PlainMethod) -> Self {
        self.methods.push(method);
        self
    }

    /// The id stamped on every audit record (default `secure-tools`): 1 to [`MAX_SERVER_ID_BYTES`] bytes of
    /// printable ASCII without spaces around it, or the set does not build.
    pub fn server_id(mut self, id: impl Into<Cow<'static, str>>) -> Self {
        self.server_id = id.into();
        self
    }

    /// How long a handler may run before it is stopped, unless its tool says otherwise (default
    /// [`DEFAULT_TIMEOUT`], 60 s). The call's outcome and code are then `timeout`. At least 1 ms: a shorter one is
    /// refused when the set is built.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often each caller may call each tool (`rate_limited` past it, saying when to retry). Off by default: a
    /// library cannot guess a sensible rate for your tools; the runners read it from `MCP_RATE_LIMIT`.
    ///
    /// ```
    /// use secure_tools::{Rate, ToolSet};
    ///
    /// // `10/min`, `5/s`, `100/hour`, `30/5min`: the attribute's `rate = "..."` reads the same, at compile time.
    /// let rate: Rate = "60/min".parse()?;
    /// assert_eq!(Some(rate), Rate::per_minute(60));
    /// let tools = ToolSet::builder(()).rate_limit(rate).build()?;
    /// # let _ = tools;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rate_limit(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// How many calls the whole set runs at once (default [`DEFAULT_MAX_CONCURRENT_CALLS`], 64); one more is
    /// refused `overloaded` at once rather than queued. `None` removes the limit.
    pub fn max_concurrent_calls(mut self, max: Option<u32>) -> Self {
        self.concurrency = max;
        self
    }

    /// How many calls one caller (told apart by [`Caller::id`](crate::Caller::id)) may have running at once, over
    /// all the set's tools (default: no limit of its own, only the set's); one more is refused `overloaded` at once.
    /// Below [`max_concurrent_calls`](Self::max_concurrent_calls), it keeps one caller from taking every place and
    /// the other callers out.
    pub fn max_concurrent_calls_per_caller(mut self, max: Option<u32>) -> Self {
        self.per_caller = max;
        self
    }

    /// Adds a guard for every tool of the set; set guards run in the order added, before the tools' own.
    pub fn guard(mut self, guard: impl Guard) -> Self {
        self.guards.push(Arc::new(guard));
        self
    }

    /// What the runners' settings ask of every tool set: the server id, if given, the call limits, and JSON lines
    /// appended to the audit log, if given, chained as the settings say (each line also handed to `mirror`).
    pub(crate) fn runner_settings(
        mut self,
        settings: &crate::serve::Settings,
        mirror: Option<Arc<dyn audit::chain::LineMirror>>,
    ) -> std::io::Result<Self> {
        self = settings.limits.apply(self);
        let server_id = settings.server_id.as_deref();
        if let Some(id) = server_id {
            // Refused before the audit file is opened (a second round's refused start left an empty one behind).
            if let Err(message) = check_server_id(id) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("the server id (--server-id / MCP_SERVER_ID) {message}"),
                ));
            }
            self = self.server_id(id.to_owned());
        }
        // An audit file is always chained (see `audit::chain`).
        if let Some(path) = &settings.audit_log {
            let mut sink =
                audit::ChainedFileSink::append_to(path, settings.audit_chain_key.clone())?
                    .server_id(server_id.unwrap_or(&self.server_id))
                    .with_durability(settings.audit_durability);
            if let Some(checkpoints) = &settings.audit_checkpoints {
                sink = sink
                    .with_checkpoints(checkpoints.clone(), server_id.unwrap_or(&self.server_id));
            }
            if let Some(mirror) = mirror {
                sink = sink.with_mirror(mirror);
            }
            self = self.audit_sink(sink);
        }
        Ok(self)
    }

    /// Reports every call to OpenTelemetry (feature `otel`): a span per call and the call metrics (see
    /// [`telemetry`](crate::telemetry)). Without it, the runners set the SDK up from the `OTEL_*` variables
    /// themselves; with it, the SDK is yours: a runner then reads none of those variables, sets up no provider and
    /// leaves the global ones as you set them (and refuses `--http-metrics`, which serves its own provider's
    /// metrics: add a Prometheus reader to yours instead).
    #[cfg(feature = "otel")]
    pub fn telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Whether [`telemetry`](Self::telemetry) was given.
    #[cfg(feature = "otel")]
    pub(crate) fn has_telemetry(&self) -> bool {
        self.telemetry.is_some()
    }

    /// Keeps the state of every rate limit of the set (the set's and the tools' own) in Redis (feature `redis`),
    /// so that replicas sharing the store share the limits: a caller allowed ten calls a minute gets ten in all.
    /// See [`shared_rate`](crate::call::shared_rate) for the algorithm and what happens when Redis is down.
    #[cfg(feature = "redis")]
    pub fn rate_limit_store(mut self, store: crate::call::shared_rate::RedisRates) -> Self {
        self.rate_store = Some(store);
        self
    }

    /// Adds a sink that copies the trail elsewhere: unlike [`audit_sink`](Self::audit_sink), it does not replace
    /// the default destination (standard error).
    #[cfg(feature = "otel")]
    pub(crate) fn audit_mirror(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.mirrors.push(sink);
        self
    }

    /// Adds an audit destination. Without any, records go to standard error as JSON lines.
    pub fn audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Checks every tool and builds the set.
    pub fn build(self) -> Result<ToolSet<S>, DefinitionError> {
        // On every record: bounded, so that a record stays within a line's bound (a chain round's 1.1 MB id made
        // records the verifier refused), and printable.
        if let Err(message) = check_server_id(&self.server_id) {
            return Err(DefinitionError::InvalidSetting {
                what: "the server id".into(),
                message,
            });
        }
        // Every rate limit keeps its state where the set says: in this process, or in the shared store.
        #[cfg(feature = "redis")]
        let store = self.rate_store;
        #[cfg(feature = "redis")]
        let shared = |limiter: RateLimiter, scope| limiter.shared(store.clone(), scope);
        #[cfg(not(feature = "redis"))]
        let shared = |limiter: RateLimiter, _scope: &'static str| limiter;
        let mut tools = BTreeMap::new();
        for registered in self.tools {
            let mut registered = registered?;
            registered.entry.rate = registered
                .entry
                .rate
                .take()
                .map(|limiter| shared(limiter, "tool"));
            let name = registered.entry.definition.name();
            if tools.insert(name, registered).is_some() {
                return Err(DefinitionError::DuplicateName(name.to_owned()));
            }
        }
        let mut sinks = self.sinks;
        if sinks.is_empty() {
            sinks.push(Arc::new(audit::JsonLinesSink::stderr()));
        }
        sinks.extend(self.mirrors);
        let concurrency = self
            .concurrency
            .map(|max| concurrency_limit("the tool set", max))
            .transpose()?;
        let per_caller = self
            .per_caller
            .map(|max| concurrency_limit("each caller", max).map(|_| PerCallerLimit::new(max)))
            .transpose()?;
        let rate = self
            .rate
            .map(|rate| rate_limiter("the tool set", rate))
            .transpose()?;
        let timeout = checked_timeout("the tool set", self.timeout)?;
        let mut methods = BTreeMap::new();
        for declared in self.methods {
            let invalid = |message: String| DefinitionError::InvalidSetting {
                what: format!("the method `{}`", declared.method.escape_debug()),
                message,
            };
            let scopes = declared
                .scopes
                .iter()
                .map(|scope| Scope::new(scope))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| invalid(error.to_string()))?;
            // One the gate never consults would read as served under its scopes (a review's finding): the methods
            // the policy answers itself or leaves to the handler, and notifications, cannot be declared.
            if NOT_DECLARABLE.contains(&declared.method.as_str())
                || declared.method.starts_with("notifications/")
            {
                return Err(invalid(
                    "is not one a declaration serves: the policy answers it itself (tools, the lifecycle) or leaves \
                     it to the handler as it is (logging/setLevel, tasks, subscriptions/listen, notifications)"
                        .into(),
                ));
            }
            if !declared.custom
                && let Some(known) = typo_of(&declared.method)
            {
                return Err(invalid(format!(
                    "is not a method MCP defines; did you mean `{known}`? (a custom method of this name would be \
                     served, and `{known}` refused; declare one on purpose with `PlainMethod::custom`)"
                )));
            }
            if scopes.is_empty() && !declared.unscoped {
                return Err(invalid(
                    "declares no scope; require one, or opt out explicitly with `unscoped`".into(),
                ));
            }
            if methods
                .insert(declared.method.clone(), Arc::<[Scope]>::from(scopes))
                .is_some()
            {
                return Err(invalid("is declared twice".into()));
            }
        }
        panic::install();
        Ok(ToolSet {
            inner: Arc::new(Inner {
                tools,
                state: self.state,
                audit: Audit::new(self.server_id.into_owned(), sinks),
                timeout,
                rate: rate.map(|limiter| shared(limiter, "set")),
                concurrency,
                per_caller,
                guards: self.guards,
                lifecycle: Lifecycle::default(),
                #[cfg(feature = "otel")]
                telemetry: self.telemetry,
                methods,
            }),
        })
    }
}

/// A rate limiter for `rate`, refused when the rate is out of bounds: `Rate`'s fields are public, so a rate can be
/// written without [`Rate::new`]'s checks (a zero count would allow one call, a period of centuries would panic in
/// the limiter).
fn rate_limiter(of: &str, rate: Rate) -> Result<RateLimiter, DefinitionError> {
    match Rate::new(rate.count, rate.period) {
        Some(rate) => Ok(RateLimiter::new(rate)),
        None => Err(DefinitionError::InvalidSetting {
            what: format!("the rate limit of {of}"),
            message: format!(
                "must allow 1 to {} calls per period, of whole seconds from 1 s to a day",
                crate::grammar::MAX_RATE_COUNT
            ),
        }),
    }
}

/// A timeout of at least a millisecond, as the grammar reads one (`0s` is refused there): a zero timeout would stop
/// every call that waits at all. Above, it is the caller's choice (`Duration::MAX` for none to speak of).
fn checked_timeout(of: &str, timeout: Duration) -> Result<Duration, DefinitionError> {
    if timeout < Duration::from_millis(1) {
        return Err(DefinitionError::InvalidSetting {
            what: format!("the timeout of {of}"),
            message: "must be at least 1 ms".into(),
        });
    }
    Ok(timeout)
}

fn concurrency_limit(of: &str, max: u32) -> Result<ConcurrencyLimit, DefinitionError> {
    if max == 0 {
        return Err(DefinitionError::InvalidSetting {
            what: format!("the concurrency limit of {of}"),
            message: "must be at least 1".into(),
        });
    }
    Ok(ConcurrencyLimit::new(max))
}

fn allowed_arguments(schema: &JsonObject) -> Option<BTreeSet<String>> {
    if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
        return None;
    }
    schema.get("properties")?.as_object()?;
    Some(argument_names(schema))
}

/// The argument names an input schema declares (its `properties`).
pub(crate) fn argument_names(schema: &JsonObject) -> BTreeSet<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// The definitions of the secure tools, sorted by name (plain tools put under the policy are their server's
    /// to list; see [`plain_tool`](Self::plain_tool)).
    pub fn definitions(&self) -> impl Iterator<Item = &ToolDefinition> {
        self.inner
            .tools
            .values()
            .filter(|t| !t.entry.plain)
            .map(|t| &t.entry.definition)
    }

    /// The secure tools as `tools/list` shows them to a caller who may call them all (without the digests,
    /// which [`integrity::publish`](crate::integrity::publish) adds): what a lockfile of the set holds.
    pub fn listed_tools(&self) -> Vec<rmcp::model::Tool> {
        self.definitions()
            .map(ToolDefinition::to_rmcp_tool)
            .collect()
    }

    /// The definition of one secure tool.
    pub fn definition(&self, name: &str) -> Option<&ToolDefinition> {
        self.inner
            .tools
            .get(name)
            .filter(|t| !t.entry.plain)
            .map(|t| &t.entry.definition)
    }

    /// What the policy knows of a plain rmcp tool declared with
    /// [`ToolSetBuilder::plain_tool`]: its name, scopes and redactions.
    pub fn plain_tool(&self, name: &str) -> Option<&ToolDefinition> {
        self.inner
            .tools
            .get(name)
            .filter(|t| t.entry.plain)
            .map(|t| &t.entry.definition)
    }

    /// Learns a declared plain tool's argument names, once, from the input schema `describe` gives (its server's
    /// description of the tool); `describe` is not called once they are known.
    pub(crate) fn learn_plain_arguments(
        &self,
        name: &str,
        describe: impl FnOnce() -> Option<rmcp::model::Tool>,
    ) {
        if let Some(registered) = self.inner.tools.get(name).filter(|t| t.entry.plain)
            && registered.entry.plain_arguments.get().is_none()
            && let Some(tool) = describe()
        {
            let _ = registered
                .entry
                .plain_output_schema
                .set(tool.output_schema.is_some());
            let _ = registered
                .entry
                .plain_arguments
                .set(argument_names(&tool.input_schema));
        }
    }

    /// The names of the plain tools declared, sorted.
    pub fn plain_tool_names(&self) -> impl Iterator<Item = &'static str> {
        self.inner
            .tools
            .values()
            .filter(|t| t.entry.plain)
            .map(|t| t.entry.definition.name())
    }

    /// Every scope a tool of the set requires, secure or plain.
    pub(crate) fn all_scopes(&self) -> impl Iterator<Item = &crate::scope::Scope> {
        self.inner
            .tools
            .values()
            .flat_map(|t| t.entry.definition.scopes().iter())
    }

    /// The shared state.
    pub fn state(&self) -> &S {
        &self.inner.state
    }

    /// The audit trail, for events beyond tool calls.
    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    /// What the set reports to OpenTelemetry, if anything.
    #[cfg(all(feature = "otel", feature = "http"))]
    pub(crate) fn telemetry(&self) -> Option<&crate::telemetry::Telemetry> {
        self.inner.telemetry.as_ref()
    }

    /// The number of calls running now.
    pub fn calls_in_flight(&self) -> usize {
        self.inner.lifecycle.in_flight()
    }

    /// Whether [`Self::shutdown`] has begun: new calls are refused (`shutting_down`) from then on. The HTTP runner
    /// answers its health check `503` then, so that a load balancer takes the server out while its calls finish.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.lifecycle.is_closing()
    }

    /// A stop has been asked for and is delayed ([`crate::serve::http::HttpSettings::shutdown_delay`]): calls are
    /// still taken, and the HTTP runner's health check answers `503`.
    #[cfg(feature = "http")]
    pub(crate) fn is_stop_announced(&self) -> bool {
        self.inner.lifecycle.is_stop_announced()
    }

    /// Why the set cannot take calls now, as the HTTP runner's health check says it (`None`: it can): a stop asked
    /// for or under way, or (feature `redis`) the set's rate kept in a Redis that does not answer while calls are
    /// refused without it, when every call would be refused `rate_limit_unavailable`. A tool's own rate kept there
    /// does not count (the set's other tools still serve), nor a store configured to let calls through.
    #[cfg(feature = "http")]
    pub(crate) async fn unready(&self) -> Option<&'static str> {
        if self.is_stop_announced() || self.is_shutting_down() {
            return Some("shutting down");
        }
        #[cfg(feature = "redis")]
        if let Some(store) = self.inner.rate.as_ref().and_then(RateLimiter::store)
            && store.refuses_when_unavailable()
            && !store.answers().await
        {
            return Some("unavailable");
        }
        None
    }

    /// At the start: whether the Redis the rate limits are kept in answers, an outage logged as a check's would be,
    /// so that the log says so before any call (spawned: the start does not wait for it).
    #[cfg(feature = "redis")]
    pub(crate) fn probe_rate_store(&self) {
        let store = self
            .inner
            .rate
            .iter()
            .chain(
                self.inner
                    .tools
                    .values()
                    .filter_map(|tool| tool.entry.rate.as_ref()),
            )
            .find_map(RateLimiter::store)
            .cloned();
        if let Some(store) = store {
            tokio::spawn(async move { store.answers().await });
        }
    }

    /// The scopes a declared method of a merged handler requires ([`ToolSetBuilder::plain_method`]), or `None` for a
    /// method not declared.
    pub fn method_scopes(&self, method: &str) -> Option<&[Scope]> {
        self.inner.methods.get(method).map(|scopes| &**scopes)
    }

    /// Marks the stop as asked for, before [`Self::shutdown`] begins it.
    pub(crate) fn announce_stop(&self) {
        self.inner.lifecycle.announce_stop();
    }

    /// Stops taking calls and lets the running ones finish: new calls are refused (`shutting_down`); calls still
    /// running after `grace` are stopped (outcome `cancelled`, code `shutting_down`). A handler past its point of
    /// no return (`CallContext::commit`) is not stopped: it is waited for a second more, then given up (its future
    /// dropped, as the process's end would drop it; the call answered and recorded `cancelled_after_commit`, its
    /// effect unknown). Returns once every call has its audit record, or at most two seconds after `grace` (a
    /// handler stuck in blocking code cannot be stopped: its record is written when it returns). Runners call this
    /// before their `server_stop` record.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_calls(grace, true).await;
    }

    /// The stop at once (an operator's second signal): calls still running are stopped, and those past their
    /// point of no return given up, without the second [`Self::shutdown`] waits for them.
    pub(crate) async fn stop_now(&self) {
        let lifecycle = &self.inner.lifecycle;
        lifecycle.close();
        lifecycle.stop_running();
        lifecycle.give_up();
        let _ = tokio::time::timeout(Duration::from_secs(1), lifecycle.idle()).await;
    }

    /// [`Self::shutdown`], giving up on calls past their point of no return only if `give_up` (the stdio runner
    /// at the end of its input lets rmcp answer them while its own wait lasts: a client piping its requests in
    /// reads on).
    pub(crate) async fn stop_calls(&self, grace: Duration, give_up: bool) {
        let lifecycle = &self.inner.lifecycle;
        lifecycle.close();
        // Given up already (a stop before this one): what still runs is stuck in blocking code, and waiting again
        // would only lengthen the stop.
        if lifecycle.has_given_up() {
            return;
        }
        if tokio::time::timeout(grace, lifecycle.idle()).await.is_err() {
            lifecycle.stop_running();
            if tokio::time::timeout(Duration::from_secs(1), lifecycle.idle())
                .await
                .is_err()
                && give_up
            {
                lifecycle.give_up();
                let _ = tokio::time::timeout(Duration::from_secs(1), lifecycle.idle()).await;
            }
        }
    }
}
