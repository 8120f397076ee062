//! A `pub` tool declared in a module is registered from outside it.

mod tools {
    use secure_tools::{ToolError, secure_tool};

    /// Echoes its input.
    #[secure_tool(scope = "echo")]
    pub async fn echo(
        /// The text to echo.
        #[validate(length(max = 100))]
        text: String,
    ) -> Result<String, ToolError> {
        Ok(text)
    }
}

fn main() {
    let tools = secure_tools::ToolSet::builder(())
        .tool::<tools::echo>()
        .build()
        .unwrap();
    assert!(tools.definition("echo").is_some());
}
