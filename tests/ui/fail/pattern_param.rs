use secure_tools::secure_tool;

/// Moves a point.
#[secure_tool(scope = "points.move")]
async fn move_point((x, y): (i32, i32)) -> String {
    format!("{x},{y}")
}

fn main() {}
