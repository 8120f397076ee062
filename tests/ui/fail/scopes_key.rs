use secure_tools::secure_tool;

/// Reads a note.
#[secure_tool(scopes = ["notes.read", "notes.list"])]
async fn read(path: String) -> String {
    path
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
