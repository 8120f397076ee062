//! Tool definitions: names, docs, schemas, annotations, scopes, and a listing that is the same byte for byte.

use std::sync::LazyLock;

use secure_tools::{Args, DefinitionError, SCOPES_META_KEY, ToolError, ToolSet, secure_tool};
use serde_json::{Value, json};

static NAME_PATTERN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9._-]+$").unwrap());

#[derive(serde::Serialize, schemars::JsonSchema)]
struct WriteOutcome {
    /// Name of the file written.
    name: String,
    /// Bytes written.
    bytes_written: u64,
}

/// Write a UTF-8 text file under the data root.
///
/// Replaces the file if it exists.
#[secure_tool(scope = "files.write", audit_redact = ["content"], title = "Write file", destructive, idempotent)]
async fn write_file(
    /// File name inside the data root.
    #[validate(length(min = 1, max = 128), regex(path = *NAME_PATTERN))]
    filename: String,
    /// New content of the file.
    #[validate(length(max = 10000))]
    content: String,
    /// How many copies to keep.
    #[validate(range(min = 1, max = 5))]
    #[allow(unused_variables)]
    keep: Option<u8>,
) -> Result<WriteOutcome, ToolError> {
    Ok(WriteOutcome {
        bytes_written: content.len() as u64,
        name: filename,
    })
}

/// Search the index.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// What to look for.
    #[validate(length(min = 1, max = 200))]
    query: String,
}

/// Search the index.
#[secure_tool(name = "index.search", scope = ["index.read", "index.search"], read_only, open_world = false)]
async fn search(Args(args): Args<SearchArgs>) -> Result<String, ToolError> {
    Ok(args.query)
}

/// Reports the server's health.
#[secure_tool(unscoped, read_only)]
async fn health() -> String {
    "ok".into()
}

fn set() -> ToolSet {
    ToolSet::builder(())
        .tool::<write_file>()
        .tool::<search>()
        .tool::<health>()
        .build()
        .unwrap()
}

fn listing(set: &ToolSet) -> String {
    let defs: Vec<_> = set.definitions().collect();
    serde_json::to_string_pretty(&defs).unwrap() + "\n"
}

#[test]
fn definitions_come_from_the_function_and_its_attribute() {
    let set = set();
    let names: Vec<_> = set.definitions().map(|d| d.name()).collect();
    assert_eq!(
        names,
        ["health", "index.search", "write_file"],
        "sorted by name"
    );

    let write = set.definition("write_file").unwrap();
    assert_eq!(
        write.description(),
        Some("Write a UTF-8 text file under the data root.\n\nReplaces the file if it exists.")
    );
    assert_eq!(write.title(), Some("Write file"));
    assert_eq!(
        write
            .scopes()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["files.write"]
    );
    assert_eq!(write.audit_redact(), ["content"]);
    let hints = write.annotations();
    assert_eq!(hints.destructive_hint, Some(true));
    assert_eq!(hints.idempotent_hint, Some(true));
    assert_eq!(hints.read_only_hint, None);

    let search = set.definition("index.search").unwrap();
    assert_eq!(search.scopes().len(), 2);
    assert_eq!(search.annotations().read_only_hint, Some(true));
    assert_eq!(search.annotations().open_world_hint, Some(false));
    assert!(set.definition("health").unwrap().scopes().is_empty());
}

#[test]
fn input_schema_carries_docs_and_validation_limits() {
    let set = set();
    let schema = Value::Object((**set.definition("write_file").unwrap().input_schema()).clone());
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["filename", "content"]));
    let filename = &schema["properties"]["filename"];
    assert_eq!(filename["description"], "File name inside the data root.");
    assert_eq!(filename["minLength"], 1);
    assert_eq!(filename["maxLength"], 128);
    assert_eq!(filename["pattern"], "^[A-Za-z0-9._-]+$");
    assert_eq!(schema["properties"]["content"]["maxLength"], 10000);
    assert_eq!(schema["properties"]["keep"]["minimum"], 1);
    assert_eq!(schema["properties"]["keep"]["maximum"], 5);

    let search = Value::Object((**set.definition("index.search").unwrap().input_schema()).clone());
    assert_eq!(
        search["properties"]["query"]["description"],
        "What to look for."
    );
    assert_eq!(search["properties"]["query"]["maxLength"], 200);
}

#[test]
fn structured_tools_publish_an_output_schema_and_text_tools_none() {
    let set = set();
    let output = set
        .definition("write_file")
        .unwrap()
        .output_schema()
        .expect("structured output");
    assert_eq!(
        output["properties"]["bytes_written"]["description"],
        "Bytes written."
    );
    assert!(
        set.definition("index.search")
            .unwrap()
            .output_schema()
            .is_none()
    );
    assert!(set.definition("health").unwrap().output_schema().is_none());
}

#[test]
fn the_rmcp_tool_publishes_scopes_under_meta() {
    let tool = set().definition("index.search").unwrap().to_rmcp_tool();
    let json = serde_json::to_value(&tool).unwrap();
    assert_eq!(json["name"], "index.search");
    assert_eq!(
        json["_meta"][SCOPES_META_KEY],
        json!(["index.read", "index.search"])
    );
    assert_eq!(json["annotations"]["readOnlyHint"], true);
    assert_eq!(json["inputSchema"]["type"], "object");
}

/// The listing is compared with a file checked in, so a change in order or content between runs (or builds)
/// fails here. Regenerate with `UPDATE_SNAPSHOTS=1` and read the diff.
#[test]
fn listing_is_byte_identical_run_to_run() {
    let first = listing(&set());
    assert_eq!(
        first,
        listing(&set()),
        "two tool sets in one run list the same bytes"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/definitions.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &first).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).expect("snapshot exists (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(first, expected);
}

#[test]
fn two_tools_with_one_name_do_not_build() {
    let err = ToolSet::builder(())
        .tool::<health>()
        .tool::<health>()
        .build()
        .unwrap_err();
    assert!(
        matches!(err, DefinitionError::DuplicateName(ref n) if n == "health"),
        "{err}"
    );
}

/// A chain round's: a 1.1 MB server id (it goes on every record) made records the verifier refuses as longer than
/// any record, and the sink could not find its own checkpoints after a restart. One that is empty, longer than 256
/// bytes or holds anything but printable ASCII (spaces within) does not build.
#[test]
fn a_server_id_too_long_or_empty_does_not_build() {
    for id in [
        String::new(),
        "x".repeat(257),
        "files\n".into(),
        "a\u{7}b".into(),
        // A second round's: taken, though no operator reads them as they are.
        "files\u{202e}1".into(),
        "files\u{200b}".into(),
        "\u{feff}files".into(),
        "   ".into(),
        " files".into(),
        "é".into(),
    ] {
        let err = ToolSet::builder(())
            .tool::<health>()
            .server_id(id.clone())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("server id"), "{id:?}: {err}");
    }
    for id in [
        "files-1".to_owned(),
        "files eu-west-1 #2".into(),
        "x".repeat(256),
    ] {
        let built = ToolSet::builder(())
            .tool::<health>()
            .server_id(id.clone())
            .build();
        assert!(built.is_ok(), "{id:?}");
    }
}

/// A copy mode.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Mode {
    /// Copy from a source.
    Copy {
        /// The source.
        src: String,
    },
    /// Start empty.
    Empty,
}

/// Arguments with a flattened enum.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct FlatArgs {
    /// The name.
    name: String,
    #[serde(flatten)]
    mode: Mode,
}

/// Makes a note.
#[secure_tool(scope = "notes.write")]
async fn flat(Args(args): Args<FlatArgs>) -> Result<String, ToolError> {
    Ok(match args.mode {
        Mode::Copy { src } => src,
        Mode::Empty => args.name,
    })
}

/// Review finding: a flattened enum puts `oneOf` at the schema's root; with `additionalProperties: false` beside it
/// no call was valid, and every call naming the enum's fields was refused `unknown argument`. Such a tool is
/// refused when the set is built, saying what to do.
#[test]
fn a_schema_composing_subschemas_at_its_root_is_refused_when_built() {
    let error = ToolSet::builder(()).tool::<flat>().build().unwrap_err();
    assert!(
        matches!(error, DefinitionError::InputSchema { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("flatten"), "{error}");
}

/// Reads a note.
#[secure_tool(scope = "notes.read", read_only)]
async fn read_note(
    /// The note.
    path: String,
    /// How to read it; no longer used.
    #[deprecated = "every note is read as text"]
    mode: Option<String>,
) -> String {
    let _ = mode;
    path
}

/// `#[deprecated]` on an argument marks its property `deprecated` in the input schema (rustc refuses it on a
/// function's parameter: it belongs to the argument, not to the function).
#[test]
fn a_deprecated_argument_is_deprecated_in_the_schema() {
    let set = ToolSet::builder(()).tool::<read_note>().build().unwrap();
    let schema = set.definition("read_note").unwrap().input_schema();
    assert_eq!(
        schema["properties"]["mode"]["deprecated"], true,
        "{schema:?}"
    );
    assert!(schema["properties"]["path"].get("deprecated").is_none());
}

/**
 * Reads a note, described in a block comment.
 *
 * Only notes under the root.
 */
#[secure_tool(scope = "notes.read", read_only)]
async fn read_block(path: String) -> String {
    path
}

#[doc = concat!("Writes ", "a note, described by a macro.")]
///
/// Its content is replaced.
#[secure_tool(scope = "notes.write")]
async fn write_concat(path: String) -> String {
    path
}

/** Lists the notes. */
#[secure_tool(scope = "notes.read", read_only)]
async fn list_block() -> String {
    String::new()
}

/// A description is the doc comment as rustdoc reads it: a block comment's leading `*` is not part of the text
/// (it was "* Reads a note..."), and a `#[doc = concat!(..)]` or `include_str!` is part of it (it was left out,
/// and with it the whole description).
#[test]
fn block_comments_and_doc_macros_make_the_description() {
    let set = ToolSet::builder(())
        .tool::<read_block>()
        .tool::<write_concat>()
        .tool::<list_block>()
        .build()
        .unwrap();
    let description = |name| set.definition(name).unwrap().description();
    assert_eq!(
        description("read_block"),
        Some("Reads a note, described in a block comment.\n\nOnly notes under the root.")
    );
    assert_eq!(
        description("write_concat"),
        Some("Writes a note, described by a macro.\n\nIts content is replaced.")
    );
    assert_eq!(description("list_block"), Some("Lists the notes."));
}
