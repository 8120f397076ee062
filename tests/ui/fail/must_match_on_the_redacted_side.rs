//! A red team's (round 36): the rule written on the redacted argument, naming one that is not redacted. Equality
//! goes both ways: `confirm` holds the password, and was recorded in clear.
use secure_tools::secure_tool;

/// Registers a user.
#[secure_tool(scope = "users.write", audit_redact = ["password"])]
async fn register(
    /// The password; must equal `confirm`.
    #[validate(must_match(other = "confirm"))]
    password: String,
    /// The password again.
    confirm: String,
) -> String {
    format!("{} {}", password.len(), confirm.len())
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<register>();
}
