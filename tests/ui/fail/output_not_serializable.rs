use secure_tools::{ToolError, secure_tool};

/// Neither `Serialize` nor `JsonSchema`.
struct Report;

/// Counts lines.
#[secure_tool(scope = "report")]
async fn report() -> Result<Report, ToolError> {
    Ok(Report)
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<report>();
}
