//! The `#[secure_tool]` attribute of [secure-tools](https://docs.rs/secure-tools). Depend on `secure-tools`, which
//! re-exports it; the generated code refers to `::secure_tools` only.

mod ast;
mod attr;
mod expand;
mod fallback;
// The grammars of scopes, rates and durations: the runtime's own crate, so both accept exactly the same text.
use secure_tools_grammar as grammar;
mod valid;

use proc_macro::TokenStream;

/// Makes an `async fn` a secure tool: input JSON Schema, validation, scope check and audit.
///
/// ```ignore
/// /// Closes a ticket. (The doc comment is the tool's description.)
/// #[secure_tool(scope = "tickets.close", authorize = only_reporter, rate = "10/min", timeout = "5s")]
/// async fn close_ticket(
///     /// The ticket.
///     #[validate(range(min = 1))]
///     id: u64,
///     caller: Caller,
///     State(tickets): State<Tickets>,
/// ) -> Result<String, ToolError> { .. }
/// ```
///
/// The function stays as written; beside it, a type of the same name is registered with
/// `ToolSet::builder(state).tool::<close_ticket>()`.
///
/// # Arguments of the attribute
///
/// | argument | meaning |
/// | --- | --- |
/// | `scope = "a.read"`, `scope = ["a.read", "b.write"]` | scopes a caller must hold, all of them |
/// | `unscoped` | anyone may call it; a tool has `scope` or `unscoped`, or does not compile |
/// | `audit_redact = ["content"]` (or `= "content"`) | arguments whose values never reach a record or an error message |
/// | `name = "files.write"` | the tool's name (default: the function's) |
/// | `title = "Write file"` | a human-readable title |
/// | `read_only`, `destructive`, `idempotent`, `open_world` (`= false` for the opposite) | MCP annotation hints; a tool not `read_only` gets a `call_started` record before its handler runs |
/// | `rate = "10/min"` | calls per caller (`5/s`, `100/hour`, `30/5min`); past it, `rate_limited` |
/// | `timeout = "5s"` | how long the handler may run (`500ms`, `2min`); past it, `timeout` |
/// | `concurrency = 4` | calls of this tool at once; one more is `overloaded` |
/// | `authorize = path::to::rule` | an argument rule: `async fn(&ArgsOf<tool>, &GuardCall<'_>) -> Result<(), Refusal>` |
///
/// # Parameters
///
/// - **Arguments**, each a property of the input schema: any `T: Deserialize + JsonSchema`, with its doc comment
///   as its description and its `#[validate(..)]` rules checked and published (`Option<T>` is optional); or the
///   whole input as one struct of yours, `Args(args): Args<T>`.
/// - **Context**, recognised by its type's name and never in the schema: `Caller`, `RequestId`, `CallId`,
///   `CallContext`, `State<T>`, `CancellationToken`, `Progress`, `ClientLog`, `Elicitation`, `Sampling`, `Meta`.
///   A type of your own with one of these names is an argument when the parameter is marked `#[arg]`.
///
/// The result is `Result<T, E>` with `E: Into<ToolError>`, or a plain `T`: text for `String`, `&'static str` and
/// `()`, content blocks as they are for `ContentBlocks`, rmcp's `CallToolResult` whole, and structured content
/// (with an output schema) for any other `T: Serialize + JsonSchema`.
///
/// Misuse is a compile error on the offending token. The crate's README has the whole story: each argument's
/// grammar, the parameters' rules, the results, guards and testing.
#[proc_macro_attribute]
pub fn secure_tool(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::secure_tool(args.into(), item.into()).into()
}
