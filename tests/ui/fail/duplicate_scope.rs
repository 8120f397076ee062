use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(scope = ["files.read", "files.list", "files.read"])]
async fn read_file(path: String) -> String {
    path
}

fn main() {}
