//! The attribute's limits and argument rule, and every context extractor.

use secure_tools::guard::GuardCall;
use secure_tools::{
    secure_tool, ArgsOf, CallContext, CallId, CancellationToken, ClientLog, Elicitation, Meta,
    Progress, Refusal, Sampling, ToolSet,
};

/// Closes a ticket.
#[secure_tool(
    scope = "tickets.close",
    rate = "10/min",
    timeout = "5s",
    concurrency = 4,
    authorize = rules::only_reporter
)]
async fn close_ticket(
    /// The ticket.
    id: u64,
    cx: CallContext,
    call_id: CallId,
    cancel: CancellationToken,
    progress: Progress,
    log: ClientLog,
    elicitation: Elicitation,
    sampling: Sampling,
    meta: Meta,
) -> Result<String, Refusal> {
    let _ = (cx, cancel, elicitation, sampling, meta);
    progress.report(1.0, Some(1.0), None).await;
    log.info("closed").await;
    Ok(format!("{id} closed in call {call_id}"))
}

mod rules {
    use super::*;

    /// Only the reporter may close a ticket.
    pub async fn only_reporter(
        args: &ArgsOf<close_ticket>,
        call: &GuardCall<'_>,
    ) -> Result<(), Refusal> {
        if args.id == 0 && call.caller().id() != "reporter" {
            return Err(Refusal::denied("not_reporter", "only the reporter may close this ticket"));
        }
        Ok(())
    }
}

fn main() {
    let tools = ToolSet::builder(()).tool::<close_ticket>().build().unwrap();
    assert_eq!(tools.definitions().count(), 1);
}
