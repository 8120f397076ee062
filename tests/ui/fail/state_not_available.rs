use secure_tools::{State, ToolSet, secure_tool};

#[derive(Clone)]
struct Database;

/// Reads a row.
#[secure_tool(scope = "db.read")]
async fn read_row(id: u64, State(db): State<Database>) -> String {
    let Database = db;
    id.to_string()
}

fn main() {
    let _ = ToolSet::builder(()).tool::<read_row>().build();
}
