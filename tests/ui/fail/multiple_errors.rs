use secure_tools::secure_tool;

/// Several mistakes at once: each is reported in the same build.
#[secure_tool(scope = "files read", scop = "x", name = "read file", audit_redact = ["pth"])]
fn read_file<T>(path: &str, (a, b): (T, T)) -> String {
    let _ = (a, b);
    path.to_owned()
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<read_file>();
}
