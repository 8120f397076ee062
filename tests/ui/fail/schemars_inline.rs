use secure_tools::secure_tool;

/// Reads a note.
#[secure_tool(scope = "notes.read")]
async fn read(
    /// The note.
    #[schemars(inline)]
    path: String,
) -> String {
    path
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
