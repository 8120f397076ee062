use secure_tools::{secure_tool, Caller as Who};

/// Greets the caller.
#[secure_tool(scope = "greet")]
async fn greet(who: Who) -> String {
    format!("hello, {}", who.id())
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<greet>();
}
