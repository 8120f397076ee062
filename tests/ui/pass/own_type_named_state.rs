//! A type of the user's own named like a context type is an argument once marked `#[arg]`.

use secure_tools::{secure_tool, ToolSet};

/// A ticket's state.
#[derive(serde::Deserialize, schemars::JsonSchema)]
enum State {
    Open,
    Closed,
}

/// Sets a ticket's state.
#[secure_tool(scope = "tickets.write")]
async fn set_state(
    id: u64,
    /// The new state.
    #[arg]
    state: State,
    secure_tools::State(prefix): secure_tools::State<String>,
) -> String {
    let shown = match state {
        State::Open => "open",
        State::Closed => "closed",
    };
    format!("{prefix}{id}: {shown}")
}

fn main() {
    let tools = ToolSet::builder(String::from("#"))
        .tool::<set_state>()
        .build()
        .unwrap();
    let schema = tools.definition("set_state").unwrap().input_schema();
    assert!(schema["properties"].get("state").is_some());
}
