use secure_tools::guard::GuardCall;
use secure_tools::{secure_tool, ArgsOf, Refusal};

/// Closes a ticket.
#[secure_tool(scope = "tickets.close", authorize = only_reporter)]
async fn close_ticket(id: u64) -> String {
    id.to_string()
}

/// Reopens a ticket.
#[secure_tool(scope = "tickets.reopen", authorize = only_reporter)]
async fn reopen_ticket(id: u64, reason: String) -> String {
    format!("{id}: {reason}")
}

/// Typed by `close_ticket`'s arguments: rustc names both tools' structs in its error.
async fn only_reporter(args: &ArgsOf<close_ticket>, call: &GuardCall<'_>) -> Result<(), Refusal> {
    let _ = (args.id, call);
    Ok(())
}

fn main() {
    let _ = secure_tools::ToolSet::builder(())
        .tool::<close_ticket>()
        .tool::<reopen_ticket>();
}
