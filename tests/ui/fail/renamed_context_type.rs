use secure_tools::{secure_tool, State as Shared};

/// Greets with the shared greeting.
#[secure_tool(scope = "greet")]
async fn greet(Shared(greeting): Shared<String>) -> String {
    greeting
}

fn main() {
    let _ = secure_tools::ToolSet::builder(String::new()).tool::<greet>();
}
