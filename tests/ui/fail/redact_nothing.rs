use secure_tools::{secure_tool, ToolError};

/// Log in.
#[secure_tool(scope = "auth.login", audit_redact = [])]
async fn login(user: String, password: String) -> Result<String, ToolError> {
    Ok(format!("{user}:{}", password.len()))
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<login>();
}
