use secure_tools::secure_tool;

#[secure_tool(scope = "files.read")]
struct ReadFile {
    path: String,
}

fn main() {}
