//! The whole input as one struct: `Args(args): Args<T>`, where `T` derives the three traits itself.

use secure_tools::{Args, Caller, ToolError, ToolSet, secure_tool};

/// What to search for.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
struct Search {
    /// The text to look for.
    #[validate(length(min = 1, max = 100))]
    query: String,
    /// At most this many hits.
    #[validate(range(min = 1, max = 50))]
    limit: Option<u32>,
}

/// Searches the index.
#[secure_tool(scope = "index.search", audit_redact = ["query"])]
async fn search(Args(search): Args<Search>, caller: Caller) -> Result<String, ToolError> {
    Ok(format!(
        "{} searched {} (limit {:?})",
        caller.id(),
        search.query,
        search.limit
    ))
}

fn main() {
    let tools = ToolSet::builder(()).tool::<search>().build().unwrap();
    let definition = tools.definition("search").unwrap();
    assert_eq!(definition.audit_redact(), ["query"]);
    let properties = definition.input_schema()["properties"].as_object().unwrap();
    assert!(properties.contains_key("query") && properties.contains_key("limit"));
}
