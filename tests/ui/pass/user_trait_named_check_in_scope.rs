//! A red team's (round 36): a trait of the user's with a method `check` for every type, in scope where the tool is
//! declared, was taken for the expansion's own check of an argument's rules (E0061, E0034). Its methods have names
//! of their own.

trait Check {
    fn check(&self) -> bool {
        true
    }
}
impl<T: ?Sized> Check for T {}

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
    /// Its name.
    name: String,
    /// The window.
    window: Window,
) -> String {
    assert!(name.check());
    format!("{name} {}", window.size)
}

fn main() {
    assert!(secure_tools::ToolSet::builder(()).tool::<open>().build().is_ok());
}
