use secure_tools::{secure_tool, Caller};

/// Reads a file.
#[secure_tool(scope = "files.read")]
async fn read_file(path: String, caller: Option<Caller>) -> String {
    format!("{path} {}", caller.is_some())
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read_file>();
}
