use secure_tools::secure_tool;

/// Greets someone.
#[secure_tool(scope = "greet")]
async fn greet(
    /// Who to greet.
    #[schemars(length(max = 10))]
    name: String,
    /// How many times.
    #[schemars(range(min = 1, max = 3), extend("maximum" = 3))]
    times: u8,
) -> String {
    name.repeat(usize::from(times))
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<greet>();
}
