use secure_tools::secure_tool;

/// Logs in.
#[secure_tool(scope = "auth.login", audit_redact = ["password", "password"])]
async fn login(user: String, password: String) -> String {
    let _ = password;
    user
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<login>();
}
