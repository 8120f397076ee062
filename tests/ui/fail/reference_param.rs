use secure_tools::secure_tool;

/// Reads a file.
#[secure_tool(scope = "files.read")]
async fn read_file(path: &str) -> String {
    path.to_owned()
}

fn main() {}
