//! A stdio server with a few secure tools, for the tests that drive a real process.

use secure_tools::{ToolError, ToolSet, secure_tool};

/// Echoes its text.
#[secure_tool(scope = "test.read", read_only)]
async fn echo(
    /// Text to echo.
    #[validate(length(max = 100))]
    text: String,
) -> Result<String, ToolError> {
    Ok(text)
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Stored {
    /// Bytes stored.
    bytes: usize,
}

/// Stores a secret.
#[secure_tool(scope = "test.write", audit_redact = ["secret"])]
async fn store(
    /// Name of the secret.
    #[validate(length(min = 1, max = 32))]
    name: String,
    /// The secret.
    #[validate(length(max = 1000))]
    secret: String,
) -> Result<Stored, ToolError> {
    if name == "panic" {
        panic!("refusing to store {secret}");
    }
    Ok(Stored {
        bytes: secret.len(),
    })
}

/// Takes a while, for tests of shutdown with calls in flight.
#[secure_tool(scope = "test.read")]
async fn slow(
    /// Milliseconds to wait.
    #[validate(range(max = 5000))]
    millis: u64,
) -> Result<String, ToolError> {
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    Ok("done".into())
}

#[tokio::main]
async fn main() {
    let tools = ToolSet::builder(())
        .tool::<echo>()
        .tool::<store>()
        .tool::<slow>();
    if let Err(err) = secure_tools::serve_stdio(tools).await {
        eprintln!("test-server: {err}");
        std::process::exit(1);
    }
}
