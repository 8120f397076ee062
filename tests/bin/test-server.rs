//! A stdio server with a few secure tools, for the tests that drive a real process.

// rmcp marks sampling deprecated (SEP-2577); clients still offer it and the `summarize` tool tests it.
#![allow(deprecated)]

use secure_tools::rmcp::model::{
    CreateMessageRequestParams, ElicitRequestParams, ElicitationSchema, SamplingMessage,
};
use secure_tools::{
    ClientLog, Elicitation, Progress, Sampling, ToolError, ToolSet, secure_tool, task,
};

/// Echoes its text.
#[secure_tool(scope = "test.read", read_only)]
async fn echo(
    /// Text to echo.
    #[validate(length(max = 100))]
    text: String,
) -> Result<String, ToolError> {
    // A tool (or a library it calls) that prints: over stdio the line must not reach the protocol stream.
    if let Some(line) = text.strip_prefix("println:") {
        println!("{line}");
    }
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
    #[validate(range(max = 60000))]
    millis: u64,
) -> Result<String, ToolError> {
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    Ok("done".into())
}

/// Commits (its point of no return), then works on for `millis`, whatever the client says: a cancellation no
/// longer stops it.
#[secure_tool(scope = "test.write")]
async fn commit_then_wait(
    /// Milliseconds to work on after the commit.
    #[validate(range(max = 60000))]
    millis: u64,
    cx: secure_tools::CallContext,
) -> Result<String, ToolError> {
    if !cx.commit() {
        return Err(ToolError::internal("stopped before the commit"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    Ok("committed".into())
}

/// Hashes a secret on a blocking thread; `boom` makes that thread panic while holding it.
#[secure_tool(scope = "test.write", audit_redact = ["secret"])]
async fn crunch(
    /// The secret.
    #[validate(length(max = 1000))]
    secret: String,
) -> Result<String, ToolError> {
    let digest = task::spawn_blocking(move || {
        if secret.starts_with("boom") {
            panic!("crunching {secret} failed");
        }
        secret.len()
    })
    .await?;
    Ok(digest.to_string())
}

/// Holds its secret in a value that panics, quoting it, when dropped; then waits past its time limit, so that the
/// pipeline drops the handler's future (and the value) when the call times out.
#[secure_tool(scope = "test.write", audit_redact = ["secret"], timeout = "200ms")]
async fn linger(
    /// The secret.
    #[validate(length(max = 1000))]
    secret: String,
) -> Result<String, ToolError> {
    struct Loud(String);
    impl Drop for Loud {
        fn drop(&mut self) {
            panic!("dropping {} failed", self.0);
        }
    }
    let _held = Loud(secret);
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    Ok("never".into())
}

/// Works in three steps, reporting progress and logging each to the client.
#[secure_tool(scope = "test.read", read_only)]
async fn report(progress: Progress, log: ClientLog) -> Result<String, ToolError> {
    log.debug("starting").await;
    for step in 1..=3u32 {
        progress
            .report(f64::from(step), Some(3.0), Some(format!("step {step}")))
            .await;
        log.info(format!("step {step} done")).await;
    }
    Ok("reported".into())
}

/// A form asking `message`, with one required field: `confirm` (a boolean) or `name` (a string).
fn form(message: &str, field: &str) -> Result<ElicitRequestParams, ToolError> {
    let schema = ElicitationSchema::builder();
    let schema = if field == "name" {
        schema.required_string(field)
    } else {
        schema.required_bool(field)
    };
    Ok(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.into(),
        requested_schema: schema.build().map_err(ToolError::internal)?,
    })
}

/// Asks the user to confirm, through the client.
#[secure_tool(scope = "test.read")]
async fn confirm(elicitation: Elicitation) -> Result<String, ToolError> {
    let answer = elicitation.request(form("Go ahead?", "confirm")?).await?;
    Ok(format!(
        "{:?} {}",
        answer.action,
        answer.content.unwrap_or_default()
    ))
}

/// Asks the user two questions, one after the other: a name, then whether to go ahead. Not read-only: its
/// `call_started` record is written each round, before the handler asks.
#[secure_tool(scope = "test.write")]
async fn confirm_twice(elicitation: Elicitation) -> Result<String, ToolError> {
    let name = elicitation.request(form("Your name?", "name")?).await?;
    let go = elicitation.request(form("Go ahead?", "confirm")?).await?;
    Ok(format!(
        "{} {}",
        name.content.unwrap_or_default(),
        go.content.unwrap_or_default()
    ))
}

/// Asks the user two questions at once (`join!`): under the stateless revision both go out in one round.
#[secure_tool(scope = "test.read")]
async fn confirm_both(elicitation: Elicitation) -> Result<String, ToolError> {
    let (first, second) = tokio::join!(
        elicitation.request(form("First?", "confirm")?),
        elicitation.request(form("Second?", "confirm")?)
    );
    Ok(format!("{:?} {:?}", first?.action, second?.action))
}

/// Asks the user to confirm from a task of its own, which it awaits. The task says on stderr when its question
/// returns: with its call, even when the question was left open for the next round (a task only dropped, as the
/// runtime drops every task when the server exits, would not say it).
#[secure_tool(scope = "test.read")]
async fn confirm_in_task(elicitation: Elicitation) -> Result<String, ToolError> {
    let asked = task::spawn(async move {
        let answer = elicitation
            .request(form("Go ahead (from a task)?", "confirm")?)
            .await;
        eprintln!("confirm_in_task: its question returned");
        let answer = answer?;
        Ok::<_, ToolError>(format!("{:?}", answer.action))
    });
    asked.await.map_err(ToolError::internal)?
}

/// Asks the user from its argument rule: only a handler asks by rounds, so a rule under the stateless revision is
/// told at once that the client cannot be asked (instead of waiting for an answer no round brings).
#[secure_tool(scope = "test.read", authorize = confirm_first)]
async fn confirm_by_rule() -> Result<String, ToolError> {
    Ok("allowed".into())
}

async fn confirm_first(
    _: &secure_tools::ArgsOf<confirm_by_rule>,
    call: &secure_tools::guard::GuardCall<'_>,
) -> Result<(), ToolError> {
    let elicitation =
        <Elicitation as secure_tools::FromCallContext<()>>::from_call_context(call.context(), &());
    elicitation.request(form("Allowed?", "confirm")?).await?;
    Ok(())
}

/// Asks the client's model for a one-word summary.
#[secure_tool(scope = "test.read")]
async fn summarize(
    /// The text.
    #[validate(length(max = 200))]
    text: String,
    sampling: Sampling,
) -> Result<String, ToolError> {
    let params = CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(format!("Summarize: {text}"))],
        10,
    );
    let answer = sampling.create_message(params).await?;
    let content = serde_json::to_value(&answer.message.content).map_err(ToolError::internal)?;
    Ok(format!("{} said {content}", answer.model))
}

#[tokio::main]
async fn main() {
    // `TEST_SERVER_TRACE=1`: every `tracing` event of every crate, at every level, on stderr, as a user's own
    // subscriber at `trace` would get them.
    if std::env::var_os("TEST_SERVER_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_writer(std::io::stderr)
            .init();
    }
    // `test-server --http ADDR`: some of the same tools over streamable HTTP, unauthenticated and loopback only
    // (callers are anonymous, holding `MCP_SCOPES`), for the tests of what the HTTP transport hands the pipeline
    // and of SDK clients answering a tool's questions over it.
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, address] = args.as_slice()
        && flag == "--http"
    {
        serve_http(address).await;
        return;
    }
    let tools = ToolSet::builder(())
        .tool::<echo>()
        .tool::<store>()
        .tool::<slow>()
        .tool::<commit_then_wait>()
        .tool::<crunch>()
        .tool::<linger>()
        .tool::<report>()
        .tool::<confirm>()
        .tool::<confirm_twice>()
        .tool::<confirm_in_task>()
        .tool::<confirm_both>()
        .tool::<confirm_by_rule>()
        .tool::<summarize>();
    if let Err(err) = secure_tools::serve_stdio(tools).await {
        eprintln!("test-server: {err}");
        std::process::exit(1);
    }
}

async fn serve_http(address: &str) {
    use secure_tools::serve::{ServerArgs, Settings};
    let bind: std::net::SocketAddr = address.parse().expect("an address");
    assert!(bind.ip().is_loopback(), "test-server serves loopback only");
    // Everything else (audit log, server id, limits, HTTP timeouts, body limit) from the environment, as any
    // server reads it; `--http-insecure-no-auth` has no variable, so it is set here.
    let mut args = ServerArgs::from_env().expect("settings");
    args.http = Some(bind);
    args.http_insecure_no_auth = Some(true);
    let settings = Settings::from_args(args).await.expect("settings");
    let tools = ToolSet::builder(())
        .tool::<echo>()
        .tool::<store>()
        .tool::<slow>()
        .tool::<commit_then_wait>()
        .tool::<crunch>()
        .tool::<report>()
        .tool::<confirm>()
        .tool::<confirm_twice>()
        .tool::<summarize>();
    if let Err(err) = settings.serve(tools).await {
        eprintln!("test-server: {err}");
        std::process::exit(1);
    }
}
