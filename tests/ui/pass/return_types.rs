//! What a tool may return: a structured `Result`, a text `Result`, plain text, or nothing.

use secure_tools::{ToolError, ToolSet, secure_tool};

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Stats {
    files: u32,
    bytes: u64,
}

/// Structured content, with an output schema.
#[secure_tool(scope = "stats")]
async fn stats() -> Result<Stats, ToolError> {
    Ok(Stats {
        files: 3,
        bytes: 1024,
    })
}

/// Text that may fail.
#[secure_tool(scope = "text")]
async fn text() -> Result<String, ToolError> {
    Ok("text".to_owned())
}

/// Text that cannot fail.
#[secure_tool(scope = "plain")]
async fn plain() -> String {
    "plain".to_owned()
}

/// A static string.
#[secure_tool(scope = "fixed")]
async fn fixed() -> &'static str {
    "fixed"
}

/// Nothing at all.
#[secure_tool(scope = "nothing")]
async fn nothing() {}

fn main() {
    let tools = ToolSet::builder(())
        .tool::<stats>()
        .tool::<text>()
        .tool::<plain>()
        .tool::<fixed>()
        .tool::<nothing>()
        .build()
        .unwrap();
    assert!(tools.definition("stats").unwrap().output_schema().is_some());
    for name in ["text", "plain", "fixed", "nothing"] {
        assert!(
            tools.definition(name).unwrap().output_schema().is_none(),
            "{name}"
        );
    }
}
