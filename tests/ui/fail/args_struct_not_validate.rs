use secure_tools::{Args, secure_tool};

/// Derives `Deserialize` and `JsonSchema`, but not `Validate`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Query {
    text: String,
}

/// Searches.
#[secure_tool(scope = "index.search")]
async fn search(Args(query): Args<Query>) -> String {
    query.text
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<search>();
}
