use secure_tools::{secure_tool, ToolError};

/// Log in.
#[secure_tool(scope = "auth.login", audit_redact = ["password"])]
async fn login(
    user: String,
    #[serde(rename = "pw")]
    password: String,
) -> Result<String, ToolError> {
    Ok(format!("{user}:{}", password.len()))
}

fn main() {}
