use secure_tools::secure_tool;

/// Reads a note.
#[secure_tool(scope = "notes.read")]
async fn read(
    /// The note.
    path: String,
    /// Only in release builds.
    #[cfg(not(debug_assertions))]
    verbose: bool,
) -> String {
    path
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
