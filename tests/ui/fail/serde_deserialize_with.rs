use secure_tools::secure_tool;

mod lenient {
    /// `true`, or the text `"yes"`.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
        Ok(value == true || value == "yes")
    }
}

/// Reads a note.
#[secure_tool(scope = "notes.read")]
async fn read(
    /// The note.
    path: String,
    /// Whether to say more.
    #[serde(deserialize_with = "lenient::deserialize")]
    verbose: bool,
) -> String {
    format!("{path} {verbose}")
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<read>();
}
