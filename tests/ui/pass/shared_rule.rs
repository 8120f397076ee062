//! One argument rule for two tools: `ArgsOf<tool>` is each tool's own struct, so the rule is generic over a trait
//! of the user's, implemented for each; or the tools share one `Args<T>`.

use secure_tools::guard::GuardCall;
use secure_tools::{Args, ArgsOf, Refusal, ToolSet, secure_tool};

/// Closes a ticket.
#[secure_tool(scope = "tickets.close", authorize = only_reporter)]
async fn close_ticket(
    /// The ticket.
    id: u64,
) -> String {
    format!("{id} closed")
}

/// Reopens a ticket.
#[secure_tool(scope = "tickets.reopen", authorize = only_reporter)]
async fn reopen_ticket(
    /// The ticket.
    id: u64,
    /// Why.
    reason: String,
) -> String {
    format!("{id} reopened: {reason}")
}

trait TicketId {
    fn ticket(&self) -> u64;
}

impl TicketId for ArgsOf<close_ticket> {
    fn ticket(&self) -> u64 {
        self.id
    }
}

impl TicketId for ArgsOf<reopen_ticket> {
    fn ticket(&self) -> u64 {
        self.id
    }
}

async fn only_reporter<A: TicketId>(args: &A, call: &GuardCall<'_>) -> Result<(), Refusal> {
    if args.ticket() == 0 || call.caller().id().is_empty() {
        return Err(Refusal::denied("not_reporter", "only the reporter may"));
    }
    Ok(())
}

/// The arguments of both.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Ticket {
    /// The ticket.
    id: u64,
}

/// Archives a ticket.
#[secure_tool(scope = "tickets.archive", authorize = known_ticket)]
async fn archive_ticket(Args(ticket): Args<Ticket>) -> String {
    format!("{} archived", ticket.id)
}

/// Restores a ticket.
#[secure_tool(scope = "tickets.archive", authorize = known_ticket)]
async fn restore_ticket(Args(ticket): Args<Ticket>) -> String {
    format!("{} restored", ticket.id)
}

async fn known_ticket(ticket: &Ticket, _call: &GuardCall<'_>) -> Result<(), Refusal> {
    match ticket.id {
        0 => Err(Refusal::denied("unknown_ticket", "no such ticket")),
        _ => Ok(()),
    }
}

fn main() {
    let tools = ToolSet::builder(())
        .tool::<close_ticket>()
        .tool::<reopen_ticket>()
        .tool::<archive_ticket>()
        .tool::<restore_ticket>()
        .build()
        .unwrap();
    assert_eq!(tools.definitions().count(), 4);
}
