use secure_tools::secure_tool;

/// The user's own type, named like the `Args<T>` extractor.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Args {
    id: u64,
}

/// Looks a ticket up.
#[secure_tool(scope = "tickets.read")]
async fn lookup(args: Args) -> String {
    args.id.to_string()
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<lookup>();
}
