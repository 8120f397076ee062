use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(scope = "files.read", read_only = "yes")]
async fn read_file(path: String) -> String {
    path
}

fn main() {}
