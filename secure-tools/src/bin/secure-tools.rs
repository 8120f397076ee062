//! `secure-tools`: pin, check and watch the tool definitions of any MCP server, over stdio (`-- COMMAND ARGS...`,
//! the server started as a child) or streamable HTTP (`--url URL`, a bearer token read from a variable).
//!
//! ```text
//! secure-tools pin   --lock tools.lock.json -- secure-file-server --data-root ./data
//! secure-tools check --lock tools.lock.json [--json] --url http://127.0.0.1:8080/mcp
//! secure-tools watch --lock tools.lock.json --interval 30s [--hook CMD] -- COMMAND ARGS...
//! secure-tools audit verify [--key-file KEY] audit.jsonl.1 audit.jsonl
//! ```
//!
//! Exit status: 0 unchanged (or pinned, or a watch that ended), 1 changed, 2 anything else (no lockfile, the
//! server unreachable or too slow, a listing refused, a bad flag, a stdout that cannot be written: silently when
//! its reader went away, as with `check --json | head -c1`). `audit verify` also exits 3: an intact chain with
//! records no checkpoint of the key vouches for (see its help).
//!
//! The server may be hostile: connecting and listing are bounded in time together (`--timeout`), and a listing
//! in pages (at most [`MAX_PAGES`] and [`MAX_TOOLS`], and no cursor twice).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use clap::{Args, Parser, Subcommand};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::{ClientHandler, ServiceExt};
use secure_tools::audit::Timestamp;
use secure_tools::integrity::{Changes, ToolsLock, visible_line};
use secure_tools::text::{ascii_json, ascii_json_len, json_len};

#[path = "secure-tools/child.rs"]
mod child;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Pin, check and watch the tool definitions an MCP server lists, against a reviewed lockfile.
#[derive(Debug, Parser)]
#[command(name = "secure-tools", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the lockfile from the definitions the server lists now.
    Pin {
        #[command(flatten)]
        target: Target,
    },
    /// Compare the definitions the server lists with the lockfile: exit 0 when nothing changed, 1 with a report
    /// per tool otherwise.
    Check {
        #[command(flatten)]
        target: Target,
        /// The report as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Audit files.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Poll the server (and re-list at once on `notifications/tools/list_changed`), printing one JSON alert line on
    /// stdout per change against the lockfile and running `--hook` with the alert on its stdin. Stops on SIGINT or
    /// SIGTERM, or after `--max-polls`.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Time between polls (`30s`, `5m`, `500ms`).
        #[arg(long, default_value = "30s")]
        interval: String,
        /// A shell command run for each alert, the alert JSON on its stdin, its stdout sent to stderr (stdout
        /// carries the alerts); stopped, with every process it started, after `--hook-timeout`.
        #[arg(long)]
        hook: Option<String>,
        /// How long the hook may take, from its start to its end (`30s`, `2m`).
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
        hook_timeout: Duration,
        /// Stop after this many polls (1 or more).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_polls: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the chain of an audit file, or of a rotated set given oldest first: exit 0 when intact, 1 naming the
    /// first record altered, removed or out of place (by `seq`), 2 when it cannot be read, 3 intact with records
    /// no checkpoint vouches for (with --checkpoint-key; see --help). A last line with no
    /// newline that is not a record (one still being written to a live file, or a write cut short) is reported
    /// as incomplete and not checked, exit 0: nothing vouches for it, as for records cut from the end.
    ///
    /// Exit 3 (with --checkpoint-key): the chain is intact, but a server resuming it said (a `chain_resumed`
    /// record, signed by a later checkpoint) that records before it are vouched for by no checkpoint of the key,
    /// listed by `seq`: records a crash left unsigned, or records appended to the file while the server was down.
    /// Compare them with a copy kept elsewhere (a collector's) before trusting them.
    Verify {
        /// The files, oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The file holding the key the chain is sealed with (`MCP_AUDIT_CHAIN_KEY` of the server).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// The file holding the public key checkpoints are signed with (`FILE.pub` of `audit keygen`): every
        /// checkpoint must verify, and there must be one.
        #[arg(long, value_name = "FILE")]
        checkpoint_key: Option<PathBuf>,
        /// The first file may start mid-chain (the oldest files of a rotated set were removed on purpose): without
        /// it, files that do not start at record 1 are reported, since a head cut off looks just like that.
        #[arg(long)]
        mid_chain: bool,
        /// The result as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 key for signed checkpoints: the private key (hex) into FILE, readable by its owner only,
    /// and the public key into FILE.pub (also printed).
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The lockfile.
    #[arg(long, value_name = "FILE")]
    lock: PathBuf,
    /// The server's streamable HTTP endpoint (`http://` or `https://`, trusting the system's roots and
    /// `SSL_CERT_FILE`); without it, the server is the command after `--` (not both: a red team found the command
    /// silently ignored).
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    url: Option<String>,
    /// The variable holding the bearer token sent to `--url` (never a flag, so it stays out of process lists).
    #[arg(long, value_name = "VARIABLE", default_value = "MCP_BEARER_TOKEN")]
    token_env: String,
    /// How long connecting and listing may take together (`30s`, `2m`): a server that has not listed its tools
    /// by then is unreachable.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    timeout: Duration,
    /// The server's command and arguments (stdio).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl Target {
    /// The server, as messages name it.
    fn name(&self) -> &str {
        match (&self.url, self.command.first()) {
            (Some(url), _) => url,
            (None, Some(program)) => program,
            (None, None) => "the server",
        }
    }

    /// What a connection or listing that ran past the deadline reports.
    fn late(&self) -> String {
        format!("{}: no answer within {:?}", self.name(), self.timeout)
    }
}

/// A duration flag: `30s`, `500ms`, `2m`; not zero.
fn duration(text: &str) -> Result<Duration, String> {
    match secure_tools::call::parse_duration(text)? {
        zero if zero.is_zero() => Err("expected more than zero".into()),
        duration => Ok(duration),
    }
}

/// The most pages of tools a listing may take, and the most tools: a server that sends a new cursor with every
/// page would otherwise be listed until memory runs out. (Each page is one message, which rmcp holds to 16 MiB
/// over stdio.)
const MAX_PAGES: usize = 100;
const MAX_TOOLS: usize = 10_000;

/// How long closing a connection may take (rmcp gives a child server 3 s to leave after its input closes, then 3 s
/// after SIGTERM); past it the connection is dropped, which kills a child.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client: wakes the watcher when the server says its tool list changed.
#[derive(Clone, Default)]
struct Client {
    list_changed: Arc<Notify>,
}

impl ClientHandler for Client {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed.notify_one();
    }

    fn get_info(&self) -> ClientConfig {
        // 2025-11-25: list-changed notifications arrive unsubscribed.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("secure-tools", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// A connection to the server; over its stdio, with what the transport kept of its listings.
struct Connection {
    running: RunningService<RoleClient, Client>,
    stash: Option<Arc<child::Stash>>,
}

async fn connect(target: &Target, client: Client) -> Result<Connection, String> {
    let connection = connect_uncached(target, client).await?;
    // rmcp's client keeps a listing for the time to live its server gives (up to a day) and serves it again, stale,
    // when a later listing fails: a watcher's polls would then answer themselves, and a server would choose how long
    // its changes, or its failures, go unseen (red-team finding). Every listing asks the server.
    connection
        .running
        .peer()
        .set_response_cache_config(rmcp::service::ClientCacheConfig::disabled())
        .await;
    Ok(connection)
}

async fn connect_uncached(target: &Target, client: Client) -> Result<Connection, String> {
    if let Some(url) = &target.url {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(format!(
                "--url {}: expected an http:// or https:// URL",
                visible_line(url)
            ));
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
        let token = std::env::var(&target.token_env)
            .ok()
            .filter(|token| !token.trim().is_empty());
        if let Some(token) = &token {
            config = config.auth_header(token.trim().to_owned());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        return client
            .serve(transport)
            .await
            .map(|running| Connection {
                running,
                stash: None,
            })
            .map_err(|e| {
                // Whether a token was sent at all: without one, a refusal reads the same as for a bad one.
                let sent = if token.is_some() {
                    String::new()
                } else {
                    format!(
                        " (no bearer token was sent: {} is unset or empty)",
                        visible_line(&target.token_env)
                    )
                };
                format!("{url}: {}{sent}", without_type_names(&e.to_string()))
            });
    }
    let Some((program, args)) = target.command.split_first() else {
        return Err("name the server: --url URL, or -- COMMAND ARGS...".into());
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    // The server's standard error is shown on ours, prefixed and escaped: why a server failed to start shows there.
    // The transport holds the server to bounds rmcp's own child transport does not (see `child`).
    let (transport, stash) =
        child::ChildTransport::spawn(command).map_err(|e| format!("{program}: {e}"))?;
    let failed = stash.clone();
    client
        .serve(transport)
        .await
        .map(|running| Connection {
            running,
            stash: Some(stash),
        })
        .map_err(|e| match failed.failure() {
            Some(why) => format!("{program}: {why}"),
            None => format!("{program}: {e}"),
        })
}

/// rmcp's transport errors name the transport's Rust type (`Transport [rmcp::transport::worker::WorkerTransport<...>]
/// error: Auth required`), which says nothing to a reader: a bracketed part that starts like a Rust path (an
/// identifier and `::`) is left out, brackets inside it matched; anything else (`[::1]:8080`) stays.
fn without_type_names(message: &str) -> String {
    let starts_like_a_path = |inside: &str| {
        let ident = inside
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inside.len());
        ident > 0
            && !inside.starts_with(|c: char| c.is_ascii_digit())
            && inside[ident..].starts_with("::")
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(" [") {
        // The matching `]`: brackets balanced from the one at `open + 1`.
        let mut depth = 0usize;
        let close = rest[open + 1..].char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(open + 1 + i);
                    }
                }
                _ => {}
            }
            None
        });
        let Some(close) = close else {
            break;
        };
        out.push_str(&rest[..open]);
        if !starts_like_a_path(&rest[open + 2..close]) {
            out.push_str(&rest[open..=close]);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// What a server listed: its tools, and whether a page published a toolset digest that is not its tools'.
struct Listed {
    tools: Vec<Value>,
    toolset_digest_mismatch: bool,
}

/// Every page of the server's tools, one page at a time (rmcp's `list_all_tools` follows cursors without end). A
/// listing of the caller's tools only (a secure server with `--list-tools callable` says so) is refused: a lock
/// holds every tool, and such a list would show the others removed, or pin a lock the server refuses at start.
async fn list(connection: &Connection) -> Result<Listed, String> {
    use std::hash::BuildHasher;
    // Cursors seen, by hash: a cursor may be as long as a message, and a false match only refuses a listing.
    let hasher = std::collections::hash_map::RandomState::new();
    let mut cursors = std::collections::HashSet::new();
    let mut tools = Vec::new();
    let mut toolset_digest_mismatch = false;
    let mut params = None;
    // The listing's JSON objects and arrays, and values, over its pages (as the stdio transport counts them).
    let (mut containers, mut values) = (0usize, 0usize);
    // And its bytes as JSON: within the counts, 100 pages of one tool of a 16 MiB description took 3.3 GB to list
    // (red-team finding); a listing larger than a lock may be could not be pinned anyway.
    let mut bytes = 0usize;
    for _ in 0..MAX_PAGES {
        let page = connection.running.list_tools(params).await.map_err(|e| {
            match connection.stash.as_ref().and_then(|stash| stash.failure()) {
                Some(why) => format!("tools/list: {why}"),
                None => format!("tools/list: {e}"),
            }
        })?;
        let meta = page.meta.as_ref().map(|meta| Value::Object(meta.0.clone()));
        if secure_tools::integrity::lists_callable_only(meta.as_ref()) {
            return Err(
                "tools/list: the server lists only the tools this caller may call (`--list-tools callable`), \
                 while a lock holds every tool: pin and check a server listing all (`--list-tools all`, the \
                 default)"
                    .into(),
            );
        }
        // The tools as the server sent them, over stdio: every member of their definitions, not only those rmcp's
        // `Tool` models (over HTTP, as rmcp read them).
        let raw = connection
            .stash
            .as_ref()
            .and_then(|stash| stash.take_page())
            .and_then(|mut raw| {
                containers += raw.containers;
                values += raw.values;
                match raw.result.get_mut("tools").map(Value::take) {
                    Some(Value::Array(tools)) => Some(tools),
                    _ => None,
                }
            });
        if containers > secure_tools::integrity::MAX_LOCK_CONTAINERS
            || values > secure_tools::integrity::MAX_LOCK_VALUES
        {
            return Err(format!(
                "tools/list: the server's listing holds more than {} JSON objects and arrays or {} values, more \
                 than a lock may hold",
                secure_tools::integrity::MAX_LOCK_CONTAINERS,
                secure_tools::integrity::MAX_LOCK_VALUES
            ));
        }
        let typed: Vec<Value> = page
            .tools
            .iter()
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .collect();
        bytes += raw
            .as_ref()
            .unwrap_or(&typed)
            .iter()
            .map(json_len)
            .sum::<usize>();
        if bytes as u64 > secure_tools::integrity::MAX_LOCK_FILE_BYTES {
            return Err(format!(
                "tools/list: the server's listing holds more bytes than a lock may hold ({} MiB)",
                secure_tools::integrity::MAX_LOCK_FILE_BYTES >> 20
            ));
        }
        // What was kept must be what rmcp read, as rmcp reads it: else the lock could hold one listing while clients
        // are given another (red-team finding, against a first version that kept a line rmcp did not take).
        if let Some(raw) = &raw {
            let read_alike = raw.len() == typed.len()
                && raw.iter().zip(&typed).all(|(raw, typed)| {
                    <rmcp::model::Tool as serde::Deserialize>::deserialize(raw)
                        .ok()
                        .and_then(|tool| serde_json::to_value(tool).ok())
                        .as_ref()
                        == Some(typed)
                });
            if !read_alike {
                return Err(
                    "tools/list: the server's answer was not read alike twice (is it answering ambiguously?)"
                        .into(),
                );
            }
        }
        // Over stdio the answer kept is the one to lock: none kept (an answer rmcp took and the transport did not) is
        // no listing (red-team finding: the fallback to rmcp's reading dropped the members it does not model).
        if connection.stash.is_some() && raw.is_none() {
            return Err("tools/list: the server's answer was not kept as it was sent".into());
        }
        let page_tools: Vec<Value> = raw.unwrap_or(typed);
        toolset_digest_mismatch |=
            secure_tools::integrity::toolset_digest_mismatch(&page_tools, meta.as_ref());
        tools.extend(page_tools);
        if tools.len() > MAX_TOOLS {
            return Err(format!(
                "tools/list: the server lists more than {MAX_TOOLS} tools"
            ));
        }
        let Some(cursor) = page.next_cursor else {
            return Ok(Listed {
                tools,
                toolset_digest_mismatch,
            });
        };
        if !cursors.insert(hasher.hash_one(&cursor)) {
            return Err(
                "tools/list: the server sent a cursor it gave before (its pages would not end)"
                    .into(),
            );
        }
        params = Some(rmcp::model::PaginatedRequestParams::default().with_cursor(Some(cursor)));
    }
    Err(format!(
        "tools/list: the server lists more than {MAX_PAGES} pages"
    ))
}

/// Connects, lists and closes, the first two by `deadline`.
async fn listed(target: &Target) -> Result<Listed, String> {
    let deadline = Instant::now() + target.timeout;
    let connection = timeout_at(deadline, connect(target, Client::default()))
        .await
        .map_err(|_| target.late())??;
    let tools = timeout_at(deadline, list(&connection))
        .await
        .unwrap_or_else(|_| Err(target.late()));
    close(connection).await;
    tools
}

/// Closes a connection, within [`CLOSE_TIMEOUT`].
async fn close(connection: Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.running.cancel()).await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("secure-tools: {error}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run(cli.command));
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run(command: Command) -> u8 {
    let result = match command {
        Command::Pin { target } => pin(&target).await,
        // With `--json`, a check that could not be made says so on stdout too, as JSON: a machine reading the report
        // gets one either way.
        Command::Check { target, json } => match check(&target, json).await {
            Err(message) if json && !message.is_empty() => {
                let _ = write_stdout(&format!(
                    "{}\n",
                    ascii_json(
                        &json!({"error": cut_for_alert(&message, ALERT_BOUNDS[0].string)})
                            .to_string()
                    )
                ));
                Err(message)
            }
            other => other,
        },
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    key_file,
                    checkpoint_key,
                    mid_chain,
                    json,
                },
        } => verify(
            &files,
            key_file.as_deref(),
            checkpoint_key.as_deref(),
            mid_chain,
            json,
        ),
        Command::Audit {
            command: AuditCommand::Keygen { out },
        } => keygen(&out),
        Command::Watch {
            target,
            interval,
            hook,
            hook_timeout,
            max_polls,
        } => match secure_tools::call::parse_duration(&interval) {
            Ok(interval) if !interval.is_zero() => {
                let hook = hook.as_deref().map(|command| Hook {
                    command,
                    timeout: hook_timeout,
                });
                watch(&target, interval, hook, max_polls).await
            }
            _ => Err(format!(
                "--interval: expected a duration such as 30s; got `{}`",
                interval.escape_debug()
            )),
        },
    };
    result.unwrap_or_else(|message| {
        if message.is_empty() {
            // Nothing to say (see `write_stdout`).
            return 2;
        }
        // Messages carry what the server chose (names, its errors' text): escaped, so that they cannot forge a
        // line or send the terminal a control sequence, and cut as an alert's strings are (a red team's server
        // answered with a 15 MB error, printed whole).
        eprintln!(
            "secure-tools: {}",
            visible_line(&cut_for_alert(&message, ALERT_BOUNDS[0].string))
        );
        2
    })
}

/// Writes `text` to stdout. A stdout that cannot be written is an error (exit 2: a report that did not reach its
/// reader is no result); when its reader went away (a broken pipe) a silent one, an empty message, since the
/// reader is gone and the user closed it on purpose, as with `head`.
fn write_stdout(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(String::new()),
        Err(error) => Err(format!("stdout: {error}")),
    }
}

fn verify(
    files: &[PathBuf],
    key_file: Option<&std::path::Path>,
    checkpoint_key: Option<&std::path::Path>,
    mid_chain: bool,
    json: bool,
) -> Result<u8, String> {
    use secure_tools::audit::{ChainKey, chain};
    // Named by the option, and the file (operator trial finding: a missing key file was told without the option).
    let named = |option: &str, path: &std::path::Path, error: std::io::Error| {
        let error = error.to_string();
        let shown = path.display().to_string();
        if error.contains(&shown) {
            format!("{option}: {error}")
        } else {
            format!("{option} {shown}: {error}")
        }
    };
    let key = key_file
        .map(|path| ChainKey::read(path).map_err(|e| named("--key-file", path, e)))
        .transpose()?;
    let public = checkpoint_key
        .map(|path| {
            chain::CheckpointPublicKey::read(path).map_err(|e| named("--checkpoint-key", path, e))
        })
        .transpose()?;
    if let (Some(key), Some(public)) = (&key, &public) {
        key.refuse_reuse_of(None, public)
            .map_err(|e| format!("--key-file: {e}"))?;
    }
    let check = if mid_chain {
        chain::verify_mid_chain
    } else {
        chain::verify
    };
    let checked = check(files, key.as_ref(), public.as_ref()).map_err(|e| e.to_string())?;
    // A checkpoint that does not verify, when the file given read as a private key has a public half that verifies
    // the files (operator trial finding: a private key copied without the `FILE.pub` beside it made genuine
    // checkpoints read as forged): a note that says so. Still a problem, exit 1: a public key kept under a name
    // without `.pub` reads as a private key too, and a forger who read it signed with it so (red-team finding: the
    // verifier took the forgery for the operator's slip, exit 2, which monitoring reads as a setup problem).
    // (Its checkpoint found after a line that is not a record too: a second round's blank line first hid the note.)
    let bad_checkpoint = |checked: &chain::Verification| {
        [&checked.problem, &checked.later]
            .iter()
            .any(|problem| matches!(problem, Some(chain::Problem::BadCheckpoint { .. })))
    };
    if let Some(path) = checkpoint_key
        && bad_checkpoint(&checked)
        && let Ok(private) = chain::CheckpointKey::read(path)
        && check(files, key.as_ref(), Some(&private.public_key())).is_ok_and(|derived| {
            !bad_checkpoint(&derived)
                && !matches!(derived.later, Some(chain::Problem::NoCheckpoint))
                && !matches!(derived.problem, Some(chain::Problem::NoCheckpoint))
        })
    {
        eprintln!(
            "secure-tools: --checkpoint-key {}: the checkpoints verify with the key whose private half is this \
             file's content. If it is your private key, verify with its public half (the FILE.pub `secure-tools \
             audit keygen --out FILE` wrote) and keep the private key on the server; if it is the public key, whoever \
             signed these checkpoints read it and signed with it as a private key: the files are forged.",
            visible_line(&path.display().to_string())
        );
    }
    if json {
        write_stdout(&format!("{}\n", ascii_json(&json!(checked).to_string())))?;
    } else {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        // What the chain is, where no problem stopped the check: its records, its checkpoints, how it ends.
        let summary = format!(
            "{}; {}; {}{}",
            match (checked.first_seq, checked.last_seq) {
                (Some(first), Some(last)) => format!(
                    "{}, numbered {first} to {last}",
                    plural(checked.records, "record", "records")
                ),
                _ => "no records".to_owned(),
            },
            plural(checked.checkpoints, "checkpoint", "checkpoints"),
            if public.is_none() {
                "checkpoints not verified (no --checkpoint-key): a cut tail would not show".to_owned()
            } else if checked.ends_clean {
                "ends with the signed checkpoint of a clean stop".to_owned()
            } else {
                format!(
                    "{} after the last checkpoint, vouched for by none, and no clean stop at the end (records \
                     cut there would not show; a server still running, or one that crashed, ends so too)",
                    plural(checked.unsigned_tail, "record", "records")
                )
            },
            checked.incomplete.as_ref().map_or_else(String::new, |at| format!(
                "; the last line ({}:{}) is incomplete: a record still being written, or a write cut short; not \
                 checked",
                at.file, at.line
            )),
        );
        // Past lines that are not records the chain was checked on to its end, unless a problem stopped it there.
        let checked_through = match &checked.problem {
            None => true,
            Some(chain::Problem::NotARecord { .. }) => checked.later.is_none(),
            Some(_) => false,
        };
        match &checked.problem {
            None => write_stdout(&format!("intact: {summary}\n"))?,
            // From the first record on, a keyed chain that does not verify is what another key looks like too (a
            // red team's wrong key read as tampering).
            Some(problem @ chain::Problem::Altered { .. })
                if key.is_some() && checked.records == 0 =>
            {
                write_stdout(&format!(
                    "{problem}; the first record checked fails, which is also what a chain key other than its own \
                     gives: check --key-file\n"
                ))?
            }
            Some(problem) => write_stdout(&format!("{problem}\n"))?,
        }
        // Past any other first problem, the numbering was checked on: a record removed after it (a chain round's
        // decoy, a copy of an earlier record, hid a removal).
        if let (Some(problem), Some(later)) = (&checked.problem, &checked.later)
            && !matches!(problem, chain::Problem::NotARecord { .. })
        {
            write_stdout(&format!("and after it: {later}\n"))?;
        }
        // Past a line that is not a record, the chain was checked on: how many such lines, and what it found.
        if matches!(checked.problem, Some(chain::Problem::NotARecord { .. })) {
            if checked.strays > 1 {
                let listed: Vec<String> = checked
                    .stray_lines
                    .iter()
                    .skip(1)
                    .map(|at| format!("{}:{}", at.file, at.line))
                    .collect();
                let unlisted = (checked.strays - 1).saturating_sub(listed.len() as u64);
                write_stdout(&format!(
                    "and {} more {}: {}{}\n",
                    checked.strays - 1,
                    if checked.strays == 2 {
                        "line that is not a record of the chain"
                    } else {
                        "lines that are not records of the chain"
                    },
                    listed.join(", "),
                    if unlisted > 0 {
                        format!(" and {unlisted} more")
                    } else {
                        String::new()
                    }
                ))?;
            }
            match &checked.later {
                Some(later) => write_stdout(&format!("and after it: {later}\n"))?,
                None => write_stdout(&format!(
                    "past those lines, the chain checked on from the record before each: {summary}\n"
                ))?,
            }
        }
        if checked_through {
            let mut warnings = String::new();
            for cut in &checked.lines_cut {
                warnings.push_str(&format!(
                    "note: at record {} ({}:{}), a restarting server cut off an incomplete last line of {} bytes{} \
                     (a write cut short by a crash or a power loss; it was no record), naming its SHA-256 there\n",
                    cut.seq,
                    cut.file,
                    cut.line,
                    cut.bytes,
                    cut.from
                        .as_ref()
                        .map_or_else(String::new, |from| format!(" from {from}"))
                ));
            }
            for range in &checked.unvouched {
                let records = if range.from == range.to {
                    format!("record {}", range.from)
                } else {
                    format!("records {} to {}", range.from, range.to)
                };
                // With no checkpoint before them, nothing in the files ever vouched for them: a file forged whole (or
                // copied from elsewhere) before a restart reads so too (red-team finding: it read as a crash's).
                if range.checkpoint.is_none() {
                    warnings.push_str(&format!(
                        "warning: {records} {} not vouched for, and no checkpoint of this key precedes them: the \
                         server that resumed the chain at record {} ({}:{}) found them in a file none of its \
                         checkpoints signed; nothing in the files vouches for them (a server that crashed before \
                         its first checkpoint leaves them so, and a file replaced before that restart, forged or \
                         copied from elsewhere, reads so too)\n",
                        if range.from == range.to { "is" } else { "are" },
                        range.seq,
                        range.file,
                        range.line,
                    ));
                    continue;
                }
                warnings.push_str(&format!(
                    "warning: {records} {} not vouched for by a checkpoint of this key: the server that \
                     resumed the chain at record {} ({}:{}) found {} after {}; a crash leaves its last records so, \
                     and so do records appended while the server was down\n",
                    if range.from == range.to { "is" } else { "are" },
                    range.seq,
                    range.file,
                    range.line,
                    if range.from == range.to { "it" } else { "them" },
                    range.checkpoint.map_or_else(
                        || "no checkpoint of this key".to_owned(),
                        |seq| format!("its last checkpoint (record {seq})")
                    ),
                ));
            }
            let unlisted = checked.unvouched_ranges - checked.unvouched.len() as u64;
            if unlisted > 0 {
                warnings.push_str(&format!(
                    "warning: and {unlisted} more such ranges, not listed\n"
                ));
            }
            write_stdout(&warnings)?;
        }
    }
    Ok(if checked.problem.is_some() {
        1
    } else if checked.unvouched_ranges > 0 {
        3
    } else {
        0
    })
}

fn keygen(out: &std::path::Path) -> Result<u8, String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let key = secure_tools::audit::CheckpointKey::from_seed(seed);
    let mut public = out.as_os_str().to_owned();
    public.push(".pub");
    if std::fs::symlink_metadata(&public).is_ok() {
        return Err(format!(
            "{} exists: keygen writes a new key pair and overwrites neither half",
            PathBuf::from(&public).display()
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    // Never over another key's public half: a verifier holding it would then refuse that key's checkpoints.
    let written = writeln!(file, "{}", key.seed_hex())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&public)
                .and_then(|mut file| writeln!(file, "{}", key.public_hex()))
                .map_err(|e| format!("{}: {e}", PathBuf::from(&public).display()))
        });
    if let Err(error) = written {
        // A private key without its public half would be a key pair half made: neither is left.
        return Err(match std::fs::remove_file(out) {
            Ok(()) => format!("{error}; {} removed", out.display()),
            Err(e) => format!("{error}; {} not removed: {e}", out.display()),
        });
    }
    write_stdout(&format!("{}\n", key.public_hex()))?;
    Ok(0)
}

async fn pin(target: &Target) -> Result<u8, String> {
    let Listed {
        tools,
        toolset_digest_mismatch,
    } = listed(target).await?;
    let lock = ToolsLock::from_listed(tools.clone());
    let listed_now = lock.compare_listed(&tools);
    if !listed_now.duplicated.is_empty() {
        return Err(format!(
            "the server lists {} more than once: which definition to pin is not for the lock to guess",
            listed_now
                .duplicated
                .iter()
                .map(|name| visible_line(name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mismatched = listed_now.digest_mismatch;
    lock.write(&target.lock).map_err(|e| e.to_string())?;
    eprintln!(
        "secure-tools: pinned {} {} to {} (toolset {})",
        lock.tools.len(),
        if lock.tools.len() == 1 {
            "tool"
        } else {
            "tools"
        },
        target.lock.display(),
        lock.toolset
    );
    if toolset_digest_mismatch {
        eprintln!(
            "secure-tools: warning: the server publishes a toolset digest that is not its tools'"
        );
    }
    for mismatch in mismatched {
        eprintln!(
            "secure-tools: warning: {} publishes a digest that is not its definition's: {}",
            visible_line(&mismatch.tool),
            visible_line(&cut_for_alert(
                &mismatch.published.to_string(),
                ALERT_BOUNDS[0].string
            ))
        );
    }
    Ok(0)
}

async fn check(target: &Target, json: bool) -> Result<u8, String> {
    let lock = ToolsLock::read(&target.lock).map_err(|e| e.to_string())?;
    let listed = listed(target).await?;
    let mut changes = lock.compare_listed(&listed.tools);
    changes.toolset_digest_mismatch = listed.toolset_digest_mismatch;
    if json {
        // The path as text, lossily: JSON strings are Unicode, a path need not be.
        let report = json!({"unchanged": changes.is_empty(), "lock": target.lock.to_string_lossy(), "changes": changes});
        write_stdout(&format!("{}\n", ascii_json(&report.to_string())))?;
    } else {
        write_stdout(&changes.to_string())?;
    }
    Ok(if changes.is_empty() { 0 } else { 1 })
}

/// The hook of a watch.
#[derive(Clone, Copy)]
struct Hook<'a> {
    command: &'a str,
    timeout: Duration,
}

/// How an alert's values are cut: the most bytes of a string, the most items of an array or members of an object,
/// and the deepest nesting; past them an alert says how much it left out (`check --json` gives everything). A
/// hostile server's definitions would otherwise make each alert, and each hook's input, as large as its listing
/// (red-team finding: 15.7 MB alerts, one a second).
struct AlertBounds {
    string: usize,
    items: usize,
    depth: usize,
}

/// The bounds tried in turn, until an alert fits [`ALERT_MAX_BYTES`]: the first keeps a value's start and end (2 KiB
/// each), the next ones less. Bounds on each value alone multiply across nesting (a red team's 100 tools of 100
/// changed properties each made alerts of 81 MB).
const ALERT_BOUNDS: [AlertBounds; 3] = [
    AlertBounds {
        string: 4096,
        items: 100,
        depth: 16,
    },
    AlertBounds {
        string: 1024,
        items: 30,
        depth: 12,
    },
    AlertBounds {
        string: 256,
        items: 10,
        depth: 8,
    },
];

/// The most bytes of an alert's line: past it even with the tightest bounds, the alert says the report was too
/// large to show and that `check --json` gives it.
const ALERT_MAX_BYTES: usize = 1 << 20;

/// `text` within `max` bytes: its start and its end, what is between counted (an instruction appended far into a
/// description was in the part a cut from the start left out: red-team finding).
fn cut_for_alert(text: &str, max: usize) -> String {
    secure_tools::text::cut_middle(text, max, "")
}

/// `value` within `bounds`.
fn bounded_by(value: &Value, depth: usize, bounds: &AlertBounds) -> Value {
    match value {
        Value::String(text) => Value::String(cut_for_alert(text, bounds.string)),
        Value::Array(_) | Value::Object(_) if depth >= bounds.depth => {
            Value::String("... (nested deeper)".to_owned())
        }
        Value::Array(items) => {
            let mut kept: Vec<Value> = items
                .iter()
                .take(bounds.items)
                .map(|item| bounded_by(item, depth + 1, bounds))
                .collect();
            if items.len() > bounds.items {
                kept.push(Value::String(format!(
                    "... ({} more)",
                    items.len() - bounds.items
                )));
            }
            Value::Array(kept)
        }
        Value::Object(members) => {
            let mut kept: serde_json::Map<String, Value> = members
                .iter()
                .take(bounds.items)
                .map(|(key, member)| {
                    (
                        cut_for_alert(key, bounds.string),
                        bounded_by(member, depth + 1, bounds),
                    )
                })
                .collect();
            if members.len() > bounds.items {
                kept.insert(
                    "...".to_owned(),
                    Value::String(format!("{} members more", members.len() - bounds.items)),
                );
            }
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

/// `value` within the alerts' bounds: the first of [`ALERT_BOUNDS`] under which it fits `max` bytes, or else a note
/// that it did not.
fn bounded_for_alert(value: &Value, max: usize) -> Value {
    for bounds in &ALERT_BOUNDS {
        let bounded = bounded_by(value, 0, bounds);
        // As written: ASCII only (a third round's text outside ASCII, measured as UTF-8, was written three times
        // as long).
        if ascii_json_len(&bounded) <= max {
            return bounded;
        }
    }
    json!({
        "omitted": format!(
            "the report is too large for an alert ({} bytes as JSON): `secure-tools check --json` gives it whole",
            json_len(value)
        )
    })
}

/// The most names of each kind an alert's `tools` lists, and the most bytes of each name (MCP's tool names are at
/// most 128 characters).
const ALERT_NAMES: usize = 1_000;
const ALERT_NAME_BYTES: usize = 128;

/// Names as an alert's `tools` lists them: the first `most`, each within `bytes`.
fn names_for_alert(
    names: &mut dyn ExactSizeIterator<Item = &str>,
    most: usize,
    bytes: usize,
) -> Value {
    let total = names.len();
    let mut listed: Vec<Value> = names
        .take(most)
        .map(|name| Value::String(cut_for_alert(name, bytes)))
        .collect();
    if total > most {
        listed.push(Value::String(format!("... ({} more)", total - most)));
    }
    Value::Array(listed)
}

/// An alert of changes (without its time stamp): the report within the bounds (`detail`), every tool it is about
/// named (`tools`: a red team's poisoned tool past the first 100, or behind a report too large for an alert, was
/// named nowhere), and, when the report was cut, a `note` saying where it is whole.
fn alert_line(event: &str, changes: &Changes) -> Value {
    // The names within half the bound, tighter if need be (a third round's names of control characters, six bytes
    // each as written, made a 3.8 MB alert).
    let tools = [(ALERT_NAMES, ALERT_NAME_BYTES), (100, 32)]
        .into_iter()
        .map(|(most, bytes)| {
            let names = |list: &mut dyn ExactSizeIterator<Item = &str>| names_for_alert(list, most, bytes);
            json!({
                "changed": names(&mut changes.changed.iter().map(|c| c.tool.as_str())),
                "added": names(&mut changes.added.iter().map(|a| a.tool.as_str())),
                "removed": names(&mut changes.removed.iter().map(String::as_str)),
                "digest_mismatch": names(&mut changes.digest_mismatch.iter().map(|m| m.tool.as_str())),
                "duplicated": names(&mut changes.duplicated.iter().map(String::as_str)),
            })
        })
        .find(|tools| ascii_json_len(tools) <= ALERT_MAX_BYTES / 2)
        .unwrap_or_else(|| json!({}));
    let full = serde_json::to_value(changes).unwrap_or_default();
    let detail = bounded_for_alert(&full, ALERT_MAX_BYTES - ascii_json_len(&tools) - 512);
    let mut line = json!({"event": event, "tools": tools});
    if detail != full {
        line["note"] = Value::String(
            "values cut to fit an alert: `secure-tools check --json` gives the report whole"
                .to_owned(),
        );
    }
    line["detail"] = detail;
    line
}

/// What a watch compares between polls to tell a change of state: the tools and their digests, not the report's
/// text (a description diff past its time bound is approximated where the bound falls, so the same listing made
/// a different report, and an alert, every poll: red-team finding).
fn reported_state(changes: &Changes) -> Value {
    // Sorted: a server listing the same tools in another order each time made an alert every poll (a third round's).
    let sorted = |mut items: Vec<Vec<String>>| {
        items.sort();
        items
    };
    json!({
        "changed": sorted(changes.changed.iter().map(|c| vec![c.tool.clone(), c.before.clone(), c.after.clone()]).collect()),
        "added": sorted(changes.added.iter().map(|a| vec![a.tool.clone(), a.digest.clone()]).collect()),
        "removed": sorted(changes.removed.iter().map(|r| vec![r.clone()]).collect()),
        "digest_mismatch": sorted(changes.digest_mismatch.iter().map(|m| vec![m.tool.clone(), m.published.to_string()]).collect()),
        "duplicated": sorted(changes.duplicated.iter().map(|d| vec![d.clone()]).collect()),
        "toolset_digest_mismatch": changes.toolset_digest_mismatch,
    })
}

/// One alert line, and the hook run with it; an error when the line could not be written (the hook runs anyway).
async fn alert(event: &str, detail: Value, hook: Option<Hook<'_>>) -> Result<(), String> {
    let detail = bounded_for_alert(&detail, ALERT_MAX_BYTES);
    emit(json!({"event": event, "detail": detail}), hook).await
}

/// The alert `line` (its time stamp added) on stdout, and the hook run with it.
async fn emit(mut line: Value, hook: Option<Hook<'_>>) -> Result<(), String> {
    line["ts"] = Value::String(Timestamp(std::time::SystemTime::now()).to_string());
    let line = ascii_json(&line.to_string());
    let written = write_stdout(&format!("{line}\n"));
    if let Some(hook) = hook {
        run_hook(hook, &line).await;
    }
    written
}

/// Runs the hook with `line` on its stdin, within its timeout from start to end: writing the line is inside it (a
/// hook that does not read would otherwise hold the watch once the line fills the pipe).
async fn run_hook(hook: Hook<'_>, line: &str) {
    use std::os::fd::AsFd;
    use tokio::io::AsyncWriteExt;
    // Its stdout goes to our stderr: our stdout is one JSON line per alert, for a reader that parses it.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from);
    let spawned = tokio::process::Command::new("sh")
        .args(["-c", hook.command])
        .stdin(Stdio::piped())
        .stdout(stdout)
        // A group of its own, so that what it starts is stopped with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!("secure-tools: hook: {error}");
            return;
        }
    };
    // Declared after the child, so dropped before it: a watch stopped during the hook stops its group too.
    let mut group = Group(child.id());
    let mut stdin = child.stdin.take();
    let ran = tokio::time::timeout(hook.timeout, async {
        if let Some(stdin) = &mut stdin {
            // A hook may exit without reading: the broken pipe is no failure of ours.
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
        }
        drop(stdin.take());
        child.wait().await
    })
    .await;
    match ran {
        Ok(Ok(status)) => {
            // It ended: what it left running in the background is its own business.
            group.0 = None;
            if !status.success() {
                eprintln!("secure-tools: hook exited with {status}");
            }
        }
        Ok(Err(error)) => eprintln!("secure-tools: hook: {error}"),
        Err(_) => {
            group.kill();
            let _ = child.kill().await;
            eprintln!("secure-tools: hook stopped after {:?}", hook.timeout);
        }
    }
}

/// A hook's process group, killed when dropped unless disarmed (`None`).
struct Group(Option<u32>);

impl Group {
    /// SIGKILL to the whole group.
    fn kill(&mut self) {
        if let Some(group) = self.0.take().and_then(|id| libc::pid_t::try_from(id).ok()) {
            // SAFETY: kill(2) touches no memory of ours; a negative pid names the process group the hook leads.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn watch(
    target: &Target,
    interval: Duration,
    hook: Option<Hook<'_>>,
    max_polls: Option<u64>,
) -> Result<u8, String> {
    // The signal handlers first: a signal that came before them would end the process at once (unclean), and one
    // that comes while a poll waits on the server must stop that poll too.
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let lock = ToolsLock::read(&target.lock).map_err(|e| e.to_string())?;
    let client = Client::default();
    let mut watched = Watched {
        connection: None,
        reported: Changes::default(),
        unreachable: false,
    };
    let mut polls = 0u64;
    loop {
        polls += 1;
        let polled = tokio::select! {
            polled = watched.poll(target, &client, &lock, hook) => polled,
            () = &mut stop => break,
        };
        if let Err(error) = polled {
            // Alerts that cannot be written: watching on would be watching unseen.
            if let Some(c) = watched.connection.take() {
                close(c).await;
            }
            return Err(error);
        }
        if max_polls.is_some_and(|max| polls >= max) {
            break;
        }
        // A notice that the list changed asks for a poll before the interval is out, but not sooner than
        // `RELIST_GAP` after the last (red-team finding: a server sending one after every listing made 200 polls,
        // each a possible alert and hook run, in 1.4 s).
        let polled_at = tokio::time::Instant::now();
        let relist = async {
            client.list_changed.notified().await;
            tokio::time::sleep_until(polled_at + RELIST_GAP.min(interval)).await;
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            () = relist => {}
            _ = &mut stop => break,
        }
    }
    if let Some(c) = watched.connection {
        close(c).await;
    }
    Ok(0)
}

/// The least time between two polls of a watch when the server says its list changed.
const RELIST_GAP: Duration = Duration::from_secs(1);

/// What a watch keeps between polls.
struct Watched {
    connection: Option<Connection>,
    // What was last reported: the changes against the lock (none at first), or that the server was unreachable.
    reported: Changes,
    unreachable: bool,
}

impl Watched {
    /// Connects (when not connected) and lists, within the timeout together, and alerts on a change of state; an
    /// error when an alert could not be written.
    async fn poll(
        &mut self,
        target: &Target,
        client: &Client,
        lock: &ToolsLock,
        hook: Option<Hook<'_>>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + target.timeout;
        if self
            .connection
            .as_ref()
            .is_none_or(|c| c.running.is_closed())
        {
            let connected = timeout_at(deadline, connect(target, client.clone()))
                .await
                .unwrap_or_else(|_| Err(target.late()));
            match connected {
                Ok(c) => self.connection = Some(c),
                Err(error) => {
                    self.connection = None;
                    if !self.unreachable {
                        self.unreachable = true;
                        alert("unreachable", json!({"error": error}), hook).await?;
                    }
                    return Ok(());
                }
            }
        }
        let Some(live) = &self.connection else {
            return Ok(());
        };
        let listed = timeout_at(deadline, list(live))
            .await
            .unwrap_or_else(|_| Err(target.late()));
        match listed {
            Ok(listed) => {
                if self.unreachable {
                    self.unreachable = false;
                    alert("reachable", json!({}), hook).await?;
                }
                let mut changes = lock.compare_listed(&listed.tools);
                changes.toolset_digest_mismatch = listed.toolset_digest_mismatch;
                if reported_state(&changes) != reported_state(&self.reported) {
                    let event = if changes.is_empty() {
                        "restored"
                    } else {
                        "changed"
                    };
                    emit(alert_line(event, &changes), hook).await?;
                    self.reported = changes;
                }
            }
            Err(error) => {
                if !self.unreachable {
                    self.unreachable = true;
                    alert("unreachable", json!({"error": error}), hook).await?;
                }
                if let Some(c) = self.connection.take() {
                    close(c).await;
                }
            }
        }
        Ok(())
    }
}

/// SIGINT or SIGTERM, the handlers installed now.
fn stop_signal() -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let handler = |kind| signal(kind).map_err(|e| format!("signal handler: {e}"));
    let mut terminate = handler(SignalKind::terminate())?;
    let mut interrupt = handler(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{
        ALERT_MAX_BYTES, alert_line, bounded_for_alert, reported_state, without_type_names,
    };
    use secure_tools::integrity::{AddedTool, Change, Changes, ToolChange};
    use secure_tools::text::json_len;
    use serde_json::{Value, json};

    fn changed(tool: &str, change: Change) -> ToolChange {
        ToolChange {
            tool: tool.into(),
            before: "sha256:a".into(),
            after: "sha256:b".into(),
            changes: vec![change],
        }
    }

    fn described(diff: &str) -> Change {
        Change::Description {
            before: Some("old".into()),
            after: Some("new".into()),
            diff: diff.into(),
        }
    }

    /// A red team's (round five): past the first 100 tools an alert dropped the rest without a name (a poisoned
    /// 101st tool behind 100 reworded ones), an alert cut to fit named no tool at all (a hostile server made every
    /// alert a note, then poisoned behind it), and nothing pointed to `check` when values were cut. An alert now
    /// names every tool changed, added, removed, duplicated or publishing a wrong digest (the first 1,000 of each),
    /// and says when it is cut.
    #[test]
    fn an_alert_names_every_tool_and_says_when_it_is_cut() {
        let mut changes = Changes::default();
        for i in 0..150 {
            changes
                .changed
                .push(changed(&format!("t{i:03}"), described("-old\n+new\n")));
        }
        changes.added.push(AddedTool {
            tool: "helper".into(),
            digest: "sha256:c".into(),
            definition: json!({}),
        });
        let line = alert_line("changed", &changes);
        let names = line["tools"]["changed"].as_array().unwrap();
        assert_eq!(names.len(), 150, "{line}");
        assert_eq!(names[149], "t149");
        assert_eq!(line["tools"]["added"], json!(["helper"]));
        assert!(
            line["note"]
                .as_str()
                .unwrap()
                .contains("secure-tools check --json"),
            "{line}"
        );
        // A small report is not cut, and says nothing of it.
        let mut small = Changes::default();
        small.changed.push(changed("t", described("-old\n+new\n")));
        let line = alert_line("changed", &small);
        assert!(line.get("note").is_none(), "{line}");
        assert_eq!(line["tools"]["changed"], json!(["t"]));
        assert_eq!(line["detail"]["changed"][0]["tool"], "t");
        // Too large even cut: the note stands for the report, and the tools are still named.
        let mut huge = Changes::default();
        let wide = (0..3).fold(json!("x".repeat(300)), |inner, _| {
            Value::Array(vec![inner; 10])
        });
        let field = |i: usize| Change::Field {
            name: format!("x{i}"),
            before: None,
            after: Some(wide.clone()),
        };
        let mut poisoned = changed("poisoned", field(0));
        poisoned.changes.extend((1..6).map(field));
        huge.changed.push(poisoned);
        let line = alert_line("changed", &huge);
        assert!(line["detail"]["omitted"].is_string(), "{line}");
        assert_eq!(line["tools"]["changed"], json!(["poisoned"]));
        assert!(json_len(&line) <= ALERT_MAX_BYTES + 4096);
    }

    /// A third round's: names of 128 control characters (six bytes each as JSON), 1,000 of each kind, made a 3.8 MB
    /// alert, and text outside ASCII, measured as UTF-8, was written three times as long escaped. An alert line as
    /// written is within the bound.
    #[test]
    fn an_alert_line_as_written_is_within_the_bound() {
        let name = |i: usize| format!("{}{i:04}", "\u{1}".repeat(124));
        let mut changes = Changes::default();
        for i in 0..1_000 {
            changes.removed.push(name(i));
            changes.duplicated.push(name(i));
            changes.added.push(AddedTool {
                tool: name(i),
                digest: "sha256:0".into(),
                definition: json!({"description": "\u{e9}".repeat(2048)}),
            });
        }
        let line = secure_tools::text::ascii_json(&alert_line("changed", &changes).to_string());
        assert!(line.len() <= ALERT_MAX_BYTES, "{} bytes", line.len());
        let value: Value = serde_json::from_str(&line).unwrap();
        assert!(value["tools"]["removed"].as_array().unwrap().len() > 10);
        assert!(value["note"].is_string());
    }

    /// A third round's: a server listing the same tools in another order each time (as one keeping them in a hash
    /// map does) made an alert every poll when some published a stale digest or were listed twice. The state a
    /// watch compares does not depend on the listing's order.
    #[test]
    fn a_watch_state_does_not_depend_on_the_listings_order() {
        let mismatch = |tool: &str| secure_tools::integrity::DigestMismatch {
            tool: tool.into(),
            published: json!("sha256:stale"),
        };
        let first = Changes {
            digest_mismatch: vec![mismatch("a"), mismatch("b")],
            duplicated: vec!["c".into(), "d".into()],
            changed: vec![changed("e", described("x")), changed("f", described("y"))],
            ..Changes::default()
        };
        let second = Changes {
            digest_mismatch: vec![mismatch("b"), mismatch("a")],
            duplicated: vec!["d".into(), "c".into()],
            changed: vec![changed("f", described("y")), changed("e", described("x"))],
            ..Changes::default()
        };
        assert_eq!(reported_state(&first), reported_state(&second));
    }

    /// A red team's (round five): a description diff past its time bound is approximated where the bound falls, so
    /// the same listing made a different report each poll, and a watch alerted on every poll. What a watch compares
    /// is the tools and their digests, not the diffs' text.
    #[test]
    fn a_watch_compares_digests_not_diff_text() {
        let mut first = Changes::default();
        first.changed.push(changed("t", described("-a\n+b\n")));
        let mut second = Changes::default();
        second
            .changed
            .push(changed("t", described("-a\n-c\n+b\n+d\n")));
        assert_eq!(reported_state(&first), reported_state(&second));
        let mut third = second.clone();
        third.changed[0].after = "sha256:other".into();
        assert_ne!(reported_state(&first), reported_state(&third));
        let mut added = first.clone();
        added.added.push(AddedTool {
            tool: "helper".into(),
            digest: "sha256:1".into(),
            definition: json!({}),
        });
        let mut poisoned = added.clone();
        poisoned.added[0].digest = "sha256:2".into();
        assert_ne!(reported_state(&added), reported_state(&poisoned));
    }

    /// A red team's: bounds on each value alone multiplied across nesting, and 100 tools of 100 changed properties
    /// with 4,000-byte descriptions made alerts of 81 MB, one a poll. An alert is now at most 1 MiB: tighter cuts
    /// first, then a note sending the reader to `check --json`.
    #[test]
    fn an_alert_is_bounded_as_a_whole() {
        let property = |i: usize| {
            json!({"part": "property_changed", "property": format!("p{i}"),
            "before": {"description": "b".repeat(4000)}, "after": {"description": "a".repeat(4000)}})
        };
        let tool = |t: usize| json!({"tool": format!("t{t}"), "changes": (0..100).map(property).collect::<Vec<_>>()});
        let changes = json!({"changed": (0..100).map(tool).collect::<Vec<_>>(), "added": ["x"]});
        assert!(json_len(&changes) > 80_000_000);
        let bounded = bounded_for_alert(&changes, ALERT_MAX_BYTES);
        let len = json_len(&bounded);
        assert!(len <= ALERT_MAX_BYTES, "{len} bytes");
        // Cut, not dropped: the tools and their first changes are there, each value's start and end.
        assert_eq!(bounded["added"], json!(["x"]));
        assert_eq!(bounded["changed"][0]["tool"], "t0");
        let shown = bounded["changed"][0]["changes"][0]["after"]["description"]
            .as_str()
            .unwrap();
        assert!(
            shown.starts_with("aaa") && shown.ends_with("aaa") && shown.contains("bytes not shown"),
            "{shown}"
        );
        // A small report is left whole.
        let small = json!({"changed": [tool(0)["changes"][0].clone()]});
        assert_eq!(bounded_for_alert(&small, ALERT_MAX_BYTES), small);
        // One that no cut brings under the bound says so: 10,000 strings of 300 bytes, ten to a list, four deep.
        let wide = (0..4).fold(json!("x".repeat(300)), |inner, _| {
            Value::Array(vec![inner; 10])
        });
        let note = bounded_for_alert(&wide, ALERT_MAX_BYTES);
        assert!(
            note["omitted"]
                .as_str()
                .unwrap()
                .contains("secure-tools check --json"),
            "{note}"
        );
    }

    #[test]
    fn transport_errors_lose_their_rust_type_names_only() {
        assert_eq!(
            without_type_names(
                "Send message error Transport [rmcp::transport::worker::WorkerTransport<rmcp::X<reqwest::Client>>] \
                 error: Auth required"
            ),
            "Send message error Transport error: Auth required"
        );
        assert_eq!(
            without_type_names("a [bracketed note] stays [and an unclosed one"),
            "a [bracketed note] stays [and an unclosed one"
        );
        // An address is no type; a type with brackets inside goes whole.
        assert_eq!(
            without_type_names("connect to [::1]:8080 failed"),
            "connect to [::1]:8080 failed"
        );
        assert_eq!(
            without_type_names("error [std::io::Error<[u8; 4]>] here"),
            "error here"
        );
    }
}
