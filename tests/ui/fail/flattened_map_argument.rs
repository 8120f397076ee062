//! A red team's: a flattened map would take the names no other argument has, but the arguments refuse names they
//! do not declare, so it was always empty.
use std::collections::HashMap;

use secure_tools::secure_tool;

/// Labels a thing.
#[secure_tool(scope = "t.write")]
async fn label(name: String, #[serde(flatten)] extra: HashMap<String, String>) -> String {
    format!("{name} {}", extra.len())
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<label>();
}
