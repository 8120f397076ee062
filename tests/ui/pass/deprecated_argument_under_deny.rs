//! A red team's (round 36): the check of an argument's own rules read a `#[deprecated]` argument's field without
//! allowing it, so a crate under `#![deny(deprecated)]` no longer built.
#![deny(deprecated)]

/// Reads a note.
#[secure_tools::secure_tool(scope = "notes.read", read_only)]
async fn read_note(
    /// The note.
    path: String,
    /// How to read it; no longer used.
    #[deprecated = "every note is read as text"]
    mode: Option<String>,
) -> String {
    let _ = mode;
    path
}

fn main() {
    assert!(secure_tools::ToolSet::builder(()).tool::<read_note>().build().is_ok());
}
