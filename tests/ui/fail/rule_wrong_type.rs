use secure_tools::secure_tool;

/// Opens a ticket.
#[secure_tool(scope = "tickets.write")]
async fn open_ticket(
    #[validate(length(min = 1))] id: u64,
    #[validate(range(min = 1))] title: String,
    #[validate(length(max = 3))] tags: Option<Vec<String>>,
    #[validate(length(min = 1, max = 10))] priority: Option<u8>,
) -> String {
    format!("{id} {title} {tags:?} {priority:?}")
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<open_ticket>();
}
