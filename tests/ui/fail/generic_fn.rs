use secure_tools::secure_tool;

/// Echoes anything.
#[secure_tool(scope = "echo")]
async fn echo<T: ToString>(value: T) -> String {
    value.to_string()
}

fn main() {}
