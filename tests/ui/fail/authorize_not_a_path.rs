use secure_tools::secure_tool;

/// Closes a ticket.
#[secure_tool(scope = "tickets.close", authorize = "only_reporter")]
async fn close_ticket(id: u64) -> String {
    id.to_string()
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<close_ticket>();
}
