//! Tools written by a `macro_rules!`: a context type, an error type and an argument rule passed as metavariables,
//! whose hygiene must not hide the expansion's own locals from the code it generates around them.

use secure_tools::guard::GuardCall;
use secure_tools::{ArgsOf, Caller, Refusal, ToolError, ToolSet, secure_tool};

macro_rules! tool_with {
    ($name:ident, $ctx:ident, $err:ident, $rule:path) => {
        /// Reads a note.
        #[secure_tool(scope = "notes.read", authorize = $rule)]
        async fn $name(path: String, caller: $ctx) -> Result<String, $err> {
            Ok(format!("{} read {path}", caller.id()))
        }
    };
}

tool_with!(read_note, Caller, ToolError, rules::not_secret);

mod rules {
    use super::*;

    /// No one reads the secret note.
    pub async fn not_secret(
        args: &ArgsOf<read_note>,
        _call: &GuardCall<'_>,
    ) -> Result<(), Refusal> {
        if args.path == "secret" {
            return Err(Refusal::denied("secret", "no one reads the secret note"));
        }
        Ok(())
    }
}

fn main() {
    let tools = ToolSet::builder(()).tool::<read_note>().build().unwrap();
    assert_eq!(tools.definitions().count(), 1);
}
