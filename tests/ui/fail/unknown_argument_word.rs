use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(scope = "files.read", rate_limit = "10/min", max_concurrency = 4, redact = ["path"])]
async fn read_file(path: String) -> String {
    path
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read_file>();
}
