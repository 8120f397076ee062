//! What a handler returns, and how it becomes an MCP tool result.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::call::Refusal as ToolError;

/// A successful handler result, before it is shaped into an MCP `CallToolResult`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ToolOutput {
    /// Plain text content.
    Text(String),
    /// Structured content matching the tool's output schema, with its text rendering for clients that show
    /// text (the compact JSON unless the handler gave one, see [`Rendered`]).
    Structured {
        /// The structured content.
        value: Value,
        /// The text content sent beside it; `None` for the JSON text.
        text: Option<String>,
    },
    /// Content blocks as given: images, audio, embedded resources, several of them (see [`ContentBlocks`]).
    Content(Vec<ContentBlock>),
    /// The whole result a plain rmcp tool's server gave (see
    /// [`ToolSetBuilder::plain_tool`](crate::ToolSetBuilder::plain_tool)), passed on as it is, `isError` included.
    Result(CallToolResult),
    /// Not a result yet: the handler asked the client questions under the stateless revision (an elicitation, a
    /// sampling request), which the client answers by calling again (see [`Elicitation`](crate::Elicitation)).
    /// Made by the pipeline, the call's outcome `input_required`.
    InputRequired(rmcp::model::InputRequiredResult),
}

impl ToolOutput {
    /// The MCP result of a successful call.
    pub fn into_call_tool_result(self) -> CallToolResult {
        match self {
            ToolOutput::Text(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            ToolOutput::Structured { value, text: None } => CallToolResult::structured(value),
            ToolOutput::Structured {
                value,
                text: Some(text),
            } => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(value);
                result
            }
            ToolOutput::Content(blocks) => CallToolResult::success(blocks),
            ToolOutput::Result(result) => result,
            // Only an `input_required` answer carries the questions (`CallResponse::into_call_tool_response`).
            ToolOutput::InputRequired(_) => CallToolResult::error(vec![ContentBlock::text(
                "input_required: the tool asked the client for input, which a complete result cannot carry",
            )]),
        }
    }
}

impl PartialEq for ToolOutput {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ToolOutput::Text(a), ToolOutput::Text(b)) => a == b,
            (
                ToolOutput::Structured { value, text },
                ToolOutput::Structured {
                    value: other_value,
                    text: other_text,
                },
            ) => value == other_value && text == other_text,
            (ToolOutput::Content(a), ToolOutput::Content(b)) => a == b,
            (ToolOutput::Result(a), ToolOutput::Result(b)) => a == b,
            // rmcp's type has no `PartialEq`: equal when they say the same on the wire.
            (ToolOutput::InputRequired(a), ToolOutput::InputRequired(b)) => {
                serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
            }
            _ => false,
        }
    }
}

/// A result made of MCP content blocks of the handler's choosing: images (`ContentBlock::image`), audio,
/// embedded resources, text, or a mix. The tool publishes no output schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentBlocks(pub Vec<ContentBlock>);

impl IntoToolOutput for ContentBlocks {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Content(self.0))
    }
}

/// rmcp's whole result, as a handler made it: passed on as it is, `isError` included (an error result is recorded
/// with outcome `error`). The tool publishes no output schema.
impl IntoToolOutput for CallToolResult {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Result(self))
    }
}

/// Content blocks as given, as [`ContentBlocks`] takes them.
impl IntoToolOutput for Vec<ContentBlock> {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Content(self))
    }
}

/// One content block.
impl IntoToolOutput for ContentBlock {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Content(vec![self]))
    }
}

/// A structured result: serialized as `structuredContent`, with the tool's output schema generated from `T`.
///
/// `#[secure_tool]` wraps a handler's `Ok` type in `Json` by itself unless it is `String`, `&'static str`, `()`,
/// [`ContentBlocks`], rmcp's `CallToolResult`, `ContentBlock` or `Vec<ContentBlock>`, or already `Json<_>` or
/// [`Rendered<_>`], so returning `Result<MyOutcome, ToolError>` is enough. (rmcp's own result types serialize, so
/// wrapped they would have become structured content: an error result passed off as a success.)
///
/// ```
/// use secure_tools::{Json, ToolError, secure_tool};
///
/// /// Lines counted.
/// #[derive(serde::Serialize, schemars::JsonSchema)]
/// struct Count {
///     /// How many lines the text has.
///     lines: usize,
/// }
///
/// /// Counts the lines of a text.
/// #[secure_tool(scope = "text.read", read_only)]
/// async fn count_lines(
///     /// The text.
///     text: String,
/// ) -> Result<Json<Count>, ToolError> {
///     // `Result<Count, ToolError>` means the same: the attribute adds the `Json`.
///     Ok(Json(Count { lines: text.lines().count() }))
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

/// A type a handler may return on success.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a secure tool",
    note = "return `String` for text, or a type that implements `serde::Serialize` and `schemars::JsonSchema` for structured content"
)]
pub trait IntoToolOutput {
    /// The output JSON Schema, for structured results.
    fn output_schema() -> Option<Arc<JsonObject>>;
    /// Converts the value. Fails only if a structured value cannot be serialized.
    fn into_tool_output(self) -> Result<ToolOutput, ToolError>;
}

impl IntoToolOutput for String {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Text(self))
    }
}

impl IntoToolOutput for &'static str {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Text(self.to_owned()))
    }
}

impl IntoToolOutput for () {
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Text(String::new()))
    }
}

impl<T: Serialize + JsonSchema + 'static> IntoToolOutput for Json<T> {
    fn output_schema() -> Option<Arc<JsonObject>> {
        Some(rmcp::handler::server::common::schema_for_output::<T>())
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        serde_json::to_value(self.0)
            .map(|value| ToolOutput::Structured { value, text: None })
            .map_err(ToolError::internal)
    }
}

/// A structured result with a text rendering of the handler's choosing, for clients that show the text content
/// rather than the structured one (a file's content as it reads, say, instead of JSON). Pass the text through
/// [`crate::text::neutralize`] when it holds anything a caller supplied.
///
/// ```
/// use secure_tools::{Rendered, ToolError, secure_tool, text::neutralize};
///
/// /// A city's weather.
/// #[derive(serde::Serialize, schemars::JsonSchema)]
/// struct Weather {
///     /// The city, as asked.
///     city: String,
///     /// Degrees Celsius.
///     celsius: f64,
/// }
///
/// /// Today's weather in a city.
/// #[secure_tool(scope = "weather.read", read_only)]
/// async fn weather(
///     /// The city's name.
///     city: String,
/// ) -> Result<Rendered<Weather>, ToolError> {
///     // The output schema is `Weather`'s; clients that show text see one line, the caller's input escaped.
///     let text = format!("{}: 21 °C", neutralize(&city));
///     Ok(Rendered { value: Weather { city, celsius: 21.0 }, text })
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered<T> {
    /// The structured content.
    pub value: T,
    /// The text content.
    pub text: String,
}

impl<T: Serialize + JsonSchema + 'static> IntoToolOutput for Rendered<T> {
    fn output_schema() -> Option<Arc<JsonObject>> {
        Some(rmcp::handler::server::common::schema_for_output::<T>())
    }
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        let value = serde_json::to_value(self.value).map_err(ToolError::internal)?;
        Ok(ToolOutput::Structured {
            value,
            text: Some(self.text),
        })
    }
}
