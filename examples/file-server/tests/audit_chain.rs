//! The file server's audit file is chained (see `secure_tools::audit::chain`), across restarts and a rotation, and
//! `secure-tools audit verify` names the first record tampered with.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use secure_tools::audit::{ChainKey, ChainedFileSink};
use secure_tools_tests::interop;
use serde_json::Value;

mod command;

use command::secure_tools;

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");
const KEY: &str = "audit-chain-test-key-0123456789abcdef";

/// One run of the server over stdio with no input (a `server_start` and a `server_stop` record), with `keys`:
/// the variables naming its chain key and, if given, its checkpoint key.
fn run_server(data: &Path, audit: &Path, keys: &[(&str, &Path)]) {
    let mut command = Command::new(SERVER);
    command
        .args(["--data-root", data.to_str().unwrap(), "--audit-log"])
        .arg(audit)
        .args(["--scopes", "files.read"]);
    for (variable, path) in keys {
        command.env(variable, path);
    }
    let done = interop::run(&mut command, Duration::from_secs(60));
    assert!(done.success, "{}", done.report(Duration::ZERO));
}

/// `audit verify --json`, with the chain key and the checkpoint public key if given: exit code and result.
fn verify(files: &[&Path], key: Option<&Path>, checkpoint_key: Option<&Path>) -> (i32, Value) {
    let mut args = vec!["audit", "verify", "--json"];
    if let Some(key) = key {
        args.extend(["--key-file", key.to_str().unwrap()]);
    }
    if let Some(public) = checkpoint_key {
        args.extend(["--checkpoint-key", public.to_str().unwrap()]);
    }
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let (code, stdout, stderr) = secure_tools(&args, &[]);
    let result =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, result)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A temporary directory holding a data root, a chain key file and the audit log's path: the directory (kept while
/// the test runs), the root, the key, the log.
fn keyed_area() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let key = dir.path().join("chain.key");
    std::fs::write(&key, KEY).unwrap();
    let audit = dir.path().join("audit.jsonl");
    (dir, data, key, audit)
}

#[test]
fn the_chain_spans_restarts_and_a_rotation_and_each_tampering_is_named() {
    let (dir, data, key, audit) = keyed_area();
    run_server(&data, &audit, &[("MCP_AUDIT_CHAIN_KEY", &key)]);
    run_server(&data, &audit, &[("MCP_AUDIT_CHAIN_KEY", &key)]); // a restart
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap(); // a rotation
    run_server(&data, &audit, &[("MCP_AUDIT_CHAIN_KEY", &key)]);
    run_server(&data, &audit, &[("MCP_AUDIT_CHAIN_KEY", &key)]);
    assert!(
        lines(&audit)[0].contains("\"seq\":5"),
        "{:?}",
        lines(&audit)
    );
    let (code, result) = verify(&[&rotated, &audit], Some(&key), None);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["records"], 8);
    assert_eq!(result["last_seq"], 8);
    // Every record is sealed with the key; without it, the file is not a chain the verifier accepts.
    assert!(
        lines(&audit)
            .iter()
            .all(|l| l.contains("\"mac\":\"hmac-sha256:"))
    );
    let (code, _) = verify(&[&rotated, &audit], None, None);
    assert_eq!(code, 1);

    let whole: Vec<String> = lines(&rotated).into_iter().chain(lines(&audit)).collect();
    let tampered = dir.path().join("tampered.jsonl");
    let check = |records: &[String]| -> Value {
        std::fs::write(&tampered, records.join("\n") + "\n").unwrap();
        let (code, result) = verify(&[&tampered], Some(&key), None);
        assert_eq!(code, 1, "{result}");
        result["problem"].clone()
    };
    // One byte of a middle record.
    let mut edited = whole.clone();
    edited[3] = edited[3].replacen("\"eof\"", "\"eog\"", 1);
    assert_ne!(edited[3], whole[3]);
    let problem = check(&edited);
    assert_eq!(
        (&problem["kind"], &problem["seq"]),
        (&"altered".into(), &4.into())
    );
    // One record deleted.
    let mut deleted = whole.clone();
    deleted.remove(4);
    let problem = check(&deleted);
    assert_eq!(
        (&problem["kind"], &problem["seq"]),
        (&"removed".into(), &5.into())
    );
    // Two swapped.
    let mut swapped = whole.clone();
    swapped.swap(5, 6);
    let problem = check(&swapped);
    assert_eq!(problem["kind"], "out_of_order");
    assert_eq!(
        (&problem["seq"], &problem["expected"]),
        (&7.into(), &6.into())
    );
    // The head cut off: reported, unless the oldest files of a rotated set are said to be removed on purpose.
    let problem = check(&whole[2..]);
    assert_eq!(
        (&problem["kind"], &problem["first_seq"]),
        (&"head_missing".into(), &3.into())
    );
    let (code, stdout, stderr) = secure_tools(
        &[
            "audit",
            "verify",
            "--mid-chain",
            "--key-file",
            key.to_str().unwrap(),
            tampered.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("intact: 6 records"), "{stdout}");
    // A forgery re-chained from scratch, consistently, by someone without the key.
    let forged = dir.path().join("forged.jsonl");
    let forger = ChainedFileSink::append_to(&forged, ChainKey::from_bytes(&[1; 32])).unwrap();
    for line in &whole {
        forger
            .append_object(serde_json::from_str(line).unwrap())
            .unwrap();
    }
    let (code, result) = verify(&[&forged], Some(&key), None);
    assert_eq!(code, 1, "{result}");
    assert_eq!(result["problem"]["kind"], "altered");
    assert_eq!(result["problem"]["seq"], 1);
    // Records cut from the end do not show by themselves (there are no checkpoints): the verifier reports the
    // last number, 6 instead of 8, for the reader to compare.
    std::fs::write(&tampered, whole[..6].join("\n") + "\n").unwrap();
    let (code, result) = verify(&[&tampered], Some(&key), None);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["last_seq"], 6);
}

#[test]
fn signed_checkpoints_show_a_clean_stop_a_cut_tail_and_a_file_replaced_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let chain_key = dir.path().join("chain.key");
    std::fs::write(&chain_key, KEY).unwrap();
    let signing = dir.path().join("checkpoint.key");
    let (code, stdout, stderr) = secure_tools(
        &["audit", "keygen", "--out", signing.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let public = dir.path().join("checkpoint.key.pub");
    assert_eq!(
        std::fs::read_to_string(&public).unwrap().trim(),
        stdout.trim()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&signing).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Neither half of a key pair is ever overwritten: the private one, nor (review finding) the public one.
    let kept = std::fs::read_to_string(&public).unwrap();
    let again = secure_tools(
        &["audit", "keygen", "--out", signing.to_str().unwrap()],
        &[],
    );
    assert_ne!(again.0, 0, "{}", again.2);
    let other = dir.path().join("other.key");
    std::fs::write(
        dir.path().join("other.key.pub"),
        "a public key kept elsewhere\n",
    )
    .unwrap();
    let refused = secure_tools(&["audit", "keygen", "--out", other.to_str().unwrap()], &[]);
    assert_ne!(refused.0, 0);
    assert!(
        refused.2.contains("overwrites neither half"),
        "{}",
        refused.2
    );
    assert!(!other.exists(), "no private key without its public half");
    assert_eq!(std::fs::read_to_string(&public).unwrap(), kept);
    let audit = dir.path().join("audit.jsonl");
    for _ in 0..2 {
        run_server(
            &data,
            &audit,
            &[
                ("MCP_AUDIT_CHAIN_KEY", &chain_key),
                ("MCP_AUDIT_CHECKPOINT_KEY", &signing),
            ],
        );
    }
    // Each run ends: server_stop, then its checkpoint.
    let whole = lines(&audit);
    assert_eq!(whole.len(), 6, "{whole:#?}");
    assert!(
        whole[5].contains("\"event\":\"checkpoint\""),
        "{}",
        whole[5]
    );
    let verify_signed = |path: &Path| verify(&[path], Some(&chain_key), Some(&public));
    let (code, result) = verify_signed(&audit);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["checkpoints"], 2);
    assert_eq!(result["ends_clean"], true);
    assert_eq!(result["unsigned_tail"], 0);

    // The tail cut after the first run's checkpoint: the chain holds, but the file no longer ends clean.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, whole[..4].join("\n") + "\n").unwrap();
    let (code, result) = verify_signed(&cut);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["ends_clean"], false);
    assert_eq!(result["unsigned_tail"], 1);

    // A file replaced by someone holding the chain key but not the checkpoint key: re-chained consistently with
    // an edit, its copied checkpoints no longer verify; without them, there are none.
    let forged = dir.path().join("forged.jsonl");
    let forger =
        ChainedFileSink::append_to(&forged, Some(ChainKey::read(&chain_key).unwrap())).unwrap();
    for line in &whole {
        forger
            .append_object(
                serde_json::from_str(&line.replacen("files.read", "files.write", 1)).unwrap(),
            )
            .unwrap();
    }
    let (code, result) = verify_signed(&forged);
    assert_eq!(code, 1, "{result}");
    assert_eq!(result["problem"]["kind"], "bad_checkpoint");
    assert_eq!(result["problem"]["seq"], 3);
    let stripped = dir.path().join("stripped.jsonl");
    let forger =
        ChainedFileSink::append_to(&stripped, Some(ChainKey::read(&chain_key).unwrap())).unwrap();
    for line in whole
        .iter()
        .filter(|l| !l.contains("\"event\":\"checkpoint\""))
    {
        forger
            .append_object(serde_json::from_str(line).unwrap())
            .unwrap();
    }
    let (code, result) = verify_signed(&stripped);
    assert_eq!(code, 1, "{result}");
    assert_eq!(result["problem"]["kind"], "no_checkpoint");
}

/// Review finding: the server, restarted, continued from whatever last record it found and its next checkpoint
/// vouched for it, so records chained onto a cleanly stopped file with the chain key (but without the checkpoint
/// key) while the server was down verified as signed. Now the server's first record on start names them
/// (`chain_resumed`), and the verifier reports them unvouched, exit 3.
#[test]
fn records_chained_on_while_the_server_was_down_are_reported_unvouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let chain_key = dir.path().join("chain.key");
    std::fs::write(&chain_key, KEY).unwrap();
    let signing = dir.path().join("checkpoint.key");
    std::fs::write(
        &signing,
        secure_tools::audit::CheckpointKey::from_seed([5; 32]).seed_hex(),
    )
    .unwrap();
    let public = dir.path().join("checkpoint.key.pub");
    std::fs::write(
        &public,
        secure_tools::audit::CheckpointKey::from_seed([5; 32]).public_hex(),
    )
    .unwrap();
    let keys = [
        ("MCP_AUDIT_CHAIN_KEY", chain_key.as_path()),
        ("MCP_AUDIT_CHECKPOINT_KEY", signing.as_path()),
    ];
    let audit = dir.path().join("audit.jsonl");
    run_server(&data, &audit, &keys); // records 1 to 3, the last a checkpoint
    // While the server is down: a record chained on with the chain key.
    let forger =
        ChainedFileSink::append_to(&audit, Some(ChainKey::read(&chain_key).unwrap())).unwrap();
    let mut forged = serde_json::Map::new();
    forged.insert("ts".into(), "2026-12-05T02:35:04.981561Z".into());
    forged.insert("server_id".into(), "secure-file-server".into());
    forged.insert("event".into(), "server_stop".into());
    forged.insert("reason".into(), "eof".into());
    forger.append_object(forged).unwrap(); // 4
    drop(forger);
    run_server(&data, &audit, &keys);
    let whole = lines(&audit);
    let resumed: Value = serde_json::from_str(&whole[4]).unwrap();
    assert_eq!(resumed["event"], "chain_resumed", "{whole:#?}");
    let (code, result) = verify(&[&audit], Some(&chain_key), Some(&public));
    assert_eq!(code, 3, "{result}");
    assert_eq!(result["problem"], Value::Null, "{result}");
    assert_eq!(
        (
            &result["unvouched"][0]["from"],
            &result["unvouched"][0]["to"],
            &result["unvouched"][0]["checkpoint"]
        ),
        (&4.into(), &4.into(), &3.into()),
        "{result}"
    );
    // A clean restart after that adds no range.
    run_server(&data, &audit, &keys);
    let (code, result) = verify(&[&audit], Some(&chain_key), Some(&public));
    assert_eq!(
        (code, &result["unvouched_ranges"]),
        (3, &1.into()),
        "{result}"
    );
}

/// Review finding: a record whose write failed part-way (a full disk) left its beginning in the file, and the next
/// record was appended to it on the same line: both lost to the verifier, and the server would not start again on
/// that file. Now what a failed write wrote is cut off again. The server runs with a file size limit of 1 KiB
/// (`RLIMIT_FSIZE`, SIGXFSZ ignored): its `server_start` record fits, the record of its call does not, its
/// `server_stop` record fits again.
#[test]
fn a_record_whose_write_fails_part_way_leaves_no_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("greeting.txt"), "hello\n").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let input = dir.path().join("input.jsonl");
    let messages = [
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "a-client-with-a-rather-long-name-to-fill-the-record", "version": "1"}}}),
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"filename": "greeting.txt"}}}),
    ];
    let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
    std::fs::write(&input, text).unwrap();
    // The limit set in the child before it runs the server (SIGXFSZ ignored, so a write past it fails with EFBIG
    // instead of killing the process); in bytes, whatever shell would have counted blocks in.
    let mut command = Command::new(SERVER);
    command
        .args(["--data-root", data.to_str().unwrap(), "--audit-log"])
        .arg(&audit)
        .args(["--scopes", "files.read"])
        .stdin(std::fs::File::open(&input).unwrap());
    // SAFETY: `setrlimit` and `signal` are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let done = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        stderr.contains("File too large"),
        "no write failed: {stderr}"
    );
    let written = lines(&audit);
    for line in &written {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let events: Vec<String> = written
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        events.first().map(String::as_str),
        Some("server_start"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e == "tool_call"), "{events:?}");
    let (code, result) = verify(&[&audit], None, None);
    assert_eq!(code, 0, "{result}");
    // And the server starts again on it, continuing its chain.
    run_server(&data, &audit, &[]);
    let (code, result) = verify(&[&audit], None, None);
    assert_eq!(code, 0, "{result}");
}

/// Operator's trial: after a crash or a power loss cut the audit file's last line short, the server refused to
/// start on it, naming a keyed/unkeyed mix-up. It now cuts the fragment off, names it in an `incomplete_line_cut`
/// record stamped with its own server id, and carries on; the verifier finds the chain intact and notes the cut,
/// and a keyed chain verified without its key is told so (not "not a chained record").
#[test]
fn a_restart_after_a_write_cut_short_carries_the_chain_on() {
    let (_dir, data, key, audit) = keyed_area();
    run_server(&data, &audit, &[("MCP_AUDIT_CHAIN_KEY", &key)]);
    let whole = std::fs::read(&audit).unwrap();
    std::fs::write(&audit, &whole[..whole.len() - 50]).unwrap();
    run_server(&data, &audit, &[("MCP_AUDIT_CHAIN_KEY", &key)]);
    let records: Vec<Value> = lines(&audit)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "server_start",
            "incomplete_line_cut",
            "server_start",
            "server_stop"
        ]
    );
    assert_eq!(records[1]["server_id"], "secure-file-server");
    assert_eq!(records[1]["bytes"].as_u64().unwrap() + 50, {
        let first_newline = whole.iter().position(|b| *b == b'\n').unwrap();
        (whole.len() - first_newline - 1) as u64
    });
    let (code, result) = verify(&[&audit], Some(&key), None);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["records"], 4);
    assert_eq!(result["lines_cut"][0]["seq"], 2, "{result}");
    let (code, stdout, _) = secure_tools(
        &[
            "audit",
            "verify",
            "--key-file",
            key.to_str().unwrap(),
            audit.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("intact: 4 records") && stdout.contains("cut off an incomplete last line"),
        "{stdout}"
    );
    let (code, stdout, _) = secure_tools(&["audit", "verify", audit.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("verify it with --key-file"), "{stdout}");
    let (code, _, stderr) = secure_tools(&["audit", "verify", "/nonexistent/audit.jsonl"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/audit.jsonl"), "{stderr}");
}

/// Red-team finding: one keygen private key given as both the chain key and the checkpoint key started without a
/// word, and the verifier, which needs the chain key, took it as `--key-file`: whoever verified could re-chain and
/// re-sign a forged log, which then verified intact. The server refuses to start with the checkpoint key (or its
/// public half, or a copy of either) as the chain key, and the verifier refuses a `--key-file` that is the public
/// key it is given, or keygen's private key.
#[test]
fn a_checkpoint_key_given_as_the_chain_key_is_refused_by_the_server_and_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let signing = dir.path().join("ck.key");
    let (code, _, stderr) = secure_tools(
        &["audit", "keygen", "--out", signing.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let public = dir.path().join("ck.key.pub");
    let copy = |from: &Path, name: &str| {
        let to = dir.path().join(name);
        std::fs::copy(from, &to).unwrap();
        to
    };
    let (seed_copy, public_copy) = (copy(&signing, "seed"), copy(&public, "public"));
    let own = dir.path().join("chain.key");
    std::fs::write(&own, KEY).unwrap();
    let start = |chain: &Path| {
        let mut command = Command::new(SERVER);
        command
            .args(["--data-root", data.to_str().unwrap(), "--audit-log"])
            .arg(&audit)
            .args(["--scopes", "files.read"])
            .env("MCP_AUDIT_CHAIN_KEY", chain)
            .env("MCP_AUDIT_CHECKPOINT_KEY", &signing);
        interop::run(&mut command, Duration::from_secs(60))
    };
    for (chain, says) in [
        (&signing, "ck.key.pub is beside it"),
        (&public, "checkpoint public key"),
        (&seed_copy, "holds the checkpoint signing key"),
        (&public_copy, "holds the checkpoint public key"),
    ] {
        let done = start(chain);
        assert!(!done.success, "{chain:?} taken");
        assert!(
            done.stderr.contains("--audit-chain-key") && done.stderr.contains(says),
            "{chain:?}: {}",
            done.stderr
        );
    }
    assert!(!audit.exists(), "a refused start wrote the log");
    let done = start(&own);
    assert!(done.success, "{}", done.report(Duration::ZERO));
    for (chain, says) in [
        (&signing, "ck.key.pub is beside it"),
        (&public_copy, "holds the checkpoint public key"),
        // The verifier has no signing key: a seed whose public key it is given is found all the same.
        (&seed_copy, "holds the checkpoint signing key"),
    ] {
        let (code, stdout, stderr) = secure_tools(
            &[
                "audit",
                "verify",
                "--key-file",
                chain.to_str().unwrap(),
                "--checkpoint-key",
                public.to_str().unwrap(),
                audit.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 2, "{chain:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{chain:?}: {stderr}");
    }
    let (code, stdout, stderr) = secure_tools(
        &[
            "audit",
            "verify",
            "--key-file",
            own.to_str().unwrap(),
            "--checkpoint-key",
            public.to_str().unwrap(),
            audit.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
}
