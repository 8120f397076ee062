use secure_tools::secure_tool;

/// Greets someone.
#[secure_tool(scope = "greet")]
async fn greet(
    /// Who to greet.
    #[serde(alias = "who")]
    name: String,
) -> String {
    name
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<greet>();
}
