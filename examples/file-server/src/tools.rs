//! The server's two tools.

use secure_tools::fs::{FileName, Root};
use secure_tools::text::neutralize;
use secure_tools::{CallContext, Rendered, State, ToolError, secure_tool, task};

/// A file's content, as read.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ReadOutcome {
    /// The file's name.
    pub name: String,
    /// The file's content, exactly as stored.
    pub content: String,
    /// The content's length in bytes.
    pub bytes: u64,
}

/// Whether a write made a new file.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteStatus {
    /// The file did not exist.
    Created,
    /// The file existed and its content was replaced.
    Replaced,
}

/// What a write did.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct WriteOutcome {
    /// The file's name.
    pub name: String,
    /// Bytes written, after line endings were normalised to `\n`.
    pub bytes_written: u64,
    /// Whether the file was created or replaced.
    pub status: WriteStatus,
}

/// Read a UTF-8 text file directly under the data root.
#[secure_tool(scope = "files.read", title = "Read file", read_only, idempotent)]
pub async fn read_file(
    /// Name of the file: ASCII letters, digits, `.`, `_` and `-`, not starting with a dot or a dash.
    filename: FileName,
    State(root): State<Root>,
) -> Result<Rendered<ReadOutcome>, ToolError> {
    // Read in place: a read is bounded by the size cap and never blocks on a special file, so it is cheaper than a
    // hand-off to the blocking pool. Writes, which sync to disk, are handed off.
    let read = root.read_text(&filename)?;
    Ok(Rendered {
        // Clients that show the text content see the file, with anything that could drive a terminal escaped.
        text: neutralize(&read.content),
        value: ReadOutcome {
            name: filename.as_str().to_owned(),
            content: read.content,
            bytes: read.bytes,
        },
    })
}

/// Write a UTF-8 text file directly under the data root, replacing it if it exists. The write is atomic: the file
/// holds either its old content or the new one, never a mix.
#[secure_tool(
    scope = "files.write",
    audit_redact = ["content"],
    title = "Write file",
    destructive,
    idempotent
)]
pub async fn write_file(
    /// Name of the file: ASCII letters, digits, `.`, `_` and `-`, not starting with a dot or a dash.
    filename: FileName,
    /// The new content: UTF-8 text; line endings become `\n`; control characters other than tab and newline, and
    /// the bidirectional embedding, override and isolate characters (U+202A to U+202E, U+2066 to U+2069), are
    /// refused.
    content: String,
    State(root): State<Root>,
    call: CallContext,
) -> Result<WriteOutcome, ToolError> {
    let name = filename.clone();
    // The write syncs to disk: off the event loop, on a thread whose panic stays an audited `panic` with its message
    // (which could quote the content) withheld. A blocking task runs on when the call is cancelled or times out:
    // it gives up before it replaces the file, or, past the call's point of no return, the call waits for it, so
    // the record's outcome stays true either way.
    let written =
        task::spawn_blocking(move || root.write_text_for_call(&name, &content, &call)).await??;
    Ok(WriteOutcome {
        name: filename.as_str().to_owned(),
        bytes_written: written.bytes_written,
        status: if written.created {
            WriteStatus::Created
        } else {
            WriteStatus::Replaced
        },
    })
}

#[cfg(test)]
mod tests {
    /// The definitions the server lists are the reviewed ones in `tools.lock.json`.
    #[test]
    fn tool_definitions_match_the_reviewed_lock() {
        let dir = tempfile::tempdir().unwrap();
        let root = secure_tools::fs::Root::open(dir.path(), Default::default()).unwrap();
        let tools = secure_tools::ToolSet::builder(root)
            .tool::<super::read_file>()
            .tool::<super::write_file>()
            .build()
            .unwrap();
        secure_tools::testing::assert_tools_locked(
            &tools.listed_tools(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/tools.lock.json"),
        );
    }
}
