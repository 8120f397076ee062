use secure_tools::secure_tool;

/// Logs in.
#[secure_tool(scope = "auth.login", audit_redact = ["password", "password"])]
async fn login(user: String, password: String) -> String {
    let _ = password;
    user
}

fn main() {}
