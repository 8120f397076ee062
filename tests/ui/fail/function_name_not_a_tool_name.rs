use secure_tools::secure_tool;

/// Summarises a résumé.
#[secure_tool(scope = "cv.read", read_only)]
async fn résumé() -> String {
    String::new()
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<résumé>();
}
