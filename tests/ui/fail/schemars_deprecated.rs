use secure_tools::secure_tool;

/// Reads a note.
#[secure_tool(scope = "notes.read")]
async fn read(
    /// The note.
    path: String,
    /// How to read it; no longer used.
    #[schemars(deprecated)]
    mode: Option<String>,
) -> String {
    let _ = mode;
    path
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
