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
/// See the `secure-tools` documentation for the arguments and the parameters a tool may take.
#[proc_macro_attribute]
pub fn secure_tool(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::secure_tool(args.into(), item.into()).into()
}
