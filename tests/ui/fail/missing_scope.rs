use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(read_only)]
async fn read_file(path: String) -> String {
    path
}

fn main() {}
