use secure_tools::{Args, secure_tool};

#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Source {
    from: String,
}

/// Copies a file.
#[secure_tool(scope = "files.copy")]
async fn copy(Args(source): Args<Source>, to: String) -> String {
    format!("{} -> {to}", source.from)
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<copy>();
}
