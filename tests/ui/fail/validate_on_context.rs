use secure_tools::{Caller, secure_tool};

/// Reads a file.
#[secure_tool(scope = "files.read")]
async fn read_file(path: String, #[validate(length(min = 1))] caller: Caller) -> String {
    format!("{} reads {path}", caller.id())
}

fn main() {}
