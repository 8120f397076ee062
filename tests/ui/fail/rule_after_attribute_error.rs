use secure_tools::guard::GuardCall;
use secure_tools::{secure_tool, Args, ArgsOf, Refusal};

/// Closes a ticket.
#[secure_tool(scope = "tickets.close", authorize = only_reporter, rate = "10/fortnight")]
async fn close_ticket(id: u64, reason: String) -> String {
    format!("{id}: {reason}")
}

/// Only a ticket's reporter may close it: its fields are read as they would be without the attribute's error.
async fn only_reporter(args: &ArgsOf<close_ticket>, call: &GuardCall<'_>) -> Result<(), Refusal> {
    let _ = (args.id + 1, args.reason.len(), call);
    Ok(())
}

#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Reopen {
    id: u64,
}

/// Reopens a ticket.
#[secure_tool(scope = "tickets.reopen", authorize = may_reopen, timout = "5s")]
async fn reopen_ticket(Args(reopen): Args<Reopen>) -> String {
    reopen.id.to_string()
}

/// A rule of a tool taking `Args<T>` reads `T`'s fields.
async fn may_reopen(args: &ArgsOf<reopen_ticket>, _call: &GuardCall<'_>) -> Result<(), Refusal> {
    let _ = args.id * 2;
    Ok(())
}

fn main() {
    let _ = secure_tools::ToolSet::builder(())
        .tool::<close_ticket>()
        .tool::<reopen_ticket>();
}
