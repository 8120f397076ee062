//! Without the prelude, the expansion still compiles: every path it generates is absolute.
#![no_implicit_prelude]

/// Adds two numbers.
#[::secure_tools::secure_tool(scope = "math.add", audit_redact = ["b"])]
async fn add(
    /// The first term.
    #[validate(range(min = 0, max = 100))]
    a: u32,
    /// The second term.
    b: ::std::option::Option<u32>,
    caller: ::secure_tools::Caller,
    ::secure_tools::State(offset): ::secure_tools::State<u32>,
) -> ::std::result::Result<::std::string::String, ::secure_tools::ToolError> {
    let _ = caller;
    ::std::result::Result::Ok(::std::string::ToString::to_string(
        &(a + b.unwrap_or(0) + offset),
    ))
}

/// Anyone may call this.
#[::secure_tools::secure_tool(unscoped, name = "noop", read_only)]
async fn nothing() {}

fn main() {
    let tools = ::secure_tools::ToolSet::builder(7_u32)
        .tool::<add>()
        .tool::<nothing>()
        .build();
    ::std::assert!(tools.is_ok());
}
