use secure_tools::secure_tool;

/// Reads a note.
#[secure_tool(scope = "notes.read")]
async fn read(path: impl Into<String>) -> String {
    path.into()
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
