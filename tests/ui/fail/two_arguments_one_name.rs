//! A red team's: two arguments sent under one name. serde fills the first while schemars describes the last (and
//! lists the name twice in `required`), and a field renamed onto a redacted argument's name took its value.
use secure_tools::secure_tool;

/// Counts.
#[secure_tool(scope = "t.read", read_only)]
async fn collide(
    /// A small number, sent as `count`.
    #[serde(rename = "count")]
    limit: u8,
    /// Also `count`, a string.
    count: Option<String>,
) -> String {
    format!("{limit} {count:?}")
}

/// Two renamed alike.
#[secure_tool(scope = "t.read", read_only)]
async fn both_n(#[serde(rename = "n")] a: u8, #[serde(rename(deserialize = "n"))] b: u8) -> String {
    format!("{a} {b}")
}

/// Sets a hint.
#[secure_tool(scope = "t.write", audit_redact = ["password"])]
async fn set_hint(#[serde(rename = "password")] hint: String, password: Option<String>) -> String {
    format!("{} {}", hint.len(), password.is_some())
}

fn main() {
    // Registering the tools adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(())
        .tool::<collide>()
        .tool::<both_n>()
        .tool::<set_hint>();
}
