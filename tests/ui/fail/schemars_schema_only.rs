use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(scope = "files.read", read_only)]
async fn read(
    /// Which file.
    #[schemars(rename = "path")]
    file: String,
    /// How many lines.
    #[schemars(default)]
    lines: u32,
    /// From which line.
    #[schemars(!default, length(max = 3))]
    from: u32,
    /// Shown as a title.
    #[schemars(title = "Encoding", description = "The text's encoding")]
    encoding: String,
) -> String {
    format!("{file} {lines} {from} {encoding}")
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
