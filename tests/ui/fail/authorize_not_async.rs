use secure_tools::guard::GuardCall;
use secure_tools::{secure_tool, ArgsOf, Refusal};

/// Closes a ticket.
#[secure_tool(scope = "tickets.close", authorize = only_reporter)]
async fn close_ticket(id: u64) -> String {
    id.to_string()
}

/// A rule must be an `async fn`.
fn only_reporter(args: &ArgsOf<close_ticket>, call: &GuardCall<'_>) -> Result<(), Refusal> {
    let _ = (args.id, call);
    Ok(())
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<close_ticket>();
}
