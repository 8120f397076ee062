//! Two secure tools over an in-memory note store, called through the pipeline by callers with different
//! grants. Prints each tool's definition, each call's result, and the audit records.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use secure_tools::{
    CallRequest, Caller, Grant, JsonLinesSink, MemorySink, RequestId, State, ToolError, ToolSet,
    secure_tool,
};
use serde_json::json;

/// The shared state: notes by name.
type Notes = Arc<Mutex<BTreeMap<String, String>>>;

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Note {
    /// The note's name.
    name: String,
    /// The note's text.
    text: String,
}

/// Read a note.
#[secure_tool(scope = "notes.read", read_only)]
async fn read_note(
    /// Name of the note.
    #[validate(length(min = 1, max = 64))]
    name: String,
    State(notes): State<Notes>,
) -> Result<Note, ToolError> {
    let text = notes.lock().unwrap().get(&name).cloned();
    match text {
        Some(text) => Ok(Note { name, text }),
        None => Err(ToolError::new(
            "not_found",
            format!("no note named `{name}`"),
        )),
    }
}

/// Write a note, replacing any note of that name.
#[secure_tool(scope = "notes.write", audit_redact = ["text"], idempotent)]
async fn write_note(
    /// Name of the note.
    #[validate(length(min = 1, max = 64))]
    name: String,
    /// The note's text (kept out of the audit trail).
    #[validate(length(max = 1000))]
    text: String,
    State(notes): State<Notes>,
) -> Result<String, ToolError> {
    notes.lock().unwrap().insert(name.clone(), text);
    Ok(format!("saved `{name}`"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let audit = MemorySink::new();
    let tools = ToolSet::builder(Notes::default())
        .tool::<read_note>()
        .tool::<write_note>()
        .server_id("quickstart")
        .audit_sink(audit.clone())
        .audit_sink(JsonLinesSink::stderr())
        .build()?;

    println!("== tool definitions");
    for definition in tools.definitions() {
        println!("{}", serde_json::to_string(definition)?);
    }

    let editor = Caller::new("editor", Grant::parse("notes.read,notes.write")?);
    let reader = Caller::new("reader", Grant::parse("notes.read")?);
    let calls = [
        (
            &editor,
            "write_note",
            json!({"name": "todo", "text": "ship secure-tools"}),
        ),
        (&reader, "read_note", json!({"name": "todo"})),
        (
            &reader,
            "write_note",
            json!({"name": "todo", "text": "overwritten?"}),
        ),
        (
            &editor,
            "write_note",
            json!({"name": "", "text": "no name"}),
        ),
        (
            &editor,
            "write_note",
            json!({"name": "todo", "text": "x", "mode": "append"}),
        ),
        (&reader, "read_note", json!({"name": "missing"})),
    ];

    println!("\n== calls");
    for (id, (caller, tool, args)) in calls.into_iter().enumerate() {
        let request = CallRequest::new(caller.clone(), tool, args.as_object().cloned())
            .with_request_id(RequestId::Number(id as i64 + 1));
        let response = tools.call(request).await?;
        let result = serde_json::to_value(response.into_call_tool_result())?;
        let shown = match result.get("structuredContent") {
            Some(structured) => structured.clone(),
            None => result["content"][0]["text"].clone(),
        };
        println!("{} {tool} {args} -> {shown}", caller.id());
    }

    println!("\n== audit records (also written to stderr as JSON lines)");
    for record in audit.records() {
        println!("{record}");
    }
    Ok(())
}
