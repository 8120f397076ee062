//! The `secure-tools` command as a process: its exit codes for an intact and a tampered audit file, and for a
//! check that names no server. (Its presence also makes `cargo test` build the binary, which the file server's
//! integrity and audit tests run.)

use std::process::Command;

use secure_tools::audit::{AuditEvent, AuditRecord, AuditSink, ChainedFileSink, Timestamp};

const CLI: &str = env!("CARGO_BIN_EXE_secure-tools");

fn record(reason: &str) -> AuditRecord {
    AuditRecord {
        ts: Timestamp(std::time::SystemTime::now()),
        server_id: "cli-test".into(),
        event: AuditEvent::ServerStop {
            reason: reason.into(),
        },
    }
}

#[test]
fn audit_verify_exits_0_when_intact_and_1_naming_the_record_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = ChainedFileSink::append_to(&path, None).unwrap();
    for reason in ["a", "b", "c"] {
        sink.write(&record(reason)).unwrap();
    }
    let verify = || {
        Command::new(CLI)
            .args(["audit", "verify"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = verify();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("intact: 3 records, numbered 1 to 3"),
        "{text}"
    );
    let edited =
        std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"reason\":\"b\"", "\"reason\":\"B\"", 1);
    std::fs::write(&path, edited).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("record 2 was altered"), "{text}");
}

#[test]
fn check_without_a_server_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("tools.lock.json");
    secure_tools::integrity::ToolsLock::from_listed(Vec::new())
        .write(&lock)
        .unwrap();
    let out = Command::new(CLI)
        .args(["check", "--lock"])
        .arg(&lock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("name the server"));
}
