use secure_tools::secure_tool;

/// Reads a note.
#[secure_tool(scope = "notes.read")]
#[secure_tool(scope = "notes.write")]
async fn read(path: String) -> String {
    path
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
