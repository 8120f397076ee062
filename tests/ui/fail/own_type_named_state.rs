use secure_tools::secure_tool;

/// A ticket's state: the user's own type, named like the `State<T>` extractor.
#[derive(serde::Deserialize, schemars::JsonSchema)]
enum State {
    Open,
    Closed,
}

/// Sets a ticket's state.
#[secure_tool(scope = "tickets.write")]
async fn set_state(id: u64, state: State) -> String {
    let _ = state;
    id.to_string()
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<set_state>();
}
