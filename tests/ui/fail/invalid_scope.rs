use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(scope = "files.*")]
async fn read_file(path: String) -> String {
    path
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<read_file>();
}
