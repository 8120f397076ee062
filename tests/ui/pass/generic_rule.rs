//! An argument rule given with generic arguments: the comma inside the turbofish separates no attribute arguments.

use secure_tools::guard::GuardCall;
use secure_tools::{ArgsOf, Refusal, ToolSet, secure_tool};

/// Closes a ticket.
#[secure_tool(scope = "tickets.close", authorize = rules::id_between::<1, 1000>, rate = "10/min")]
async fn close_ticket(
    /// The ticket.
    id: u64,
) -> String {
    format!("{id} closed")
}

mod rules {
    use super::*;

    /// Only tickets numbered from `MIN` to `MAX`.
    pub async fn id_between<const MIN: u64, const MAX: u64>(
        args: &ArgsOf<close_ticket>,
        _call: &GuardCall<'_>,
    ) -> Result<(), Refusal> {
        if !(MIN..=MAX).contains(&args.id) {
            return Err(Refusal::denied("out_of_range", "no such ticket"));
        }
        Ok(())
    }
}

fn main() {
    let tools = ToolSet::builder(()).tool::<close_ticket>().build().unwrap();
    assert_eq!(tools.definitions().count(), 1);
}
