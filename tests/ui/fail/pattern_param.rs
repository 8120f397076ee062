use secure_tools::secure_tool;

/// Moves a point.
#[secure_tool(scope = "points.move")]
async fn move_point((x, y): (i32, i32)) -> String {
    format!("{x},{y}")
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<move_point>();
}
