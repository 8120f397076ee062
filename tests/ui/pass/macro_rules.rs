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

// A context type passed as a `$ctx:ty` arrives in an invisible group: still recognised as context.
macro_rules! tool_with_context_type {
    ($name:ident, $ctx:ty) => {
        /// Says who calls.
        #[secure_tool(scope = "notes.read")]
        async fn $name(caller: $ctx) -> String {
            caller.id().to_owned()
        }
    };
}

tool_with_context_type!(whoami, Caller);

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
    let tools = ToolSet::builder(())
        .tool::<read_note>()
        .tool::<whoami>()
        .build()
        .unwrap();
    assert_eq!(tools.definitions().count(), 2);
    let schema = tools.definition("whoami").unwrap().input_schema();
    assert_eq!(schema["properties"], serde_json::json!({}));
}
