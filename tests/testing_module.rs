//! `secure_tools::testing` as a user's test would use it: a tool called as a given caller, its output and records
//! typed, and the same tool through an MCP client in process.

use secure_tools::rmcp::model::CallToolRequestParams;
use secure_tools::testing::{self, ToolTester};
use secure_tools::{CallContext, Outcome, ToolError, ToolSet, secure_tool};
use serde_json::json;

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq)]
struct Ticket {
    id: u64,
    title: String,
}

/// Opens a ticket.
#[secure_tool(scope = "tickets.write", audit_redact = ["details"])]
async fn open_ticket(
    /// The title.
    #[validate(length(min = 1, max = 80))]
    title: String,
    /// Private details.
    details: String,
    cx: CallContext,
) -> Result<Ticket, ToolError> {
    let _ = details;
    cx.audit_field("ticket_id", 42);
    Ok(Ticket { id: 42, title })
}

fn tester() -> ToolTester<()> {
    ToolTester::new(ToolSet::builder(()).tool::<open_ticket>()).unwrap()
}

#[tokio::test]
async fn a_tool_is_tested_in_a_few_lines() {
    let tester = tester();
    let alice = testing::caller("alice", "tickets.write");
    let called = tester
        .call(
            &alice,
            "open_ticket",
            json!({"title": "printer", "details": "pw 1234"}),
        )
        .await;
    assert_eq!(
        called.output::<Ticket>(),
        Ticket {
            id: 42,
            title: "printer".into()
        }
    );
    let record = called.record();
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.fields.as_ref().unwrap()["ticket_id"], 42);
    assert_eq!(record.inputs["details"]["redacted"], true);
    let started = called
        .started_record()
        .expect("a tool not marked read_only");
    assert_eq!(started.call_id, record.call_id);
    assert_eq!(called.records().len(), 2);

    let called = tester
        .call(&alice, "open_ticket", json!({"title": "", "details": "x"}))
        .await;
    assert_eq!(called.code(), Some("invalid_input"));
    assert_eq!(called.record().outcome, Outcome::Invalid);
    assert!(called.started_record().is_none());
    // What the client is sent, as rmcp would send it.
    let result = called.call_tool_result();
    assert_eq!(result.is_error, Some(true));
    // The tool declares an output schema, which an error object would not match.
    assert_eq!(result.structured_content, None);
    let notice = &result.meta.as_ref().unwrap()["secure-tools/refusal"];
    assert_eq!(notice["code"], "invalid_input");
    assert_eq!(notice["outcome"], "invalid");
    assert!(
        result.content[0]
            .as_text()
            .unwrap()
            .text
            .starts_with("invalid_input")
    );
    let called = tester
        .call(&alice, "open_ticket", json!({"title": "t", "details": "d"}))
        .await;
    let result = called.call_tool_result();
    assert_ne!(result.is_error, Some(true));
    assert_eq!(
        result.structured_content,
        Some(json!({"id": 42, "title": "t"}))
    );
    // Read, the response is still there.
    assert_eq!(called.output::<Ticket>().id, 42);

    let tenant = testing::caller("carol", "tickets.write").with_attribute("tenant", "acme");
    let called = tester
        .call(
            &tenant,
            "open_ticket",
            json!({"title": "t", "details": "d"}),
        )
        .await;
    assert_eq!(
        called.record().caller_attributes.as_ref().unwrap()["tenant"],
        "acme"
    );
    assert_eq!(
        called
            .started_record()
            .unwrap()
            .caller_attributes
            .as_ref()
            .unwrap()["tenant"],
        "acme"
    );

    let called = tester.call(&alice, "close_ticket", json!({})).await;
    assert!(called.unknown_tool());
    assert_eq!(tester.last_call_record().unwrap().outcome, Outcome::Invalid);
}

#[tokio::test]
async fn the_same_tool_through_an_mcp_client_in_process() {
    let tester = tester();
    let client = tester
        .client(testing::caller("bob", "tickets.read"))
        .await
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    let arguments = testing::arguments(json!({"title": "t", "details": "d"}));
    let mut params = CallToolRequestParams::new("open_ticket");
    params.arguments = arguments;
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let notice = secure_tools::RefusalNotice::from_result(&result).unwrap();
    assert_eq!(notice.code, "missing_scope:tickets.write");
    assert_eq!(
        notice.required_scopes,
        Some(vec!["tickets.write".to_owned()])
    );
    let record = tester.last_call_record().unwrap();
    assert_eq!(record.outcome, Outcome::Denied);
    assert_eq!(record.caller.as_ref(), "bob");
    assert_eq!(record.origin.transport, Some("in-process"));
    assert_eq!(record.origin.client_name.as_deref(), Some("rmcp"));
    client.cancel().await.unwrap();
}

/// The in-process client talks to the stdio runner's stack, not a bare handler: a message over the runner's limit
/// (4 MiB) is refused as a host launching the server would see it (it once went through), and the session is
/// recorded.
#[tokio::test]
async fn the_in_process_client_meets_the_stdio_runners_limits_and_records() {
    let tester = tester();
    let client = tester
        .client(testing::caller("bob", "tickets.write"))
        .await
        .unwrap();
    let arguments = testing::arguments(json!({"title": "t", "details": "d".repeat(5 << 20)}));
    let mut params = CallToolRequestParams::new("open_ticket");
    params.arguments = arguments;
    let refused = client.call_tool(params).await;
    assert!(refused.is_err(), "a 5 MiB request went through");
    assert!(tester.last_call_record().is_none());
    let records = tester.records();
    assert!(
        records.iter().any(|r| r["event"] == "session"),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r["event"] == "message_rejected"),
        "{:?}",
        records.iter().map(|r| &r["event"]).collect::<Vec<_>>()
    );
    client.cancel().await.unwrap();
}

/// The answer to a deletion's question.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Confirm {
    /// Whether to go ahead.
    confirm: bool,
}
secure_tools::rmcp::elicit_safe!(Confirm);

/// Deletes a ticket once the user confirms, reporting progress.
#[secure_tool(scope = "tickets.write", destructive)]
async fn delete_ticket(
    id: u64,
    ask: secure_tools::Elicitation,
    progress: secure_tools::Progress,
) -> Result<String, ToolError> {
    progress.report(1.0, Some(2.0), None).await;
    match ask.ask::<Confirm>(&format!("Delete ticket {id}?")).await? {
        Some(Confirm { confirm: true }) => Ok(format!("ticket {id} deleted")),
        _ => Err(ToolError::new("not_confirmed", "the user did not confirm")),
    }
}

/// A client that answers every question with `answer` and counts the progress it is told of.
#[derive(Clone)]
struct Answering {
    answer: secure_tools::rmcp::model::ElicitResult,
    progress: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl secure_tools::rmcp::ClientHandler for Answering {
    fn get_info(&self) -> secure_tools::rmcp::model::ClientConfig {
        let mut info = secure_tools::rmcp::model::ClientConfig::default();
        info.capabilities.elicitation = Some(Default::default());
        info
    }

    async fn create_elicitation(
        &self,
        _request: secure_tools::rmcp::model::ElicitRequestParams,
        _context: secure_tools::rmcp::service::RequestContext<secure_tools::rmcp::RoleClient>,
    ) -> Result<secure_tools::rmcp::model::ElicitResult, secure_tools::rmcp::ErrorData> {
        Ok(self.answer.clone())
    }

    async fn on_progress(
        &self,
        _params: secure_tools::rmcp::model::ProgressNotificationParam,
        _context: secure_tools::rmcp::service::NotificationContext<secure_tools::rmcp::RoleClient>,
    ) {
        self.progress
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Trial finding: a tool that asks the user (elicitation) or reports progress could not be tested in process:
/// `client()` is a client that declares nothing, so every question was refused `elicitation_unsupported`.
/// `client_with` takes a client handler of the test's.
#[tokio::test]
async fn a_tool_that_asks_the_user_is_tested_with_a_client_of_the_tests() {
    use secure_tools::rmcp::model::{ElicitResult, ElicitationAction};
    let tester = ToolTester::new(ToolSet::builder(()).tool::<delete_ticket>()).unwrap();
    for (answer, code) in [
        (
            ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirm": true})),
            None,
        ),
        (
            ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirm": false})),
            Some("not_confirmed"),
        ),
        (
            ElicitResult::new(ElicitationAction::Decline),
            Some("elicitation_declined"),
        ),
    ] {
        let handler = Answering {
            answer,
            progress: Default::default(),
        };
        let client = tester
            .client_with(testing::caller("alice", "tickets.write"), handler.clone())
            .await
            .unwrap();
        let mut params = CallToolRequestParams::new("delete_ticket");
        params.arguments = testing::arguments(json!({"id": 7}));
        params.meta = Some(
            secure_tools::rmcp::model::RequestMetaObject::with_progress_token(
                secure_tools::rmcp::model::ProgressToken(
                    secure_tools::rmcp::model::NumberOrString::Number(1),
                ),
            ),
        );
        let result = client.call_tool(params).await.unwrap();
        let record = tester.last_call_record().unwrap();
        assert_eq!(record.error.as_deref(), code, "{result:?}");
        assert_eq!(result.is_error, Some(code.is_some()), "{result:?}");
        assert_eq!(
            handler.progress.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        client.cancel().await.unwrap();
    }
}

/// A user's own rmcp server: a plain tool and a prompt of its own, merged with the secure tool.
#[derive(Clone)]
struct Desk {
    tool_router: secure_tools::rmcp::handler::server::router::tool::ToolRouter<Self>,
}

#[secure_tools::rmcp::tool_router]
impl Desk {
    fn new(secure: secure_tools::serve::SecureServer<()>) -> Self {
        Desk {
            tool_router: Self::tool_router() + secure.tool_router(),
        }
    }

    #[secure_tools::rmcp::tool(description = "Count open tickets")]
    fn count_tickets(&self) -> String {
        "3 open".into()
    }
}

#[secure_tools::rmcp::tool_handler(router = self.tool_router)]
impl secure_tools::rmcp::ServerHandler for Desk {
    fn get_info(&self) -> secure_tools::rmcp::model::ServerConfig {
        secure_tools::rmcp::model::ServerConfig::new(
            secure_tools::rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        )
    }

    async fn get_prompt(
        &self,
        request: secure_tools::rmcp::model::GetPromptRequestParams,
        _context: secure_tools::rmcp::service::RequestContext<secure_tools::rmcp::RoleServer>,
    ) -> Result<secure_tools::rmcp::model::GetPromptResponse, secure_tools::rmcp::ErrorData> {
        use secure_tools::rmcp::model::{GetPromptResult, PromptMessage, Role};
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Triage with {}", request.name),
        )])
        .into())
    }
}

/// A new user's trial: testing a merged server (a handler of one's own, its plain tools and methods under the
/// policy) took the library's source to find how. `client_of` connects a client to it in a line.
#[tokio::test]
async fn a_merged_server_is_tested_through_a_client_in_a_line() {
    use secure_tools::{PlainMethod, PlainTool};
    let tester = ToolTester::new(
        ToolSet::builder(())
            .tool::<open_ticket>()
            .plain_tool(
                PlainTool::new("count_tickets")
                    .scope("tickets.read")
                    .read_only(),
            )
            .plain_method(PlainMethod::new("prompts/get").scope("tickets.read")),
    )
    .unwrap();
    let client = tester
        .client_of(testing::caller("alice", "tickets.read"), Desk::new)
        .await
        .unwrap();
    let counted = client
        .call_tool(CallToolRequestParams::new("count_tickets"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&counted.content).unwrap()[0]["text"],
        "3 open"
    );
    let prompt = client
        .get_prompt(secure_tools::rmcp::model::GetPromptRequestParams::new(
            "triage",
        ))
        .await
        .unwrap();
    assert!(format!("{prompt:?}").contains("Triage with triage"));
    // The secure tool, refused for want of its scope.
    let refused = client
        .call_tool(
            CallToolRequestParams::new("open_ticket")
                .with_arguments(testing::arguments(json!({"title": "t", "details": "d"})).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    let records = tester.records();
    let events: Vec<&str> = records
        .iter()
        .filter_map(|record| record["event"].as_str())
        .filter(|event| *event != "session")
        .collect();
    assert_eq!(
        events,
        ["tool_call", "method_call", "tool_call"],
        "{records:?}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["event"] == "method_call")
            .count(),
        1
    );
    client.cancel().await.unwrap();
}
