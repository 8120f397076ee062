use secure_tools::secure_tool;

/// Deletes a ticket, said to change nothing.
#[secure_tool(scope = "tickets.write", read_only, destructive)]
async fn delete_ticket(id: u64) -> String {
    id.to_string()
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<delete_ticket>();
}
