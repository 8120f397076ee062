//! Lint attributes on parameters stay on the function's parameters, whatever the parameter: an argument, `Args<T>`
//! or a context type.
#![deny(unused_variables)]

use secure_tools::{Args, Caller, ToolSet, secure_tool};

/// What to search for.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Search {
    /// The text to look for.
    query: String,
}

/// Searches the index, not yet.
#[secure_tool(scope = "index.search")]
async fn search(
    #[allow(unused_variables)] Args(search): Args<Search>,
    #[allow(unused_variables)] caller: Caller,
) -> String {
    String::new()
}

/// Reads a note, not yet.
#[secure_tool(scope = "notes.read")]
async fn read(
    /// The note.
    #[allow(unused_variables)]
    path: String,
) -> String {
    String::new()
}

fn main() {
    let tools = ToolSet::builder(())
        .tool::<search>()
        .tool::<read>()
        .build()
        .unwrap();
    assert_eq!(tools.definitions().count(), 2);
}
