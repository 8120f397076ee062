//! The fixture tools of the MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16), written as secure
//! tools: the names, arguments and results its `tools-call-*`, `elicitation-*` and `json-schema-2020-12` scenarios
//! call for, each behind the scope `conformance.call` and audited like any other secure tool.
//!
//! Tools that only answer are `read_only`. The sampling and elicitation tools are not: they act through the
//! client, putting a question to its model or its user, so the audit trail records that they started before they
//! do.

use std::time::Duration;

use secure_tools::rmcp::model::{
    ContentBlock, ElicitRequestParams, ElicitResult, ElicitationSchema, ResourceContents,
};
use secure_tools::{
    ClientLog, ContentBlocks, Elicitation, Progress, Sampling, ToolError, ToolSet, ToolSetBuilder,
    secure_tool,
};
use serde_json::{Value, json};

/// A 1x1 red PNG (RGBA).
const RED_PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV file holding one silent sample: 8 kHz, 16-bit, mono.
const SILENT_WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAAAAA==";
/// The pause between the steps of the progress and logging tools, so that their notifications are spread over the
/// call as a real tool's would be.
const STEP: Duration = Duration::from_millis(50);

/// The fixture tools, for a tool set with no state.
pub fn all() -> ToolSetBuilder<()> {
    ToolSet::builder(())
        .tool::<test_simple_text>()
        .tool::<test_image_content>()
        .tool::<test_audio_content>()
        .tool::<test_embedded_resource>()
        .tool::<test_multiple_content_types>()
        .tool::<test_error_handling>()
        .tool::<test_tool_with_progress>()
        .tool::<test_tool_with_logging>()
        .tool::<test_sampling>()
        .tool::<test_elicitation>()
        .tool::<test_elicitation_sep1034_defaults>()
        .tool::<test_elicitation_sep1330_enums>()
        .tool::<json_schema_2020_12_tool>()
}

/// Returns a simple text response.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_simple_text() -> Result<String, ToolError> {
    Ok("This is a simple text response for testing.".into())
}

/// Returns an image: a 1x1 red PNG.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_image_content() -> Result<ContentBlocks, ToolError> {
    Ok(ContentBlocks(vec![ContentBlock::image(
        RED_PIXEL_PNG,
        "image/png",
    )]))
}

/// Returns audio: a WAV file of one silent sample.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_audio_content() -> Result<ContentBlocks, ToolError> {
    Ok(ContentBlocks(vec![ContentBlock::audio(
        SILENT_WAV,
        "audio/wav",
    )]))
}

/// Returns an embedded text resource.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_embedded_resource() -> Result<ContentBlocks, ToolError> {
    Ok(ContentBlocks(vec![ContentBlock::resource(
        ResourceContents::text(
            "This is an embedded resource content.",
            "test://embedded-resource",
        )
        .with_mime_type("text/plain"),
    )]))
}

/// Returns text, an image and an embedded resource in one result.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_multiple_content_types() -> Result<ContentBlocks, ToolError> {
    Ok(ContentBlocks(vec![
        ContentBlock::text("Multiple content types test:"),
        ContentBlock::image(RED_PIXEL_PNG, "image/png"),
        ContentBlock::resource(
            ResourceContents::text(
                json!({"test": "data", "value": 123}).to_string(),
                "test://mixed-content-resource",
            )
            .with_mime_type("application/json"),
        ),
    ]))
}

/// Always fails: a tool error (an `isError` result), not a protocol error.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_error_handling() -> Result<String, ToolError> {
    Err(ToolError::new(
        "test_error",
        "This tool intentionally returns an error for testing",
    ))
}

/// Reports progress three times (0, 50 and 100 of 100), 50 ms apart, when the client asked for progress.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_tool_with_progress(progress: Progress) -> Result<String, ToolError> {
    let mut sent = 0;
    for (step, done) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if step > 0 {
            tokio::time::sleep(STEP).await;
        }
        let message = format!("step {} of 3", step + 1);
        if progress.report(done, Some(100.0), Some(message)).await {
            sent += 1;
        }
    }
    Ok(format!("Progress notifications sent: {sent}"))
}

/// Logs three messages to the client at `info`, 50 ms apart.
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn test_tool_with_logging(log: ClientLog) -> Result<String, ToolError> {
    let mut sent = 0;
    for (step, message) in [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ]
    .into_iter()
    .enumerate()
    {
        if step > 0 {
            tokio::time::sleep(STEP).await;
        }
        if log.info(message).await {
            sent += 1;
        }
    }
    Ok(format!(
        "Tool with logging executed successfully ({sent} messages sent)"
    ))
}

/// Asks the client's model to complete a prompt (sampling), and returns its answer.
#[secure_tool(scope = "conformance.call")]
pub async fn test_sampling(
    /// The prompt for the model.
    #[validate(length(min = 1, max = 4096))]
    prompt: String,
    sampling: Sampling,
) -> Result<String, ToolError> {
    let answer = complete(&sampling, prompt).await?;
    Ok(format!("LLM response: {answer}"))
}

/// The text the client's model answers `prompt` with.
// rmcp marks sampling deprecated (SEP-2577, proposed for a later revision); every released revision has it.
#[allow(deprecated)]
async fn complete(sampling: &Sampling, prompt: String) -> Result<String, ToolError> {
    use secure_tools::rmcp::model::{CreateMessageRequestParams, SamplingMessage};
    let request = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
    let answer = sampling.create_message(request).await?;
    let text = answer
        .message
        .content
        .iter()
        .find_map(|block| block.as_text());
    text.map(|text| text.text.clone()).ok_or_else(|| {
        ToolError::new(
            "sampling_not_text",
            "the client's model answered with something other than text",
        )
    })
}

/// What `test_elicitation` asks the user for.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct UserInfo {
    /// User's response
    pub username: String,
    /// User's email address
    #[schemars(email)]
    pub email: String,
}

secure_tools::rmcp::elicit_safe!(UserInfo);

/// Asks the user for a user name and an email address (elicitation), and returns what they gave.
#[secure_tool(scope = "conformance.call")]
pub async fn test_elicitation(
    /// The message shown to the user.
    #[validate(length(min = 1, max = 1024))]
    message: String,
    elicitation: Elicitation,
) -> Result<String, ToolError> {
    let content = match elicitation.ask::<UserInfo>(message).await? {
        Some(info) => serde_json::to_value(info).map_err(ToolError::internal)?,
        None => Value::Null,
    };
    Ok(format!("User response: action=accept, content={content}"))
}

/// Asks the user to review a form whose fields all have defaults (SEP-1034): a string, an integer, a number, an
/// enum and a boolean.
#[secure_tool(scope = "conformance.call")]
pub async fn test_elicitation_sep1034_defaults(
    elicitation: Elicitation,
) -> Result<String, ToolError> {
    let form = form(
        "Please review and update the form fields with defaults",
        sep1034_schema(),
    )?;
    let answer = elicitation.request(form).await?;
    Ok(format!("Elicitation completed: {}", describe(&answer)))
}

/// Asks the user to choose from each kind of enum field (SEP-1330): single and multiple choice, with and without
/// titles, and the legacy `enumNames` form.
#[secure_tool(scope = "conformance.call")]
pub async fn test_elicitation_sep1330_enums(elicitation: Elicitation) -> Result<String, ToolError> {
    let form = form(
        "Please select options from the enum fields",
        sep1330_schema(),
    )?;
    let answer = elicitation.request(form).await?;
    Ok(format!("Elicitation completed: {}", describe(&answer)))
}

/// A postal address: the `$defs` entry of `json_schema_2020_12_tool`'s input schema.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "address")]
pub struct Address {
    /// The street and number.
    pub street: Option<String>,
    /// The city.
    pub city: Option<String>,
}

/// Tool with JSON Schema 2020-12 features (SEP-1613): its input schema names its dialect (`$schema`), keeps the
/// address type in `$defs`, and refuses unknown arguments (`additionalProperties: false`).
#[secure_tool(scope = "conformance.call", read_only)]
pub async fn json_schema_2020_12_tool(
    /// A name.
    #[validate(length(max = 256))]
    name: Option<String>,
    /// An address.
    address: Option<Address>,
) -> Result<String, ToolError> {
    let (street, city) = address.map_or((None, None), |a| (a.street, a.city));
    Ok(format!(
        "Received name={name:?}, street={street:?}, city={city:?}"
    ))
}

/// A form elicitation with a schema written out by hand. The SEP-1034 and SEP-1330 scenarios check the exact
/// keywords of each field (a `default` on every kind, `oneOf` with no `enum`, `enumNames` beside `enum`, `anyOf` in
/// `items`), while a schema derived from a Rust type has schemars' own shape (an enum behind a `$ref`, no titled
/// choices). rmcp's `ElicitationSchema` holds each of the spec's shapes, and refuses anything that is not one of the
/// primitive field kinds the spec allows.
fn form(message: &str, schema: Value) -> Result<ElicitRequestParams, ToolError> {
    let requested_schema =
        serde_json::from_value::<ElicitationSchema>(schema).map_err(ToolError::internal)?;
    Ok(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema,
    })
}

/// The user's answer, as the fixture server of the suite reports it.
fn describe(answer: &ElicitResult) -> String {
    let action = serde_json::to_value(&answer.action).unwrap_or(Value::Null);
    let content = answer.content.clone().unwrap_or(Value::Null);
    format!(
        "action={}, content={content}",
        action.as_str().unwrap_or("unknown")
    )
}

fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        },
        "required": []
    })
}

fn sep1330_schema() -> Value {
    let choices = |titles: [&str; 3]| {
        titles
            .iter()
            .enumerate()
            .map(|(i, title)| json!({"const": format!("value{}", i + 1), "title": title}))
            .collect::<Vec<_>>()
    };
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": choices(["First Option", "Second Option", "Third Option"])
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": choices(["First Choice", "Second Choice", "Third Choice"])}
            }
        },
        "required": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written forms reach the client as written: rmcp's typed schema keeps every keyword the scenarios
    /// check, in the variant they check it in.
    #[test]
    fn elicitation_forms_survive_rmcps_schema_types() {
        for schema in [sep1034_schema(), sep1330_schema()] {
            let ElicitRequestParams::FormElicitationParams {
                requested_schema, ..
            } = form("m", schema.clone()).unwrap()
            else {
                unreachable!("a form is a form");
            };
            assert_eq!(serde_json::to_value(&requested_schema).unwrap(), schema);
        }
    }

    #[test]
    fn json_schema_tool_has_the_2020_12_keywords() {
        let tools = all().build().unwrap();
        let schema = tools
            .definition("json_schema_2020_12_tool")
            .unwrap()
            .input_schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["$defs"]["address"]["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
    }
}
