//! A user's own rmcp server, built with rmcp's `#[tool_router]`, keeps its handler and its plain tool and gains two
//! secure tools by router merge; a real rmcp client calls all three.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use secure_tools::{Caller, Grant, MemorySink, SCOPES_META_KEY, ToolError, ToolSet, secure_tool};
use serde_json::{Value, json};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

/// The user's server, as rmcp's documentation writes one.
#[derive(Clone)]
struct Calculator {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Calculator {
    fn new(secure: &ToolSet) -> Self {
        let stdio_user = Caller::new("local-user", Grant::parse("notes.read").unwrap());
        Calculator {
            tool_router: Self::tool_router() + secure.tool_router(stdio_user),
        }
    }

    /// A plain rmcp tool: no scope, no audit.
    #[tool(description = "Add two numbers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Calculator {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Read a note.
#[secure_tool(scope = "notes.read", read_only)]
async fn read_note(
    #[validate(length(min = 1, max = 20))] name: String,
) -> Result<String, ToolError> {
    Ok(format!("the note `{name}`"))
}

/// Write a note.
#[secure_tool(scope = "notes.write", audit_redact = ["text"])]
async fn write_note(name: String, text: String) -> Result<String, ToolError> {
    Ok(format!("wrote {} bytes to `{name}`", text.len()))
}

fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Serves `handler` over an in-memory pipe: the rmcp client at its other end.
async fn client_of<H: ServerHandler>(
    handler: H,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = handler.serve(server_io).await.expect("server starts");
        running.waiting().await.ok();
    });
    ().serve(client_io).await.expect("client connects")
}

#[tokio::test]
async fn plain_and_secure_tools_share_one_rmcp_server() {
    let audit = MemorySink::new();
    let secure = ToolSet::builder(())
        .tool::<read_note>()
        .tool::<write_note>()
        .audit_sink(audit.clone())
        .build()
        .unwrap();
    let client = client_of(Calculator::new(&secure)).await;

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "read_note", "write_note"]);
    let write = tools.iter().find(|t| t.name == "write_note").unwrap();
    let meta = serde_json::to_value(write.meta.as_ref().unwrap()).unwrap();
    assert_eq!(meta[SCOPES_META_KEY], json!(["notes.write"]));

    let added = client
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 2, "b": 3}))))
        .await
        .unwrap();
    assert_eq!(text_of(&added), "5");

    let read = client
        .call_tool(
            CallToolRequestParams::new("read_note").with_arguments(args(json!({"name": "todo"}))),
        )
        .await
        .unwrap();
    assert_eq!(read.is_error, Some(false));
    assert_eq!(text_of(&read), "the note `todo`");

    let write = client
        .call_tool(
            CallToolRequestParams::new("write_note")
                .with_arguments(args(json!({"name": "todo", "text": "secret"}))),
        )
        .await
        .unwrap();
    assert_eq!(write.is_error, Some(true));
    assert!(text_of(&write).starts_with("missing_scope:notes.write"));

    let invalid = client
        .call_tool(
            CallToolRequestParams::new("read_note").with_arguments(args(json!({"name": ""}))),
        )
        .await
        .unwrap();
    assert_eq!(invalid.is_error, Some(true));
    assert!(text_of(&invalid).starts_with("invalid_input"));

    // The secure tools were audited, once per call; the plain tool is the user's business.
    let records = audit.records();
    let calls: Vec<_> = records
        .iter()
        .map(|r| (r["tool"].clone(), r["outcome"].clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (json!("read_note"), json!("ok")),
            (json!("write_note"), json!("denied")),
            (json!("read_note"), json!("invalid")),
        ]
    );
    assert!(records.iter().all(|r| r["caller"] == "local-user"));
    assert!(!serde_json::to_string(&records).unwrap().contains("secret"));
    client.cancel().await.unwrap();
}

/// A server whose router has a plain `#[tool]` named like a secure tool, merged after the secure routes, so that
/// rmcp's router sends the name to the plain one.
#[derive(Clone)]
struct Shadowing {
    tool_router: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoteArgs {
    name: String,
    text: String,
}

#[tool_router]
impl Shadowing {
    fn new(secure: &secure_tools::SecureServer<()>) -> Self {
        Shadowing {
            tool_router: secure.tool_router() + Self::tool_router(),
        }
    }

    /// Writes a note with no scope and no record.
    #[tool(name = "write_note", description = "Write a note")]
    fn unscoped_write(&self, Parameters(NoteArgs { name, text }): Parameters<NoteArgs>) -> String {
        format!("UNSCOPED wrote {} bytes to `{name}`", text.len())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Shadowing {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Review finding: `Secured` sent a secure tool's call to the inner handler's router, so a plain route of the
/// same name that won the merge ran in its place, without its scope and without a record. The secure tool's name
/// now goes to the pipeline whatever the inner router holds.
#[tokio::test]
async fn a_plain_route_named_like_a_secure_tool_never_runs_in_its_place() {
    let audit = MemorySink::new();
    let tools = ToolSet::builder(())
        .tool::<write_note>()
        .audit_sink(audit.clone())
        .build()
        .unwrap();
    let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
        "local-user",
        Grant::parse("notes.read").unwrap(),
    ));
    let inner = Shadowing::new(&secure);
    let client = client_of(secure_tools::serve::Secured::new(inner, secure)).await;
    let write = client
        .call_tool(
            CallToolRequestParams::new("write_note")
                .with_arguments(args(json!({"name": "todo", "text": "secret"}))),
        )
        .await
        .unwrap();
    assert_eq!(write.is_error, Some(true), "{write:?}");
    assert!(
        text_of(&write).starts_with("missing_scope:notes.write"),
        "{}",
        text_of(&write)
    );
    let records = audit.records();
    let calls: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .map(|r| (r["tool"].clone(), r["outcome"].clone()))
        .collect();
    assert_eq!(calls, [(json!("write_note"), json!("denied"))]);
}

/// Review finding: the listing showed a secure tool as the inner handler described it when a plain route of the
/// same name won the merge (its description, its schema without `additionalProperties: false`, no scopes, a digest
/// over that), while calls went to the pipeline and the lockfile checked the secure definition: the model read a
/// definition nobody reviewed. The secure definition is listed (and given by `get_tool`), whatever the inner
/// handler says.
#[tokio::test]
async fn a_secure_tool_is_listed_as_its_own_definition_whatever_the_inner_handler_lists() {
    let tools = ToolSet::builder(()).tool::<write_note>().build().unwrap();
    let expected = tools.listed_tools();
    let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
        "local-user",
        Grant::parse("notes.write").unwrap(),
    ));
    let inner = Shadowing::new(&secure);
    let secured = secure_tools::serve::Secured::new(inner, secure);
    let from_get = rmcp::ServerHandler::get_tool(&secured, "write_note").expect("listed");
    let client = client_of(secured).await;
    let listed = client.list_all_tools().await.unwrap();
    let note = listed
        .iter()
        .find(|t| t.name == "write_note")
        .expect("listed");
    let mut note = note.clone();
    // The digest is published on the listing; the definition is the secure one otherwise.
    if let Some(meta) = note.meta.as_mut() {
        meta.0.remove("io.modelcontextprotocol/toolDigest");
        meta.0.retain(|key, _| !key.contains("digest"));
    }
    assert_eq!(note.description, expected[0].description, "{note:?}");
    assert_eq!(note.input_schema, expected[0].input_schema, "{note:?}");
    assert_eq!(
        note.meta
            .as_ref()
            .and_then(|m| m.0.get("secure-tools/scopes")),
        Some(&json!(["notes.write"])),
        "{note:?}"
    );
    assert_eq!(from_get.description, expected[0].description);
}

/// Lists names.
#[secure_tool(scope = "notes.read", read_only)]
async fn list_names() -> Result<Vec<String>, ToolError> {
    Ok(vec!["a".into()])
}

/// Review finding: rmcp drops an output schema whose root is not an object for a client before 2026-07-28 (a
/// `Vec` output's, say) after the handler has returned the listing, so the digest published with it covered a
/// schema the client never received: every check reported a digest mismatch, and a lockfile pinned by such a client
/// made the server refuse to start. The digest covers what the client receives, and a lock compares equal across
/// the two forms.
#[tokio::test]
async fn a_digest_covers_the_definition_a_client_before_2026_07_28_receives() {
    let tools = ToolSet::builder(()).tool::<list_names>().build().unwrap();
    let full = tools.listed_tools();
    assert!(
        full[0].output_schema.is_some(),
        "the server's own form has it"
    );
    let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
        "local-user",
        Grant::parse("notes.read").unwrap(),
    ));
    let client = client_of(secure).await;
    assert!(
        client.peer_info().unwrap().protocol_version < rmcp::model::ProtocolVersion::V_2026_07_28
    );
    let listed = client.list_all_tools().await.unwrap();
    assert!(listed[0].output_schema.is_none(), "rmcp dropped it");
    let received: Vec<Value> = listed
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    let from_server = secure_tools::integrity::ToolsLock::from_tools(&full);
    let changes = from_server.compare_listed(&received);
    assert!(changes.is_empty(), "{changes:?}");
    // And a lock pinned from what the client received holds for the server's own form.
    let pinned = secure_tools::integrity::ToolsLock::from_listed(received);
    assert!(pinned.compare_tools(&full).is_empty());
    // But two different such schemas are a change: the newer clients receive them.
    let mut other = serde_json::to_value(&full[0]).unwrap();
    other["outputSchema"] = json!({"type": "array", "items": {"type": "integer"}});
    let changes = from_server.compare_listed(&[other]);
    assert_eq!(changes.changed.len(), 1, "{changes:?}");
}

/// A hand-written rmcp handler: it lists and serves `search`, but does not describe it through `get_tool` (rmcp's
/// default answers `None`).
#[derive(Clone)]
struct Undescribed;

impl ServerHandler for Undescribed {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
        let schema = json!({"type": "object", "properties": {"q": {"type": "string"}}});
        let tool = rmcp::model::Tool::new(
            "search",
            "Search",
            std::sync::Arc::new(schema.as_object().unwrap().clone()),
        );
        Ok(rmcp::model::ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        Ok(rmcp::model::CallToolResponse::Complete(
            rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text("found")]),
        ))
    }
}

/// Review finding: a declared plain tool whose handler does not describe it (no `get_tool`) was served outside
/// the tools lock, with its redactions unchecked, and every argument not redacted was recorded in clear, with only
/// a `tracing` warning. The runner refuses to start with it; served directly, its arguments are recorded as
/// secrets, as for a tool whose schema is unknown.
#[tokio::test]
async fn a_plain_tool_its_handler_does_not_describe_is_refused_at_start_and_kept_secret() {
    let builder = || {
        ToolSet::builder(()).plain_tool(secure_tools::PlainTool::new("search").scope("notes.read"))
    };
    let settings = secure_tools::serve::Settings::stdio(Grant::parse("notes.read").unwrap());
    let error = settings
        .serve_with(builder(), |_secure| Undescribed)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("`search`"), "{error}");
    assert!(error.to_string().contains("get_tool"), "{error}");

    let audit = MemorySink::new();
    let tools = builder().audit_sink(audit.clone()).build().unwrap();
    let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
        "local-user",
        Grant::parse("notes.read").unwrap(),
    ));
    let client = client_of(secure_tools::serve::Secured::new(Undescribed, secure)).await;
    let found = client
        .call_tool(
            CallToolRequestParams::new("search").with_arguments(args(json!({"q": "hunter2"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&found), "found");
    let records = audit.records();
    let call = records.iter().find(|r| r["event"] == "tool_call").unwrap();
    assert_eq!(call["inputs"]["q"]["redacted"], true, "{call}");
    assert!(!call.to_string().contains("hunter2"));
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Stats {
    notes: u32,
}

/// A server whose plain tool declares an output schema.
#[derive(Clone)]
struct WithOutput {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl WithOutput {
    fn new() -> Self {
        WithOutput {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Counts the notes")]
    fn stats(&self) -> rmcp::Json<Stats> {
        rmcp::Json(Stats { notes: 3 })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for WithOutput {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Review finding: a refusal of a plain tool whose server lists an output schema carried `structuredContent`
/// `{"error": ...}`, which that schema does not admit, so the TypeScript SDK v1 and the Inspector replaced the
/// refusal with a validation error of their own (the fix for secure tools looked at the tool set's definition,
/// which holds no schema for a plain tool).
#[tokio::test]
async fn a_refused_plain_tool_with_an_output_schema_gets_no_structured_error() {
    let tools = ToolSet::builder(())
        .plain_tool(secure_tools::PlainTool::new("stats").scope("notes.admin"))
        .build()
        .unwrap();
    let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
        "local-user",
        Grant::parse("notes.read").unwrap(),
    ));
    let client = client_of(secure_tools::serve::Secured::new(WithOutput::new(), secure)).await;
    let listed = client.list_all_tools().await.unwrap();
    assert!(listed[0].output_schema.is_some());
    let refused = client
        .call_tool(CallToolRequestParams::new("stats"))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(text_of(&refused).starts_with("missing_scope:notes.admin"));
    assert!(refused.structured_content.is_none(), "{refused:?}");
}

/// A server that lists its tools one per page, its router merged with the tool set's.
#[derive(Clone)]
struct Paged {
    tool_router: ToolRouter<Self>,
}

impl ServerHandler for Paged {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
        let mut all = self.tool_router.list_all();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let page: usize = request
            .and_then(|r| r.cursor)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut result = rmcp::model::ListToolsResult::with_all_items(
            all.get(page).cloned().into_iter().collect(),
        );
        result.next_cursor = (page + 1 < all.len()).then(|| (page + 1).to_string());
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool_router.get(name).cloned()
    }
}

/// Review finding: the secure tools an inner handler did not list were added to its last page, counted on that
/// page only, so a handler that pages listed the secure tools of its earlier pages twice.
#[tokio::test]
async fn a_paging_handler_lists_each_secure_tool_once() {
    let tools = ToolSet::builder(())
        .tool::<read_note>()
        .tool::<write_note>()
        .build()
        .unwrap();
    let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
        "local-user",
        Grant::parse("notes.read notes.write").unwrap(),
    ));
    let inner = Paged {
        tool_router: secure.tool_router(),
    };
    let client = client_of(secure_tools::serve::Secured::new(inner, secure)).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["read_note", "write_note"]);
}

/// A server of prompts only: it enables no tools capability, and rmcp's default `tools/list` answers it with
/// method not found.
#[derive(Clone)]
struct PromptsOnly;

impl ServerHandler for PromptsOnly {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_prompts()
                .enable_prompts_list_changed()
                .build(),
        )
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListPromptsResult::with_all_items(vec![
            rmcp::model::Prompt::new("greet", Some("Greets"), None),
        ]))
    }
}

/// Review finding: merged with a handler that has no tools capability (prompts only), the secure tools were hidden:
/// `initialize` and `server/discover` advertised no tools, and `tools/list` answered the inner handler's method not
/// found. They are advertised and listed; the handler's own capabilities stay as it set them.
#[tokio::test]
async fn a_handler_without_tools_merged_with_secure_tools_advertises_and_lists_them() {
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
    let secured = || {
        // Its own method declared, or it would be refused (deny by default).
        let tools = ToolSet::builder(())
            .tool::<read_note>()
            .tool::<write_note>()
            .plain_method(secure_tools::PlainMethod::new("prompts/list").unscoped())
            .build()
            .unwrap();
        let secure = secure_tools::SecureServer::new(tools).default_caller(Caller::new(
            "local-user",
            Grant::parse("notes.read").unwrap(),
        ));
        secure_tools::serve::Secured::new(PromptsOnly, secure)
    };
    let info = ServerHandler::get_info(&secured());
    assert!(info.capabilities.tools.is_some(), "{info:?}");
    let client = client_of(secured()).await;
    let capabilities = &client.peer_info().unwrap().capabilities;
    assert!(capabilities.tools.is_some(), "{capabilities:?}");
    assert_eq!(
        capabilities.prompts.as_ref().and_then(|p| p.list_changed),
        Some(true),
        "{capabilities:?}"
    );
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["read_note", "write_note"]);
    let read = client
        .call_tool(
            CallToolRequestParams::new("read_note").with_arguments(args(json!({"name": "todo"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&read), "the note `todo`");
    assert_eq!(client.list_all_prompts().await.unwrap().len(), 1);
    client.cancel().await.unwrap();

    // The same for a client of the stateless revision, which learns the capabilities from `server/discover`.
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = secured();
    tokio::spawn(async move {
        let running = server.serve(server_io).await.expect("server starts");
        running.waiting().await.ok();
    });
    let client = ()
        .serve_with_lifecycle(
            client_io,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("client connects");
    let capabilities = &client.peer_info().unwrap().capabilities;
    assert!(capabilities.tools.is_some(), "{capabilities:?}");
    assert_eq!(client.list_all_tools().await.unwrap().len(), 2);
    client.cancel().await.unwrap();
}

/// Trial finding (attack first): rmcp's router answers a plain tool's arguments that do not decode with an
/// `isError` result quoting the value (`invalid type: integer `12345678`, expected ...`), not an error, so the
/// pipeline passed it on: a redacted argument came back in the message, and the call was recorded `error`
/// (`tool_error`) where bad input is `invalid`. It is now refused `invalid_input`, its message withheld when the tool
/// has a redaction.
#[tokio::test]
async fn a_plain_tools_arguments_that_do_not_decode_are_invalid_and_a_secret_is_not_quoted() {
    for (redact, expect_quoted) in [(true, false), (false, true)] {
        let mut plain = secure_tools::PlainTool::new("add").scope("notes.read");
        if redact {
            plain = plain.audit_redact(["b"]);
        }
        let audit = MemorySink::new();
        let secure_set = ToolSet::builder(())
            .tool::<read_note>()
            .plain_tool(plain)
            .audit_sink(audit.clone())
            .build()
            .unwrap();
        let secure = secure_tools::SecureServer::new(secure_set.clone()).default_caller(
            Caller::new("local-user", Grant::parse("notes.read").unwrap()),
        );
        let client = client_of(secure_tools::serve::Secured::new(
            Calculator::new(&secure_set),
            secure,
        ))
        .await;
        let refused = client
            .call_tool(
                CallToolRequestParams::new("add")
                    .with_arguments(args(json!({"a": 1, "b": "84721193"}))),
            )
            .await
            .unwrap();
        assert_eq!(refused.is_error, Some(true));
        let text = text_of(&refused);
        assert!(text.starts_with("invalid_input"), "{text}");
        assert_eq!(text.contains("84721193"), expect_quoted, "{text}");
        let meta = serde_json::to_value(&refused.meta).unwrap();
        assert_eq!(
            meta["secure-tools/refusal"]["code"], "invalid_input",
            "{refused:?}"
        );
        let records = audit.records();
        let call = records.iter().find(|r| r["event"] == "tool_call").unwrap();
        assert_eq!(
            (&call["outcome"], &call["error"]),
            (&json!("invalid"), &json!("invalid_input")),
            "{call}"
        );
        if redact {
            assert!(!records.iter().any(|r| r.to_string().contains("84721193")));
        }
    }
}

/// Trial finding: a merged server could not be held to its lockfile in a test (`ToolSet::listed_tools` lists the
/// secure tools only, so `assert_tools_locked` reported its plain tools removed, or wrote a lock without them).
/// `serve::listed_tools` gives what the server lists: its digest is the one the served `tools/list` publishes.
#[tokio::test]
async fn a_merged_servers_listing_for_its_lockfile_is_what_it_serves() {
    let tools = ToolSet::builder(())
        .tool::<read_note>()
        .plain_tool(secure_tools::PlainTool::new("add").scope("notes.read"))
        .build()
        .unwrap();
    let secure = secure_tools::SecureServer::new(tools.clone());
    let listed = secure_tools::serve::listed_tools(&tools, &Calculator::new(&tools)).unwrap();
    let names: Vec<&str> = listed.iter().map(|tool| &*tool.name).collect();
    assert_eq!(names, ["add", "read_note"]);
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("tools.lock.json");
    let pinned = secure_tools::integrity::ToolsLock::from_tools(&listed);
    pinned.write(&lock).unwrap();
    secure_tools::testing::assert_tools_locked(&listed, &lock);

    let client = client_of(secure_tools::serve::Secured::new(
        Calculator::new(&tools),
        secure.default_caller(Caller::new(
            "local-user",
            Grant::parse("notes.read").unwrap(),
        )),
    ))
    .await;
    let served = client.list_tools(None).await.unwrap();
    let served = serde_json::to_value(&served).unwrap();
    assert_eq!(
        served["_meta"][secure_tools::integrity::TOOLSET_DIGEST_META_KEY],
        json!(pinned.toolset),
        "{served}"
    );
}

/// A server with a resource and a prompt of its own, and a custom method.
#[derive(Clone)]
struct Documents;

impl ServerHandler for Documents {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        Ok(
            rmcp::model::ReadResourceResult::new(vec![rmcp::model::ResourceContents::text(
                "the payroll",
                request.uri,
            )])
            .into(),
        )
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListPromptsResult::with_all_items(vec![
            rmcp::model::Prompt::new("greet", Some("Greets"), None),
        ]))
    }
}

/// A red team's (round 40): the inner handler's methods other than tools (`resources/read`, `prompts/get`,
/// `completion/complete`, custom ones) were answered by it as they were, to any authenticated caller, with no scope
/// check and no record: a token with no scope read a resource. Deny by default, as for tools: a method the tool set
/// does not declare (`ToolSetBuilder::plain_method`) is refused, and one it declares is served only to callers
/// holding its scopes; each refusal is audited `message_rejected`.
#[tokio::test]
async fn a_handlers_own_methods_are_served_only_as_declared_and_scoped() {
    use secure_tools::PlainMethod;
    let served = |declared: Vec<PlainMethod>, grant: &str| {
        let audit = MemorySink::new();
        let mut builder = ToolSet::builder(())
            .tool::<read_note>()
            .audit_sink(audit.clone());
        for method in declared {
            builder = builder.plain_method(method);
        }
        let secure = secure_tools::SecureServer::new(builder.build().unwrap())
            .default_caller(Caller::new("someone", Grant::parse(grant).unwrap()));
        (secure_tools::serve::Secured::new(Documents, secure), audit)
    };
    let read = |client: &rmcp::service::RunningService<rmcp::RoleClient, ()>| {
        let peer = client.peer().clone();
        async move {
            peer.read_resource(rmcp::model::ReadResourceRequestParams::new(
                "docs://payroll",
            ))
            .await
        }
    };
    let rejected = |audit: &MemorySink| -> Vec<Value> {
        audit
            .records()
            .into_iter()
            .filter(|record| record["event"] == "message_rejected")
            .collect()
    };

    // Not declared: refused, whoever asks.
    let (server, audit) = served(vec![], "docs.read notes.read");
    let client = client_of(server).await;
    let error = read(&client)
        .await
        .expect_err("an undeclared method is refused");
    let shown = error.to_string();
    assert!(shown.contains("method_not_declared"), "{shown}");
    assert!(!shown.contains("the payroll"), "{shown}");
    let listed = client.list_all_prompts().await;
    assert!(listed.is_err(), "{listed:?}");
    let records = rejected(&audit);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["reason"], "method_not_declared", "{records:?}");
    // A review's: the record did not say which method was refused.
    assert_eq!(records[0]["method"], "resources/read", "{records:?}");
    // And what it would have read (a red team's round 47: an attempt on a resource left no trace of which).
    assert_eq!(records[0]["target"], "docs://payroll", "{records:?}");
    assert_eq!(records[1]["method"], "prompts/list", "{records:?}");
    assert!(records[1].get("target").is_none(), "{records:?}");
    client.cancel().await.unwrap();

    // Declared with a scope: refused to a caller without it, served to one with it.
    let declared = || {
        vec![
            PlainMethod::new("resources/read").scope("docs.read"),
            PlainMethod::new("prompts/list").unscoped(),
        ]
    };
    let (server, audit) = served(declared(), "notes.read");
    let client = client_of(server).await;
    let error = read(&client).await.expect_err("refused without its scope");
    assert!(
        error.to_string().contains("missing_scope:docs.read"),
        "{error}"
    );
    assert_eq!(client.list_all_prompts().await.unwrap().len(), 1);
    let records = rejected(&audit);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["reason"], "missing_scope", "{records:?}");
    assert_eq!(records[0]["target"], "docs://payroll", "{records:?}");
    client.cancel().await.unwrap();

    let (server, audit) = served(declared(), "docs.read");
    let client = client_of(server).await;
    let contents = read(&client).await.expect("served with its scope");
    assert!(format!("{contents:?}").contains("the payroll"));
    assert!(rejected(&audit).is_empty());
    client.cancel().await.unwrap();

    // A method declared with neither a scope nor `unscoped`, or twice, is refused at build.
    let built = ToolSet::builder(())
        .plain_method(PlainMethod::new("resources/read"))
        .build();
    assert!(built.is_err());
    let built = ToolSet::builder(())
        .plain_method(PlainMethod::new("resources/read").unscoped())
        .plain_method(PlainMethod::new("resources/read").scope("docs.read"))
        .build();
    assert!(built.is_err());
    // A review's: a method the gate never consults could be declared, and read as served under its scopes.
    for ungated in [
        "subscriptions/listen",
        "tasks/get",
        "tools/call",
        "notifications/progress",
    ] {
        let built = ToolSet::builder(())
            .plain_method(PlainMethod::new(ungated).scope("admin"))
            .build();
        assert!(built.is_err(), "{ungated}");
    }
    // A trial's: a typo of a method MCP defines (`resource/read`) built as a custom method of that name, and the
    // real one stayed refused with nothing said. One a letter or two from such a method is refused, naming it.
    // (And, a red team's, round 47: another separator, a leading `/`, none, or two letters swapped in the namespace.)
    for typo in [
        "resource/read",
        "resources/raed",
        "prompt/get",
        "prompts/lists",
        "Resources/Read",
        "resources.read",
        "resources_read",
        "/resources/read",
        "resourcesread",
        "rpompts/get",
        "prmopts/get",
    ] {
        let built = ToolSet::builder(())
            .plain_method(PlainMethod::new(typo).scope("admin"))
            .build();
        let error = built
            .err()
            .unwrap_or_else(|| panic!("{typo} was taken"))
            .to_string();
        assert!(error.contains("did you mean"), "{typo}: {error}");
    }
    assert!(
        ToolSet::builder(())
            .plain_method(PlainMethod::new("acme/resources/read").scope("admin"))
            .plain_method(PlainMethod::new("tickets/get").scope("admin"))
            .build()
            .is_ok()
    );
    // A review's: names of one's own near a method MCP defines were refused too, with no way out (`pong`, near
    // `ping`; `tools/lint`; `server/discovery`), and the message named methods no declaration serves. Only a name
    // in one of the namespaces of the methods a declaration serves is taken for a typo; `PlainMethod::custom`
    // declares one there on purpose.
    for own in ["pong", "pin", "tools/lint", "server/discovery", "in"] {
        let built = ToolSet::builder(())
            .plain_method(PlainMethod::new(own).scope("admin"))
            .build();
        assert!(
            built.is_ok(),
            "{own}: {:?}",
            built.err().map(|e| e.to_string())
        );
    }
    assert!(
        ToolSet::builder(())
            .plain_method(PlainMethod::custom("prompts/set").scope("admin"))
            .build()
            .is_ok()
    );
    // `tasks/list`, which rmcp does not type, reaches the gate as a custom request: it can be declared.
    assert!(
        ToolSet::builder(())
            .plain_method(PlainMethod::new("tasks/list").scope("admin"))
            .build()
            .is_ok()
    );
}

/// A library of documents: a resource, prompts (one missing, one that panics), a custom method.
#[derive(Clone)]
struct Library;

impl ServerHandler for Library {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_prompts()
                .enable_completions()
                .build(),
        )
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        Documents.read_resource(request, context).await
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, rmcp::ErrorData> {
        let secret = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("password"))
            .cloned()
            .unwrap_or_default();
        if request.name == "boom" {
            panic!("the prompt panics quoting {secret}");
        }
        Err(rmcp::ErrorData::invalid_params(
            format!("no prompt `{}`", request.name),
            None,
        ))
    }

    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CustomResult, rmcp::ErrorData> {
        Ok(rmcp::model::CustomResult::new(
            json!({"method": request.method}),
        ))
    }

    // A handler whose `fn` panics before its future exists (rmcp lets it return any future).
    #[allow(unreachable_code)]
    fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> impl std::future::Future<Output = Result<rmcp::model::CompleteResult, rmcp::ErrorData>>
    + rmcp::service::MaybeSendFuture
    + '_ {
        panic!("the completion panics quoting {}", request.argument.value);
        std::future::ready(Ok(rmcp::model::CompleteResult::default()))
    }
}

/// A review's (round 43): a merged handler's own methods, once declared, were served unrecorded: who read which
/// resource left no trace, and a prompt handler's panic left its client waiting for an answer that never came.
/// Each request served through the gate now has one `method_call` record (its method, what it named, its outcome,
/// who asked), a panic is answered `-32603` with its message withheld, and data is not handed out unrecorded.
#[tokio::test]
async fn a_declared_method_served_is_recorded_once_and_a_panic_answered() {
    use secure_tools::PlainMethod;
    let audit = MemorySink::new();
    let set = ToolSet::builder(())
        .tool::<read_note>()
        .plain_method(PlainMethod::new("resources/read").scope("docs.read"))
        .plain_method(PlainMethod::new("prompts/get").unscoped())
        .plain_method(PlainMethod::new("acme/status").unscoped())
        .plain_method(PlainMethod::new("completion/complete").unscoped())
        .audit_sink(audit.clone())
        .build()
        .unwrap();
    let secure = secure_tools::SecureServer::new(set)
        .default_caller(Caller::new("someone", Grant::parse("docs.read").unwrap()));
    let client = client_of(secure_tools::serve::Secured::new(Library, secure)).await;
    let peer = client.peer().clone();
    let served = |audit: &MemorySink| -> Vec<Value> {
        audit
            .records()
            .into_iter()
            .filter(|record| record["event"] == "method_call")
            .collect()
    };

    let contents = peer
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "docs://payroll",
        ))
        .await
        .expect("served with its scope");
    assert!(format!("{contents:?}").contains("the payroll"));
    let records = served(&audit);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["method"], "resources/read", "{record}");
    assert_eq!(record["target"], "docs://payroll", "{record}");
    assert_eq!(record["outcome"], "ok", "{record}");
    assert_eq!(record["caller"], "someone", "{record}");
    assert!(record.get("code").is_none(), "{record}");
    assert!(record["duration_us"].is_u64(), "{record}");
    assert!(record["request_id"].is_number(), "{record}");

    // A review's: a URI's credentials were recorded as they were.
    peer.read_resource(rmcp::model::ReadResourceRequestParams::new(
        "docs://reader:hunter2@store/payroll?token=hunter2&page=2",
    ))
    .await
    .expect("served");
    let records = served(&audit);
    let target = records[1]["target"].as_str().unwrap();
    assert!(!target.contains("hunter2"), "{target}");
    assert_eq!(target, "docs://***@store/payroll?***", "{target}");
    // A red team's (round 47): the mask missed a credential in a fragment, in an opaque URI, under a parameter name
    // not listed or percent-encoded, and in a password holding `/`. The query and the fragment are not recorded at
    // all, and whatever comes before an `@` after the scheme is masked.
    for (uri, recorded) in [
        ("x://h/#access_token=hunter2", "x://h/#***"),
        ("urn:x:y?token=hunter2", "urn:x:y?***"),
        ("mailto:u:hunter2@h", "mailto:***@h"),
        (
            "docs:///p?%74oken=hunter2&X-Amz-Signature=hunter2",
            "docs:///p?***",
        ),
        ("x://user:pa/ss@host/r", "x://***"),
        ("docs://store/payroll", "docs://store/payroll"),
        // A second round's: no scheme, or not one, and a `?` or `#` in a password.
        ("//user:hunter2@host/path", "//***@host/path"),
        (" https://user:hunter2@host/", " https://***@host/"),
        ("1abc://user:hunter2@host/", "1abc://***@host/"),
        ("ht_tp://user:hunter2@host/", "ht_tp://***@host/"),
        ("https://user:hun?ter2@host/", "https://***"),
        ("https://user:hun#ter2@host/p?q=1", "https://***"),
        ("https://host/p?email=hunter2@example.com", "https://***"),
        // A third round's: a `:` or `//` in the query, a scheme with one slash, a query with no scheme.
        (
            "myapp:report?access_token=hunter2&next=https://example.com/cb",
            "myapp:report?***",
        ),
        ("svc:u:hunter2@host/a?next=http://b", "svc:***@host/a?***"),
        ("https:/u:hunter2@h//x", "https:***"),
        ("report?token=hunter2&at=12:00", "report?***"),
        ("report#access_token=hunter2&expires=12:30", "report#***"),
        ("example.com/x?access_token=hunter2", "example.com/x?***"),
    ] {
        peer.read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
            .await
            .expect("served");
        let records = served(&audit);
        assert_eq!(records.last().unwrap()["target"], recorded, "{uri}");
    }

    // An error of the handler's: recorded with its code; the prompt's arguments are not recorded.
    let prompt = |name: &str| {
        let mut request = rmcp::model::GetPromptRequestParams::new(name);
        request.arguments = Some(args(json!({"password": "hunter2"})));
        request
    };
    let error = peer.get_prompt(prompt("missing")).await.unwrap_err();
    assert!(error.to_string().contains("no prompt"), "{error}");
    let records = served(&audit);
    assert_eq!(records.len(), 22, "{records:?}");
    assert_eq!(records[21]["method"], "prompts/get");
    assert_eq!(records[21]["target"], "missing");
    assert_eq!(records[21]["outcome"], "error");
    assert_eq!(records[21]["code"], -32602);

    // A panic: answered, its message withheld, recorded `panic`; the server goes on serving.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        peer.get_prompt(prompt("boom")),
    )
    .await
    .expect("a panicking method is answered");
    let error = answer.unwrap_err().to_string();
    assert!(
        error.contains("-32603") || error.contains("internal"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    let records = served(&audit);
    assert_eq!(records.len(), 23, "{records:?}");
    assert_eq!(records[22]["outcome"], "panic", "{records:?}");
    assert_eq!(records[22]["code"], -32603, "{records:?}");

    // A review's: a panic in the handler's `fn` itself, before its future exists, escaped the catch (no answer,
    // recorded `cancelled`, its message to the previous hook). Caught as the others are.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        peer.complete(rmcp::model::CompleteRequestParams::new(
            rmcp::model::Reference::for_prompt("triage"),
            rmcp::model::ArgumentInfo::new("note", "hunter2"),
        )),
    )
    .await
    .expect("a method panicking before its future is answered");
    let error = answer.unwrap_err().to_string();
    assert!(!error.contains("hunter2"), "{error}");
    let records = served(&audit);
    let completed = records.last().unwrap();
    assert_eq!(completed["method"], "completion/complete", "{records:?}");
    assert_eq!(completed["outcome"], "panic", "{records:?}");

    // A custom method: recorded by its name, with nothing it carried.
    let status = peer
        .send_request(rmcp::model::ClientRequest::CustomRequest(
            rmcp::model::CustomRequest::new("acme/status", Some(json!({"password": "hunter2"}))),
        ))
        .await
        .expect("a declared custom method is served");
    assert!(format!("{status:?}").contains("acme/status"), "{status:?}");
    let records = served(&audit);
    assert_eq!(records.len(), 25, "{records:?}");
    assert_eq!(records[24]["method"], "acme/status");
    assert!(records[24].get("target").is_none(), "{records:?}");
    assert_eq!(records[24]["outcome"], "ok");

    // A refusal is its `message_rejected` record alone.
    let undeclared = peer
        .send_request(rmcp::model::ClientRequest::CustomRequest(
            rmcp::model::CustomRequest::new("acme/other", None),
        ))
        .await;
    assert!(undeclared.is_err(), "{undeclared:?}");
    assert_eq!(served(&audit).len(), 25);
    assert!(
        !audit
            .records()
            .iter()
            .any(|r| r.to_string().contains("hunter2")),
        "{:?}",
        audit.records()
    );
    client.cancel().await.unwrap();
}

/// The audit trail failing: a declared method's answer is not handed out unrecorded, and once the trail is known
/// to fail, methods are refused before their handler runs, as calls are.
#[tokio::test]
async fn a_declared_method_is_not_served_unrecorded() {
    use secure_tools::PlainMethod;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    #[derive(Clone, Default)]
    struct Failing {
        broken: std::sync::Arc<AtomicBool>,
    }
    impl secure_tools::AuditSink for Failing {
        fn write(
            &self,
            _: &secure_tools::audit::AuditRecord,
        ) -> Result<(), secure_tools::audit::AuditError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("disk full").into());
            }
            Ok(())
        }
    }
    #[derive(Clone, Default)]
    struct Counted(std::sync::Arc<AtomicUsize>);
    impl ServerHandler for Counted {
        async fn read_resource(
            &self,
            request: rmcp::model::ReadResourceRequestParams,
            context: rmcp::service::RequestContext<rmcp::RoleServer>,
        ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Documents.read_resource(request, context).await
        }
    }
    let sink = Failing::default();
    let set = ToolSet::builder(())
        .tool::<read_note>()
        .plain_method(PlainMethod::new("resources/read").unscoped())
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let secure = secure_tools::SecureServer::new(set)
        .default_caller(Caller::new("someone", Grant::parse("docs.read").unwrap()));
    let handler = Counted::default();
    let runs = handler.0.clone();
    let client = client_of(secure_tools::serve::Secured::new(handler, secure)).await;
    let read = || {
        client
            .peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "docs://payroll",
            ))
    };
    read().await.expect("served while the trail is written");
    sink.broken.store(true, Ordering::SeqCst);
    let error = read().await.expect_err("not handed out unrecorded");
    let shown = error.to_string();
    assert!(shown.contains("audit_unavailable"), "{shown}");
    assert!(!shown.contains("the payroll"), "{shown}");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The trail is known to fail: refused before the handler runs.
    let error = read().await.expect_err("refused while the trail fails");
    assert!(error.to_string().contains("audit_unavailable"), "{error}");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    client.cancel().await.unwrap();
}
