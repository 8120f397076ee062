//! The real `secure-file-server` binary over stdio: confinement, special files, limits, atomic writes, scopes,
//! and its start-up checks. Every refused call must give a clear error, leave an audit record, and touch nothing
//! outside the data root.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use secure_tools_tests::{RawServer, events};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");

/// A scratch area: `data/` (the root), a sibling `data-evil/` sharing its prefix, and `outside/`.
struct Area {
    dir: tempfile::TempDir,
}

impl Area {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["data", "data-evil", "outside"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("data/greeting.txt"), "Hello from MCP!\n").unwrap();
        std::fs::write(dir.path().join("data/.hidden"), "hidden secret\n").unwrap();
        std::fs::write(dir.path().join("data-evil/secret.txt"), "sibling secret\n").unwrap();
        std::fs::write(dir.path().join("outside/secret.txt"), "outside secret\n").unwrap();
        Area { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// Every file outside `data/`, with its content: to prove nothing out there changed.
    fn outside_snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut snapshot = BTreeMap::new();
        for sub in ["data-evil", "outside"] {
            for entry in std::fs::read_dir(self.path(sub)).unwrap() {
                let path = entry.unwrap().path();
                snapshot.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
        snapshot
    }

    fn server(&self, scopes: &str, env: &[(&str, &str)]) -> RawServer {
        self.server_at(&self.data(), scopes, env)
    }

    fn server_at(&self, root: &Path, scopes: &str, env: &[(&str, &str)]) -> RawServer {
        let root = root.to_str().unwrap().to_owned();
        let mut all = vec![("DATA_ROOT", root.as_str())];
        all.extend_from_slice(env);
        let mut server = RawServer::spawn(SERVER, Some(scopes), &all);
        let answer = server.initialize("2025-11-25");
        assert!(
            answer.get("result").is_some(),
            "{answer} {}",
            server.stderr()
        );
        server
    }
}

/// Calls a tool; returns `Ok(structuredContent)` or `Err((code, message))`.
fn call(
    server: &mut RawServer,
    id: i64,
    tool: &str,
    arguments: Value,
) -> Result<Value, (String, String)> {
    let answer = server.request(RawServer::call_message(id, tool, arguments));
    assert_eq!(answer["id"], id, "{answer}");
    let result = &answer["result"];
    assert!(
        result.is_object(),
        "a tool result, not a protocol error: {answer}"
    );
    if result["isError"] == true {
        // Both tools have output schemas, so a refusal carries no structured content: the text is
        // `<code>: <message>`.
        assert!(result.get("structuredContent").is_none(), "{answer}");
        let text = result["content"][0]["text"].as_str().unwrap();
        let (code, message) = text.split_once(": ").expect("`<code>: <message>`");
        Err((code.to_owned(), message.to_owned()))
    } else {
        Ok(result["structuredContent"].clone())
    }
}

fn code(result: Result<Value, (String, String)>) -> String {
    match result {
        Ok(value) => panic!("expected a refusal, got {value}"),
        Err((code, message)) => {
            assert!(!message.is_empty());
            assert!(
                !message.contains("/tmp"),
                "an absolute path reached the caller: {message}"
            );
            code
        }
    }
}

const RW: &str = "files.read,files.write";

#[test]
fn reads_and_writes_inside_the_root() {
    let area = Area::new();
    let mut server = area.server(RW, &[]);
    let read = call(
        &mut server,
        1,
        "read_file",
        json!({"filename": "greeting.txt"}),
    )
    .unwrap();
    assert_eq!(
        read,
        json!({"name": "greeting.txt", "content": "Hello from MCP!\n", "bytes": 16})
    );
    let wrote = call(
        &mut server,
        2,
        "write_file",
        json!({"filename": "new.txt", "content": "a\r\nb\rc\n"}),
    )
    .unwrap();
    assert_eq!(
        wrote,
        json!({"name": "new.txt", "bytes_written": 6, "status": "created"})
    );
    assert_eq!(
        std::fs::read_to_string(area.path("data/new.txt")).unwrap(),
        "a\nb\nc\n"
    );
    let wrote = call(
        &mut server,
        3,
        "write_file",
        json!({"filename": "new.txt", "content": ""}),
    )
    .unwrap();
    assert_eq!(wrote["status"], "replaced");
    let (_, records, _) = server.finish();
    let calls = events(&records, "tool_call");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[1]["inputs"]["content"],
        json!({"redacted": true, "bytes": 7})
    );
}

#[test]
fn traversal_in_every_form_is_refused_before_any_file_is_touched() {
    let area = Area::new();
    let before = area.outside_snapshot();
    let mut server = area.server(RW, &[]);
    let long = "a".repeat(129);
    let names = [
        "..",
        ".",
        "../outside/secret.txt",
        "../data-evil/secret.txt",
        "/etc/passwd",
        "..\\outside\\secret.txt",
        "%2e%2e%2foutside%2fsecret.txt",
        "..%2F..%2Fetc%2Fpasswd",
        "greeting.txt\0.png",
        "\u{2024}\u{2024}/outside",
        "\u{ff0e}\u{ff0e}\u{ff0f}secret.txt",
        "gr\u{0435}eting.txt",
        "",
        long.as_str(),
        "sub/greeting.txt",
        ".hidden",
        ".env",
        "CON",
        "nul.txt",
        "greeting.txt.",
        "~",
        "a b",
    ];
    let mut id = 0;
    for name in names {
        for (tool, args) in [
            ("read_file", json!({"filename": name})),
            ("write_file", json!({"filename": name, "content": "pwned"})),
        ] {
            id += 1;
            let code = code(call(&mut server, id, tool, args));
            assert_eq!(code, "invalid_input", "{tool} {name:?}");
        }
    }
    let (_, records, _) = server.finish();
    let calls = events(&records, "tool_call");
    assert_eq!(calls.len(), id as usize, "each refused call is audited");
    assert!(
        calls
            .iter()
            .all(|r| r["outcome"] == "invalid" && r["error"] == "invalid_input")
    );
    assert_eq!(
        area.outside_snapshot(),
        before,
        "nothing outside the root changed"
    );
    let inside: Vec<_> = std::fs::read_dir(area.data())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        inside.len(),
        2,
        "nothing was created inside either: {inside:?}"
    );
}

#[test]
fn symlinks_are_never_followed() {
    let area = Area::new();
    symlink(
        area.path("outside/secret.txt"),
        area.path("data/to-file.txt"),
    )
    .unwrap();
    symlink(area.path("outside"), area.path("data/to-dir")).unwrap();
    symlink(
        area.path("outside/created.txt"),
        area.path("data/dangling.txt"),
    )
    .unwrap();
    symlink(".hidden", area.path("data/to-hidden.txt")).unwrap();
    symlink("greeting.txt", area.path("data/to-inside.txt")).unwrap();
    let before = area.outside_snapshot();
    let mut server = area.server(RW, &[]);
    let cases = [
        ("read_file", "to-file.txt"),
        ("read_file", "to-dir"),
        ("read_file", "to-hidden.txt"),
        ("read_file", "to-inside.txt"),
        ("read_file", "dangling.txt"),
        ("write_file", "dangling.txt"),
        ("write_file", "to-file.txt"),
        ("write_file", "to-hidden.txt"),
    ];
    for (id, (tool, name)) in cases.into_iter().enumerate() {
        let args = match tool {
            "read_file" => json!({"filename": name}),
            _ => json!({"filename": name, "content": "pwned"}),
        };
        let result = call(&mut server, id as i64, tool, args);
        assert_eq!(code(result), "symlink_refused", "{tool} {name}");
    }
    assert!(
        !area.path("outside/created.txt").exists(),
        "a write followed a dangling symlink"
    );
    assert_eq!(area.outside_snapshot(), before);
    assert_eq!(
        std::fs::read_to_string(area.path("data/.hidden")).unwrap(),
        "hidden secret\n"
    );
    let (_, records, _) = server.finish();
    assert_eq!(events(&records, "tool_call").len(), cases.len());
}

#[test]
fn the_root_may_itself_be_reached_through_a_symlink() {
    let area = Area::new();
    symlink(area.data(), area.path("link-to-data")).unwrap();
    let mut server = area.server_at(&area.path("link-to-data"), RW, &[]);
    let read = call(
        &mut server,
        1,
        "read_file",
        json!({"filename": "greeting.txt"}),
    )
    .unwrap();
    assert_eq!(read["content"], "Hello from MCP!\n");
    call(
        &mut server,
        2,
        "write_file",
        json!({"filename": "via-link.txt", "content": "x"}),
    )
    .unwrap();
    assert!(area.path("data/via-link.txt").exists());
}

#[test]
fn special_files_are_refused_without_blocking() {
    let area = Area::new();
    let fifo = area.path("data/pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::create_dir(area.path("data/subdir")).unwrap();
    let mut server = area.server(RW, &[]);
    let started = Instant::now();
    assert_eq!(
        code(call(
            &mut server,
            1,
            "read_file",
            json!({"filename": "pipe"})
        )),
        "not_a_file"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "reading a FIFO blocked"
    );
    assert_eq!(
        code(call(
            &mut server,
            2,
            "write_file",
            json!({"filename": "pipe", "content": "x"})
        )),
        "not_a_file"
    );
    assert_eq!(
        code(call(
            &mut server,
            3,
            "read_file",
            json!({"filename": "subdir"})
        )),
        "not_a_file"
    );
    assert_eq!(
        code(call(
            &mut server,
            4,
            "write_file",
            json!({"filename": "subdir", "content": "x"})
        )),
        "not_a_file"
    );
    assert_eq!(
        code(call(
            &mut server,
            5,
            "read_file",
            json!({"filename": "absent.txt"})
        )),
        "not_found"
    );
    // Still serving.
    call(
        &mut server,
        6,
        "read_file",
        json!({"filename": "greeting.txt"}),
    )
    .unwrap();
}

#[test]
fn size_and_encoding_limits_are_enforced() {
    let area = Area::new();
    std::fs::write(area.path("data/big.txt"), "x".repeat(2000)).unwrap();
    std::fs::write(area.path("data/exact.txt"), "x".repeat(1024)).unwrap();
    std::fs::write(area.path("data/binary.dat"), [0x66, 0x6f, 0xff, 0xfe, 0x00]).unwrap();
    let env = [("MAX_READ_BYTES", "1024"), ("MAX_WRITE_BYTES", "100")];
    let mut server = area.server(RW, &env);
    assert_eq!(
        code(call(
            &mut server,
            1,
            "read_file",
            json!({"filename": "big.txt"})
        )),
        "too_large"
    );
    assert_eq!(
        call(
            &mut server,
            2,
            "read_file",
            json!({"filename": "exact.txt"})
        )
        .unwrap()["bytes"],
        1024
    );
    assert_eq!(
        code(call(
            &mut server,
            3,
            "read_file",
            json!({"filename": "binary.dat"})
        )),
        "not_utf8"
    );

    // Over the write limit, and content the server would have to alter: refused, the old file untouched.
    let too_long = json!({"filename": "greeting.txt", "content": "y".repeat(101)});
    assert_eq!(
        code(call(&mut server, 4, "write_file", too_long)),
        "too_large"
    );
    // 100 bytes exactly, counted after CRLF becomes LF: accepted.
    let fits = json!({"filename": "fits.txt", "content": "z\r\n".repeat(50)});
    assert_eq!(
        call(&mut server, 5, "write_file", fits).unwrap()["bytes_written"],
        100
    );
    for (id, content) in [
        (6, "nul\0byte"),
        (7, "bell\u{7}"),
        (8, "escape \u{1b}[2J"),
        (9, "c1 csi \u{9b}2J"),
        (
            10,
            "access = \"user\u{202e} \u{2066}// admin\u{2069} \u{2066}\"",
        ),
    ] {
        let args = json!({"filename": "greeting.txt", "content": content});
        assert_eq!(
            code(call(&mut server, id, "write_file", args)),
            "unsupported_content"
        );
    }
    // A file name is plain ASCII: no control or bidirectional character gets that far.
    for (id, filename) in [(11, "evil\u{202e}txt.exe"), (12, "a\u{85}b.txt")] {
        let args = json!({"filename": filename, "content": "x"});
        assert_eq!(
            code(call(&mut server, id, "write_file", args)),
            "invalid_input"
        );
    }
    assert_eq!(
        std::fs::read_to_string(area.path("data/greeting.txt")).unwrap(),
        "Hello from MCP!\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(area.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Red-team gap (left open): a caller with `files.write` could fill the disk, file by file. With `MAX_ROOT_BYTES`
/// and `MAX_ROOT_FILES` a write past the root's quota is refused `quota_exceeded` (audited so) and changes nothing.
/// Files count in 4 KiB blocks.
#[test]
fn a_write_past_the_roots_quota_is_refused_and_audited() {
    let area = Area::new();
    // greeting.txt takes one block of the three.
    let env = [("MAX_ROOT_BYTES", "12288"), ("MAX_ROOT_FILES", "3")];
    let mut server = area.server(RW, &env);
    let write = |server: &mut RawServer, id, filename: &str, content: &str| {
        call(
            server,
            id,
            "write_file",
            json!({"filename": filename, "content": content}),
        )
    };
    assert!(write(&mut server, 1, "a.txt", &"a".repeat(5000)).is_ok());
    assert_eq!(code(write(&mut server, 2, "b.txt", "b")), "quota_exceeded");
    assert!(!area.path("data/b.txt").exists());
    assert!(write(&mut server, 3, "a.txt", "a").is_ok());
    assert!(write(&mut server, 4, "b.txt", "b").is_ok());
    assert_eq!(code(write(&mut server, 5, "c.txt", "")), "quota_exceeded");
    let (status, audit, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let calls: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("ok", ""),
            ("error", "quota_exceeded"),
            ("ok", ""),
            ("ok", ""),
            ("error", "quota_exceeded")
        ]
    );
}

#[test]
fn terminal_escapes_in_a_file_are_neutralised_in_the_text_rendering() {
    let area = Area::new();
    std::fs::write(
        area.path("data/evil.txt"),
        "hi\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1m\n",
    )
    .unwrap();
    let mut server = area.server(RW, &[]);
    let answer = server.request(RawServer::call_message(
        1,
        "read_file",
        json!({"filename": "evil.txt"}),
    ));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        !text
            .chars()
            .any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{9b}'),
        "{text:?}"
    );
    assert!(text.contains("\\u{1b}[2J"), "{text:?}");
    // The structured content carries the file exactly.
    assert_eq!(
        answer["result"]["structuredContent"]["content"],
        "hi\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1m\n"
    );
}

#[test]
fn permissions_of_a_replaced_file_are_kept() {
    let area = Area::new();
    let path = area.path("data/greeting.txt");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut server = area.server(RW, &[]);
    call(
        &mut server,
        1,
        "write_file",
        json!({"filename": "greeting.txt", "content": "new"}),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

/// A new file was made `0o644` whatever the server's umask; it now gets `0o666` less the umask.
#[test]
fn a_new_file_gets_the_mode_the_servers_umask_leaves() {
    for (umask, expected) in [("077", 0o600), ("022", 0o644)] {
        let area = Area::new();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\""))
            .arg(SERVER);
        let root = area.data();
        let mut server =
            RawServer::spawn_command(command, Some(RW), &[("DATA_ROOT", root.to_str().unwrap())]);
        assert!(server.initialize("2025-11-25").get("result").is_some());
        let written = call(
            &mut server,
            1,
            "write_file",
            json!({"filename": "new.txt", "content": "new"}),
        )
        .unwrap();
        assert_eq!(written["status"], "created");
        assert_eq!(
            std::fs::metadata(area.path("data/new.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            expected,
            "umask {umask}"
        );
    }
}

#[test]
fn concurrent_writers_leave_exactly_one_input() {
    let area = Area::new();
    let inputs: Vec<String> = (0..16)
        .map(|i| format!("writer {i}\n").repeat(2000 + i * 10))
        .collect();
    // Two server processes, each with eight writes in flight at once, all to one file.
    let mut servers = [area.server(RW, &[]), area.server(RW, &[])];
    for (i, content) in inputs.iter().enumerate() {
        let message = RawServer::call_message(
            i as i64,
            "write_file",
            json!({"filename": "shared.txt", "content": content}),
        );
        servers[i % 2].send(&message);
    }
    for server in &servers {
        for _ in 0..8 {
            let answer = server.recv();
            assert_eq!(answer["result"]["isError"], false, "{answer}");
        }
    }
    let content = std::fs::read_to_string(area.path("data/shared.txt")).unwrap();
    assert!(
        inputs.contains(&content),
        "the file is not exactly one of the inputs ({} bytes)",
        content.len()
    );
}

#[test]
fn a_crash_during_a_write_leaves_the_old_or_the_new_content_and_nothing_else() {
    let area = Area::new();
    let old = "old content\n".repeat(10_000);
    let new = "new content\n".repeat(10_000);
    std::fs::write(area.path("data/target.txt"), &old).unwrap();
    let env = [("MAX_WRITE_BYTES", "1000000")];
    for round in 0..8u64 {
        let mut server = area.server(RW, &env);
        let message = RawServer::call_message(
            1,
            "write_file",
            json!({"filename": "target.txt", "content": new}),
        );
        server.send(&message);
        // Kill it at a different moment each round, often mid-write.
        std::thread::sleep(Duration::from_micros(round * 700));
        assert!(
            Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
        server.wait();
        let content = std::fs::read_to_string(area.path("data/target.txt")).unwrap();
        assert!(
            content == old || content == new,
            "round {round}: torn content ({} bytes)",
            content.len()
        );
    }
    // Whatever a crash left behind is a hidden temporary file, out of every tool's reach (the next start sweeps
    // it: no writer holds it); the file itself is whole.
    let names: Vec<_> = std::fs::read_dir(area.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".tmp") || n.starts_with('.')),
        "{names:?}"
    );
    let mut server = area.server(RW, &env);
    for (id, name) in names.iter().filter(|n| n.ends_with(".tmp")).enumerate() {
        let result = call(
            &mut server,
            id as i64,
            "read_file",
            json!({"filename": name}),
        );
        assert_eq!(code(result), "invalid_input");
    }
    // The server answered, so it had opened its root and swept the leftovers, however recent.
    call(
        &mut server,
        1000,
        "read_file",
        json!({"filename": "target.txt"}),
    )
    .unwrap();
    let left: Vec<_> = std::fs::read_dir(area.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_read_only_grant_cannot_write() {
    let area = Area::new();
    let mut server = area.server("files.read", &[]);
    let result = call(
        &mut server,
        1,
        "write_file",
        json!({"filename": "greeting.txt", "content": "overwritten"}),
    );
    assert_eq!(code(result), "missing_scope:files.write");
    call(
        &mut server,
        2,
        "read_file",
        json!({"filename": "greeting.txt"}),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(area.path("data/greeting.txt")).unwrap(),
        "Hello from MCP!\n"
    );
    let (_, records, _) = server.finish();
    let calls = events(&records, "tool_call");
    assert_eq!(calls[0]["outcome"], "denied");
    assert_eq!(calls[0]["error"], "missing_scope:files.write");
    assert_eq!(
        calls[0]["inputs"]["content"],
        json!({"redacted": true, "bytes": 11})
    );
}

fn start_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(SERVER);
    command
        .args(args)
        .env_remove("DATA_ROOT")
        .env_remove("MCP_SCOPES")
        .env_remove("MCP_AUDIT_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(
        !output.status.success(),
        "the server should refuse to start"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout, which belongs to the protocol"
    );
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn start_up_refuses_a_bad_configuration_with_a_clear_message() {
    let area = Area::new();
    let data = area.data();
    let data = data.to_str().unwrap();
    let message = start_error(&[], &[]);
    assert!(message.contains("DATA_ROOT"), "{message}");
    let message = start_error(&["--data-root", "/nonexistent/data"], &[]);
    assert!(message.contains("/nonexistent/data"), "{message}");
    let message = start_error(
        &[],
        &[("DATA_ROOT", data), ("MCP_SCOPES", "files.read,files.*")],
    );
    assert!(message.contains("files.*"), "{message}");
    let inside = area.path("data/audit.jsonl");
    let message = start_error(
        &["--audit-log", inside.to_str().unwrap()],
        &[("DATA_ROOT", data)],
    );
    assert!(message.contains("inside the data root"), "{message}");
    // The same through a relative path and a symlinked directory.
    symlink(area.data(), area.path("alias")).unwrap();
    let aliased = area.path("alias/audit.jsonl");
    let message = start_error(
        &["--audit-log", aliased.to_str().unwrap()],
        &[("DATA_ROOT", data)],
    );
    assert!(message.contains("inside the data root"), "{message}");
    // Review finding: only the audit log was kept out of the root. A key, a certificate or the config file in it
    // could be read (a private key) or replaced (a JWKS, a client CA) through the tools.
    let key = area.path("data/chain.key");
    std::fs::write(&key, "chain-key-0123456789abcdefghijklmnopqrstu").unwrap();
    let log = area.path("audit.jsonl");
    let message = start_error(
        &[
            "--audit-chain-key",
            key.to_str().unwrap(),
            "--audit-log",
            log.to_str().unwrap(),
        ],
        &[("DATA_ROOT", data)],
    );
    assert!(
        message.contains("inside the data root") && message.contains("MCP_AUDIT_CHAIN_KEY"),
        "{message}"
    );
    let config = area.path("data/server.toml");
    std::fs::write(&config, "scopes = \"files.read\"\n").unwrap();
    let message = start_error(
        &["--config", config.to_str().unwrap()],
        &[("DATA_ROOT", data)],
    );
    assert!(
        message.contains("inside the data root") && message.contains("MCP_CONFIG"),
        "{message}"
    );
    // A setting that qualifies another is refused without it, not ignored: a chain key without an audit file.
    let outside_key = area.path("other.key");
    std::fs::write(&outside_key, "chain-key-0123456789abcdefghijklmnopqrstu").unwrap();
    let ignored = start_error(
        &["--audit-chain-key", outside_key.to_str().unwrap()],
        &[("DATA_ROOT", data)],
    );
    assert!(
        ignored.contains("only applies with --audit-log"),
        "{ignored}"
    );
    // The same key outside the root is fine: the server starts (and stops at the end of its input).
    let outside = area.path("chain.key");
    std::fs::write(&outside, "chain-key-0123456789abcdefghijklmnopqrstu").unwrap();
    // A run with that key, to its end (no input): whether it succeeded, and what it said on stderr.
    let run_with_key = || {
        let run = Command::new(SERVER)
            .args(["--data-root", data, "--scopes", "files.read"])
            .args(["--audit-chain-key", outside.to_str().unwrap()])
            .arg("--audit-log")
            .arg(area.path("audit.jsonl"))
            .env_remove("DATA_ROOT")
            .env_remove("MCP_AUDIT_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            run.status.success(),
            String::from_utf8_lossy(&run.stderr).into_owned(),
        )
    };
    let (started, said) = run_with_key();
    assert!(started, "{said}");
    // Written with the usual umask, the key is readable by others: the start says so. Made private, it does not.
    assert!(
        said.contains("can be read by users other than its owner"),
        "{said}"
    );
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (started, said) = run_with_key();
    assert!(started, "{said}");
    assert!(!said.contains("can be read by users"), "{said}");
}

/// A variable set to blank text counts as unset through the flags' parser too (clap passed it on as a value, so a
/// blank `MCP_SCOPES` emptied the grant the config file gave): the config file's settings then apply.
#[test]
fn a_blank_variable_leaves_the_config_files_setting_in_place() {
    let area = tempfile::tempdir().unwrap();
    let data = area.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let config = area.path().join("server.toml");
    let log = area.path().join("audit.jsonl");
    std::fs::write(
        &config,
        format!(
            "server-id = \"from-file\"\nscopes = \"files.read\"\naudit-log = {:?}\n",
            log.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = Command::new(SERVER)
        .arg("--config")
        .arg(&config)
        .arg("--data-root")
        .arg(&data)
        .env_remove("DATA_ROOT")
        .env("MCP_SERVER_ID", "")
        .env("MCP_SCOPES", " ")
        .env_remove("MCP_AUDIT_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    let records: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("no audit log ({e}): {said}"))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let start = records
        .iter()
        .find(|r| r["event"] == "server_start")
        .unwrap();
    assert_eq!(start["server_id"], "from-file", "{start}");
    assert_eq!(start["grant"], json!(["files.read"]), "{start}");
}

/// Operator trial findings: a private key given as `--public-key-pem` was taken (every token was then refused
/// `bad_signature`, and the signing key sat on the server); a key file that could not be read was blamed on
/// `--http`; and `--scopes` with bearer tokens was accepted and granted nothing (a token's scopes are its caller's
/// grant). Each is refused at start, naming the setting.
#[test]
fn mistakes_in_http_keys_and_grants_are_refused_at_start_naming_the_setting() {
    let area = Area::new();
    let data = area.data();
    let secret = area.path("secret");
    std::fs::write(&secret, "s".repeat(40)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bearer = |extra: &[&str]| {
        let mut args = vec![
            "--data-root",
            data.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--issuer",
            "https://issuer.test",
            "--resource-url",
            "http://127.0.0.1:8000/mcp",
        ];
        args.extend(extra);
        start_error(&args, &[])
    };
    // RSA in PKCS#8 and PKCS#1 (both were taken), EC in PKCS#8 (refused as `InvalidKeyFormat`).
    for private in ["rsa-private.pem", "rsa-private-pkcs1.pem", "jwks-key-a.pem"] {
        let path = fixtures.join(private);
        let message = bearer(&["--public-key-pem", path.to_str().unwrap()]);
        assert!(
            message.contains("--public-key-pem") && message.contains("private key"),
            "{private}: {message}"
        );
    }
    let message = bearer(&["--public-key-pem", "/nonexistent/key.pem"]);
    assert!(
        message.contains("--public-key-pem") && message.contains("/nonexistent/key.pem"),
        "{message}"
    );
    let message = bearer(&["--jwks-file", "/nonexistent/jwks.json"]);
    assert!(
        message.contains("--jwks-file") && message.contains("/nonexistent/jwks.json"),
        "{message}"
    );
    let message = bearer(&[
        "--hs256-secret-file",
        secret.to_str().unwrap(),
        "--scopes",
        "files.read",
    ]);
    assert!(
        message.contains("--scopes") && message.contains("only applies"),
        "{message}"
    );
    // TLS files that cannot be read, or are not what they should be, are named by their setting; a TLS option
    // given without the certificate and key names the option given, not one that was not.
    let with_secret = |extra: &[&str]| {
        let mut args = vec!["--hs256-secret-file", secret.to_str().unwrap()];
        args.extend(extra);
        bearer(&args)
    };
    let message = with_secret(&[
        "--tls-cert",
        "/nonexistent/c.pem",
        "--tls-key",
        "/nonexistent/k.pem",
    ]);
    assert!(
        message.contains("--tls-cert") && message.contains("/nonexistent/c.pem"),
        "{message}"
    );
    let not_a_certificate = area.path("not-a-cert.pem");
    std::fs::write(&not_a_certificate, "hello\n").unwrap();
    let key = fixtures.join("rsa-private.pem");
    let message = with_secret(&[
        "--tls-cert",
        not_a_certificate.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(message.contains("--tls-cert"), "{message}");
    // An audit log that takes no record is named too (it said "audit sink could not write").
    let message = start_error(
        &[
            "--data-root",
            data.to_str().unwrap(),
            "--audit-log",
            "/dev/full",
        ],
        &[],
    );
    assert!(
        message.contains("MCP_AUDIT_LOG") && message.contains("/dev/full"),
        "{message}"
    );
    let message = with_secret(&["--client-crl", "/nonexistent/crl.pem"]);
    assert!(message.contains("--client-crl"), "{message}");
    assert!(!message.contains("--tls-cert:"), "{message}");
}

/// An address in use is refused naming the setting and the address (it said only "Address already in use"), and
/// a metrics address OpenTelemetry is not there to serve is refused rather than left unserved.
#[test]
fn a_listening_address_that_cannot_be_used_is_named() {
    let area = tempfile::tempdir().unwrap();
    let data = area.path().to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let base = [
        "--data-root",
        data,
        "--scopes",
        "files.read",
        "--http-insecure-no-auth",
    ];
    let mut args = base.to_vec();
    args.extend(["--http", &address]);
    let message = start_error(&args, &[]);
    assert!(
        message.contains(&format!("--http / MCP_HTTP {address}")),
        "{message}"
    );
    let mut args = base.to_vec();
    args.extend(["--http", "127.0.0.1:0", "--http-metrics", &address]);
    let message = start_error(&args, &[]);
    assert!(
        message.contains(&format!("--http-metrics / MCP_HTTP_METRICS {address}")),
        "{message}"
    );
    let mut args = base.to_vec();
    args.extend(["--http", "127.0.0.1:0", "--http-metrics", "127.0.0.1:0"]);
    let message = start_error(&args, &[("OTEL_SDK_DISABLED", "true")]);
    assert!(message.contains("OTEL_SDK_DISABLED"), "{message}");
}

#[test]
fn help_documents_every_setting() {
    let output = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for name in [
        "DATA_ROOT",
        "MCP_SCOPES",
        "MCP_SERVER_ID",
        "MCP_AUDIT_LOG",
        "MAX_READ_BYTES",
        "MAX_WRITE_BYTES",
        "MAX_ROOT_BYTES",
        "MAX_ROOT_FILES",
        "MCP_RATE_LIMIT",
        "MCP_TOOL_TIMEOUT",
        "MCP_MAX_CONCURRENT_CALLS",
        "MCP_MAX_CONCURRENT_CALLS_PER_CALLER",
        "demo",
    ] {
        assert!(
            help.contains(name),
            "--help does not mention {name}:\n{help}"
        );
    }
}

#[test]
fn a_rate_limit_lets_exactly_its_count_through_and_audits_every_call() {
    let area = Area::new();
    let mut server = area.server(RW, &[("MCP_RATE_LIMIT", "10/min")]);
    let mut ok = 0;
    let mut limited = Vec::new();
    for id in 1..=30 {
        let answer = server.request(RawServer::call_message(
            id,
            "read_file",
            json!({"filename": "greeting.txt"}),
        ));
        let result = &answer["result"];
        if result["isError"] == true {
            limited.push(result.clone());
        } else {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(limited.len(), 20);
    for result in &limited {
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("rate_limited: "), "{text}");
        assert!(
            text.contains("retry in "),
            "the message says when to retry: {text}"
        );
        // The structured form of the refusal, in `_meta`, says it too.
        let notice = &result["_meta"]["secure-tools/refusal"];
        assert_eq!(notice["code"], "rate_limited", "{result}");
        assert_eq!(notice["outcome"], "limited");
        let after = notice["retryAfterSeconds"].as_u64().unwrap();
        assert!((1..=60).contains(&after), "{notice}");
    }
    let (_, audit, _) = server.finish();
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), 30);
    let outcome = |o: &str| calls.iter().filter(|r| r["outcome"] == o).count();
    assert_eq!((outcome("ok"), outcome("limited")), (10, 20));
    assert!(
        calls
            .iter()
            .filter(|r| r["outcome"] == "limited")
            .all(|r| r["error"] == "rate_limited")
    );
    // Every record of the run has its own call id.
    let ids: std::collections::BTreeSet<_> = calls
        .iter()
        .map(|r| r["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 30);
}

#[test]
fn limit_settings_that_cannot_be_used_stop_the_start_with_a_clear_message() {
    let area = Area::new();
    for (name, value, expected) in [
        ("MCP_RATE_LIMIT", "10 per minute", "MCP_RATE_LIMIT"),
        ("MCP_TOOL_TIMEOUT", "forever", "MCP_TOOL_TIMEOUT"),
        ("MCP_MAX_CONCURRENT_CALLS", "0", "MCP_MAX_CONCURRENT_CALLS"),
        (
            "MCP_MAX_CONCURRENT_CALLS_PER_CALLER",
            "0",
            "MCP_MAX_CONCURRENT_CALLS_PER_CALLER",
        ),
    ] {
        let output = Command::new(SERVER)
            .env("DATA_ROOT", area.data())
            .env("MCP_SCOPES", RW)
            .env(name, value)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}={value} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
    }
}

/// Review finding: the demo's servers inherited the caller's whole environment, so `MCP_HTTP=... secure-file-server
/// demo` started a server serving HTTP while the demo spoke to it over stdio, and the handshake never came. The
/// caller's settings are kept from them now, and the handshake and every call are bounded.
#[test]
fn the_demo_runs_whatever_server_settings_its_caller_has() {
    let area = Area::new();
    let config = area.path("server.toml");
    std::fs::write(&config, "http = \"127.0.0.1:0\"\nscopes = \"\"\n").unwrap();
    let mut child = Command::new(SERVER)
        .arg("demo")
        .env("MCP_HTTP", "127.0.0.1:0")
        .env("MCP_CONFIG", &config)
        .env("MCP_SCOPES", "files.read")
        .env("DATA_ROOT", area.data())
        .env("MAX_READ_BYTES", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the demo did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("read_file greeting.txt: ok"), "{stdout}");
    assert!(stdout.contains("write_file notes.txt: ok"), "{stdout}");
    assert!(stdout.contains("write_file notes.txt: refused"), "{stdout}");
}

/// Operator's trial: the data root written under a misspelled table (`[file]`) was reported as "no data root",
/// naming neither the table nor the config file; the stray table's own message never came, as the root is looked
/// for first. The message now names the config file's table and the one that is read by nothing.
#[test]
fn a_data_root_under_a_misspelled_table_is_named_as_such() {
    let area = Area::new();
    let config = area.path("server.toml");
    std::fs::write(
        &config,
        format!("[file]\ndata-root = {:?}\n", area.data().to_str().unwrap()),
    )
    .unwrap();
    let output = Command::new(SERVER)
        .env("MCP_CONFIG", &config)
        .env_remove("DATA_ROOT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no data root")
            && stderr.contains("[file]")
            && stderr.contains("[files] misspelled"),
        "{stderr}"
    );
}

/// A newcomer's trial: the runners' own lines said `secure-tools:` from inside this server, so with `secure-tools
/// pin -- secure-file-server ...` the server's warnings read as the command's. They start with the running
/// program's name, as a program's messages do.
#[test]
fn the_runners_lines_name_the_program_that_prints_them() {
    let area = Area::new();
    let output = Command::new(SERVER)
        .arg("--data-root")
        .arg(area.data())
        .env_remove("MCP_SCOPES")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("secure-file-server: warning: MCP_SCOPES is unset"),
        "{stderr}"
    );
    assert!(!stderr.contains("secure-tools: warning"), "{stderr}");
}

/// A grant naming a scope no tool requires (`files.wrte` for `files.write`) went unsaid: the caller then lacked
/// the scope it was meant to hold, and only refusals told. It is warned about at start, naming the tools' scopes.
#[test]
fn a_grant_naming_a_scope_no_tool_requires_is_warned_about() {
    let area = Area::new();
    for (scopes, warned) in [
        ("files.read files.wrte", true),
        ("files.read,files.write", false),
    ] {
        let output = Command::new(SERVER)
            .arg("--data-root")
            .arg(area.data())
            .env("MCP_SCOPES", scopes)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.contains(
                "secure-file-server: warning: --scopes / MCP_SCOPES grants `files.wrte`, which no tool requires \
                 (the tools require: files.read, files.write)"
            ),
            warned,
            "{scopes}: {stderr}"
        );
        assert_eq!(
            stderr.contains("which no tool requires"),
            warned,
            "{stderr}"
        );
    }
}

/// Red-team finding: rmcp logs each request it answers with an error (`response error id=...`, at `warn`, which the
/// file server logs) with the client's id printed raw, so an id holding line feeds forged whole lines of the
/// server's log (a fake audit record among them, where the audit goes to stderr), and a 4 MB id wrote 4 MB of log
/// per request. No line of the log is the client's to write, and a request's share of it is bounded.
#[test]
fn a_request_id_can_neither_forge_nor_flood_the_servers_log() {
    let area = Area::new();
    let mut server = area.server(RW, &[]);
    let forged = r#"{"event":"tool_call","caller":"bob","outcome":"ok","tool":"write_file"}"#;
    let ids = [format!("x\n{forged}\n\u{1b}[2J"), "y".repeat(1_000_000)];
    for (n, id) in ids.iter().enumerate() {
        // An unknown tool and an unknown method: both answered with an error by rmcp.
        for method in ["tools/call", "prompts/get"] {
            let answer = server.request(json!({
                "jsonrpc": "2.0", "id": id, "method": method,
                "params": {"name": format!("nope{n}"), "arguments": {}}
            }));
            assert!(answer.get("error").is_some(), "{answer}");
        }
    }
    let (_, _, stderr) = server.finish();
    assert!(
        stderr.lines().all(|line| !line.starts_with(forged)),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    assert!(stderr.len() < 64 * 1024, "{} bytes of log", stderr.len());
}

/// A settings file named as `/dev/zero` was read until memory ran out: every file an operator names for the server
/// (secrets, keys, certificates, revocation lists, JWKS documents, the configuration) is read no further than a
/// bound, and the start refused saying so.
#[test]
fn a_settings_file_that_never_ends_is_refused_at_start() {
    let area = Area::new();
    let data = area.data();
    let http = [
        "--http",
        "127.0.0.1:0",
        "--issuer",
        "https://idp.example",
        "--resource-url",
        "http://127.0.0.1:8080/mcp",
    ];
    for flag in ["--hs256-secret-file", "--config"] {
        let mut args = http.to_vec();
        args.extend([flag, "/dev/zero"]);
        let message = start_error(&args, &[("DATA_ROOT", data.to_str().unwrap())]);
        assert!(message.contains("too long for"), "{flag}: {message}");
    }
}

/// A red team's (round 43): with stdout and stderr one pipe (`2>&1`), an audit record (written to standard error by
/// default) or a log line landed inside a large answer, splitting it into two lines neither of which parsed: the
/// request never got its answer. Each message and each line written to standard error goes out whole.
#[test]
fn with_stderr_on_the_protocols_pipe_no_line_lands_inside_an_answer() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.txt"), "a".repeat(600_000)).unwrap();
    let (mut child, reader) = on_one_pipe(
        dir.path(),
        "files.read,files.write",
        &[("RUST_LOG", "info")],
    );
    let mut stdin = child.stdin.take().unwrap();
    let calls = 150;
    let writer = std::thread::spawn(move || {
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}});
        writeln!(stdin, "{initialize}").unwrap();
        writeln!(
            stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
        for id in 1..=calls {
            writeln!(
                stdin,
                "{}",
                if id % 2 == 1 {
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                           "params": {"name": "read_file", "arguments": {"filename": "big.txt"}}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                           "params": {"name": "write_file", "arguments": {"filename": format!("w{id}.txt"), "content": "x"}}})
                }
            )
            .unwrap();
        }
        stdin
    });
    // The host lags: the pipe fills, and each large answer goes out in many writes, between which another line
    // could land.
    std::thread::sleep(Duration::from_millis(300));
    let mut answered = std::collections::BTreeSet::new();
    let mut records = 0;
    for line in std::io::BufReader::new(reader).lines() {
        let line = line.unwrap();
        // A log line (plain text at `info`) is a line of its own; a message or a record split by another's line
        // parses as neither.
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            assert!(
                !line.contains("jsonrpc")
                    && !line.contains("aaaaaaaa")
                    && !line.contains("\"event\""),
                "a message or record split by another line: {:.300}",
                line
            );
            continue;
        };
        if value.get("jsonrpc").is_some() {
            if let Some(id) = value["id"].as_i64().filter(|id| *id > 0) {
                // Served, or refused (`overloaded`, with this many calls at once): an answer either way.
                assert!(value["result"]["content"].is_array(), "{:.200}", line);
                answered.insert(id);
                if answered.len() == calls as usize {
                    break;
                }
            }
        } else if value.get("event").is_some() {
            records += 1;
        }
    }
    assert_eq!(answered.len(), calls as usize);
    assert!(records >= calls as usize, "{records} records");
    drop(writer.join().unwrap());
    let _ = child.wait();
}

/// A red team's (round 43): a Redis password in the config file (`rate-limit-redis = "redis://:PASSWORD@..."`),
/// the natural place under the systemd unit, went unsaid with the file readable by everyone, where a readable key
/// file is warned of. Said at start, without the password.
#[test]
fn a_readable_config_file_holding_a_redis_password_is_warned_of() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let run = |mode: u32, url: &str| {
        std::fs::write(
            &config,
            format!("rate-limit = \"10/min\"\nrate-limit-redis = \"{url}\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = Command::new(SERVER)
            .arg("--data-root")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--scopes", "files.read"])
            .env_remove("MCP_AUDIT_LOG")
            .env_remove("MCP_CONFIG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(0o644, "redis://:hunter2-redis@127.0.0.1:1/0");
    assert!(
        stderr.contains("server.toml")
            && stderr.contains("rate-limit-redis")
            && stderr.contains("read"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-redis"), "{stderr}");
    let stderr = run(0o600, "redis://:hunter2-redis@127.0.0.1:1/0");
    assert!(!stderr.contains("holds the credentials"), "{stderr}");
    let stderr = run(0o644, "redis://127.0.0.1:1/0");
    assert!(!stderr.contains("holds the credentials"), "{stderr}");
}

/// A red team's (round 44): with stdout and stderr one pipe (`2>&1`) that its host stopped reading, a server with an
/// answer it could not write did not stop on SIGTERM (nor on SIGINT, nor at the end of its input): the write,
/// blocked on the full pipe, ran on the runtime's blocking pool, which the runtime waits for as it shuts down, and
/// the transport's warning that the client was not reading waited on that same pipe. With one answer unread the
/// write is left behind as the server exits, as on a pipe of its own. (With many, rmcp's own log lines wait on the
/// pipe too: the README says so.)
#[test]
fn with_stderr_on_an_unread_protocol_pipe_sigterm_still_stops_the_server() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.txt"), "a".repeat(300_000)).unwrap();
    let audit = tempfile::tempdir().unwrap();
    let audit_log = audit.path().join("audit.jsonl");
    let (mut child, reader) = on_one_pipe(
        dir.path(),
        "files.read",
        &[("MCP_AUDIT_LOG", audit_log.to_str().unwrap())],
    );
    let mut stdin = child.stdin.take().unwrap();
    for message in [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "read_file", "arguments": {"filename": "big.txt"}}}),
    ] {
        writeln!(stdin, "{message}").unwrap();
    }
    // The answer fills the pipe and waits for a reader that never comes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&audit_log).is_ok_and(|text| text.contains("\"tool_call\"")) {
        assert!(Instant::now() < deadline, "the call was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(reader);
    drop(stdin);
    assert!(status.success() || status.code().is_some(), "{status:?}");
    let text = std::fs::read_to_string(&audit_log).unwrap();
    assert!(text.contains("\"server_stop\""), "{text}");
}

/// A review's (round 45): pointing standard error at `/dev/null` once the transport gave up on a slow host (the
/// first cut of the fix above) lost the `server_stop` record written to standard error and cut an answer in two,
/// for a host that was reading all along, slowly. Nothing written is dropped or cut.
#[test]
fn with_stderr_on_the_protocols_pipe_a_slow_reader_gets_whole_lines_and_server_stop() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.txt"), "a".repeat(900_000)).unwrap();
    let (mut child, mut reader) = on_one_pipe(dir.path(), "files.read", &[]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    )
    .unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .unwrap();
    for id in 1..=8 {
        writeln!(
            stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": "read_file", "arguments": {"filename": "big.txt"}}})
        )
        .unwrap();
    }
    drop(stdin);
    // Slowly: 64 KiB every 50 ms, to the end.
    let mut read = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buffer[..n]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    let text = String::from_utf8(read).unwrap();
    let mut stopped = false;
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            assert!(
                !line.contains("jsonrpc")
                    && !line.contains("aaaaaaaa")
                    && !line.contains("\"event\""),
                "a line cut or split: {:.300}",
                line
            );
            continue;
        };
        stopped |= value["event"] == "server_stop";
    }
    assert!(stopped, "no server_stop record reached the host");
}

/// The server on `data` with `scopes`, its standard output and standard error one pipe (a host's `2>&1`), read at
/// the returned end; its audit on standard error unless `envs` name a file.
fn on_one_pipe(
    data: &Path,
    scopes: &str,
    envs: &[(&str, &str)],
) -> (std::process::Child, std::io::PipeReader) {
    let (reader, writer) = std::io::pipe().unwrap();
    let child = Command::new(SERVER)
        .arg("--data-root")
        .arg(data)
        .args(["--scopes", scopes])
        .env_remove("MCP_AUDIT_LOG")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    (child, reader)
}
