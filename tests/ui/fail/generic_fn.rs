use secure_tools::secure_tool;

/// Echoes anything.
#[secure_tool(scope = "echo")]
async fn echo<T: ToString>(value: T) -> String {
    value.to_string()
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<echo>();
}
