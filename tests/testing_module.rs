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
