use secure_tools::rmcp::model::{CallToolResult, ContentBlock};
use secure_tools::{secure_tool, ToolError};

type Reply = CallToolResult;

/// Looks a word up, answering as rmcp would.
#[secure_tool(scope = "dictionary.read")]
async fn lookup(word: String) -> Result<Reply, ToolError> {
    Ok(CallToolResult::error(vec![ContentBlock::text(format!("no entry for {word}"))]))
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<lookup>();
}
