use secure_tools::secure_tool;

/// Reads a ticket.
#[secure_tool(scope = "tickets read")]
async fn read_ticket(id: u64) -> String {
    id.to_string()
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<read_ticket>();
}
