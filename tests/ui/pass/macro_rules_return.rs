//! A result type passed through `macro_rules!` (a `$ret:ty`, which arrives wrapped in an invisible group) is still
//! recognised as a `Result`: its error goes out as an error, not as the structured content of a success.

use secure_tools::{CallRequest, Caller, Grant, MemorySink, ToolError, ToolSet, secure_tool};

macro_rules! tool_returning {
    ($name:ident, $ret:ty) => {
        /// Looks a word up.
        #[secure_tool(scope = "dictionary.read")]
        async fn $name(word: String) -> $ret {
            Err(ToolError::new("not_found", format!("no entry for {word}")))
        }
    };
}

tool_returning!(lookup, Result<String, ToolError>);

fn main() {
    let tools = ToolSet::builder(())
        .tool::<lookup>()
        .audit_sink(MemorySink::new())
        .build()
        .unwrap();
    assert!(
        tools
            .definition("lookup")
            .unwrap()
            .output_schema()
            .is_none()
    );
    let caller = Caller::new("alice", Grant::parse("dictionary.read").unwrap());
    let args = serde_json::json!({ "word": "hello" }).as_object().cloned();
    let response = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(tools.call(CallRequest::new(caller, "lookup", args)))
        .unwrap();
    assert!(response.result().is_err(), "{:?}", response.result());
}
