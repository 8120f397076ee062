//! A `nested` rule on an argument needs no `use validator::Validate` in the user's module: the expansion calls
//! `validate()` on the argument as a method, with the trait imported unnamed.

/// A window's size.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Window {
    /// Between 1 and 10.
    #[validate(range(min = 1, max = 10))]
    size: u32,
}

/// Opens a window.
#[secure_tools::secure_tool(scope = "ui.open", read_only)]
async fn open(
    /// The window to open.
    #[validate(nested)]
    window: Window,
) -> Result<String, secure_tools::ToolError> {
    Ok(window.size.to_string())
}

fn main() {
    assert!(secure_tools::ToolSet::builder(()).tool::<open>().build().is_ok());
}
