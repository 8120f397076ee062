//! Every argument `#[secure_tool]` accepts, and where each one ends up.

use secure_tools::{ToolError, ToolSet, secure_tool};

/// Deletes a record.
#[secure_tool(
    scope = ["records.delete", "audit"],
    audit_redact = ["reason", "id"],
    name = "records.delete",
    title = "Delete a record",
    read_only,
    destructive = false,
    idempotent,
    open_world = true,
)]
async fn delete_record(id: u64, reason: String) -> Result<String, ToolError> {
    Ok(format!("deleted {id}: {reason}"))
}

/// Tells the time; anyone may ask.
#[secure_tool(unscoped)]
async fn now() -> String {
    "noon".to_owned()
}

/// A single scope as a plain string.
#[secure_tool(
    scope = "ping",
    read_only = false,
    destructive = true,
    idempotent = false,
    open_world = false
)]
async fn ping() {}

fn main() {
    let tools = ToolSet::builder(())
        .tool::<delete_record>()
        .tool::<now>()
        .tool::<ping>()
        .build()
        .unwrap();

    let delete = tools.definition("records.delete").unwrap();
    assert_eq!(delete.title(), Some("Delete a record"));
    let scopes: Vec<&str> = delete.scopes().iter().map(|s| s.as_str()).collect();
    assert_eq!(scopes, ["records.delete", "audit"]);
    assert_eq!(delete.audit_redact(), ["reason", "id"]);
    let hints = delete.annotations();
    assert_eq!(hints.read_only_hint, Some(true));
    assert_eq!(hints.destructive_hint, Some(false));
    assert_eq!(hints.idempotent_hint, Some(true));
    assert_eq!(hints.open_world_hint, Some(true));

    assert!(tools.definition("now").unwrap().scopes().is_empty());

    let hints = tools.definition("ping").unwrap().annotations();
    assert_eq!(hints.read_only_hint, Some(false));
    assert_eq!(hints.destructive_hint, Some(true));
    assert_eq!(hints.idempotent_hint, Some(false));
    assert_eq!(hints.open_world_hint, Some(false));
}
