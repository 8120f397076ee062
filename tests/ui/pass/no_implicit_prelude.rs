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

static CODE: ::std::sync::LazyLock<::regex::Regex> =
    ::std::sync::LazyLock::new(|| ::regex::Regex::new("^[A-Z]{3}$").unwrap());

/// Looks a code up: a default, a `regex` rule on a static and a `contains` rule (their expansions call
/// `default()` and `to_string()` as methods).
#[::secure_tools::secure_tool(scope = "codes.read", read_only)]
async fn lookup(
    /// The code.
    #[validate(regex(path = *CODE))]
    code: ::std::string::String,
    /// A note.
    #[validate(contains(pattern = "x"))]
    note: ::std::string::String,
    /// How many.
    #[serde(default)]
    count: u32,
) -> ::std::result::Result<::std::string::String, ::secure_tools::ToolError> {
    let _ = (note, count);
    ::std::result::Result::Ok(code)
}

/// Anyone may call this.
#[::secure_tools::secure_tool(unscoped, name = "noop", read_only)]
async fn nothing() {}

fn main() {
    let tools = ::secure_tools::ToolSet::builder(7_u32)
        .tool::<add>()
        .tool::<nothing>()
        .tool::<lookup>()
        .build();
    ::std::assert!(tools.is_ok());
}
