//! A red team's: an argument that must equal a redacted one holds the same secret, and was recorded in clear.
use secure_tools::secure_tool;

/// Registers a user.
#[secure_tool(scope = "users.write", audit_redact = ["password"])]
async fn register(
    password: String,
    /// The password again.
    #[validate(must_match(other = "password"))]
    confirm: String,
) -> String {
    format!("{} {}", password.len(), confirm.len())
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<register>();
}
