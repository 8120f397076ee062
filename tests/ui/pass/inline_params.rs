//! One parameter per argument, with validation rules, doc comments, an optional argument and every kind of context
//! parameter. Names only `secure_tools`: the user needs no direct serde, schemars or validator dependency.

use secure_tools::{CallContext, Caller, RequestId, State, ToolError, ToolSet, secure_tool};

#[derive(Clone)]
struct Config {
    greeting: &'static str,
}

/// Greets someone, a few times.
#[secure_tool(scope = "greet")]
async fn greet(
    /// Who to greet.
    #[validate(length(min = 1, max = 32))]
    name: String,
    /// How many times.
    #[validate(range(min = 1, max = 5))]
    times: u8,
    /// An optional closing line.
    closing: Option<String>,
    caller: Caller,
    request_id: RequestId,
    cx: CallContext,
    State(config): State<Config>,
) -> Result<String, ToolError> {
    let line = format!(
        "{} {name} from {} ({request_id}, {})",
        config.greeting,
        caller.id(),
        cx.tool()
    );
    let mut text = vec![line; usize::from(times)].join("\n");
    if let Some(closing) = closing {
        text.push('\n');
        text.push_str(&closing);
    }
    Ok(text)
}

fn main() {
    let tools = ToolSet::builder(Config { greeting: "hello" })
        .tool::<greet>()
        .build()
        .unwrap();
    let definition = tools.definition("greet").unwrap();
    assert_eq!(
        definition.description(),
        Some("Greets someone, a few times.")
    );
    let properties = definition.input_schema()["properties"].as_object().unwrap();
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["closing", "name", "times"]);
}
