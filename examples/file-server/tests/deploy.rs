//! The deployment recipes, checked: the image built from `scratch` around the same binary the other tests run
//! (`podman build`; these machines build images but cannot run containers, so its root filesystem is run with
//! `chroot` instead), and the systemd unit (`systemd-analyze verify` and its offline security score).
//!
//! `.ci/run` installs `podman` when it is missing. `systemd-analyze` comes with systemd.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use secure_tools_tests::interop::repo_root;
use serde_json::Value;

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    run(Command::new("bash")
        .arg(repo_root().join("deploy/rootfs.sh"))
        .arg(SERVER)
        .arg(&rootfs));
    rootfs
}

/// Every path in the layers of a `docker-archive`, with its owner.
fn image_files(archive: &Path, dir: &Path) -> BTreeSet<(String, String)> {
    let unpacked = dir.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&unpacked));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("manifest.json")).unwrap())
            .unwrap();
    let mut files = BTreeSet::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let listing = run(Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(unpacked.join(layer.as_str().unwrap())));
        for line in listing.lines() {
            // `-rwxr-xr-x 0/0 12345 2026-12-05 04:00 usr/local/bin/secure-file-server`
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5..].join(" ");
            files.insert((path.trim_end_matches('/').to_owned(), fields[1].to_owned()));
        }
    }
    files
}

#[test]
fn the_image_from_scratch_holds_the_binary_and_what_it_links_and_runs_as_nonroot() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = rootfs(dir.path());
    let tag = format!("localhost/secure-file-server-test:{}", std::process::id());
    // podman with a store of its own in the temporary directory: everything the build makes (the `host` stage's
    // image, 80 MB, was left behind by every run in the machine's store) goes with it.
    let store = dir.path().join("store");
    let podman = || {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"));
        command
    };
    run(podman()
        .args([
            "build",
            "--quiet",
            "--format",
            "docker",
            "--build-arg",
            "ROOTFS=host",
            "-t",
            &tag,
            "-f",
        ])
        .arg(repo_root().join("deploy/Containerfile"))
        .arg(dir.path()));
    let inspected: Value =
        serde_json::from_str(&run(podman().args(["image", "inspect", &tag]))).unwrap();
    let archive = dir.path().join("image.tar");
    run(podman()
        .args(["save", "--format", "docker-archive", "-o"])
        .arg(&archive)
        .arg(&tag));
    let _ = podman().args(["rmi", "-f", &tag]).output();

    let config = &inspected[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/secure-file-server"])
    );
    let volumes: BTreeSet<&str> = config["Volumes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(volumes, BTreeSet::from(["/audit", "/data"]));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"DATA_ROOT=/data") && env.contains(&"MCP_AUDIT_LOG=/audit/audit.jsonl"),
        "{env:?}"
    );
    // podman shows the health check beside the configuration.
    let health = &inspected[0]["Healthcheck"]["Test"];
    assert_eq!(
        health,
        &serde_json::json!(["CMD", "/usr/local/bin/secure-file-server", "healthcheck"]),
        "{inspected}"
    );

    // Exactly the binary, its libraries and loader, the passwd and group files, and the two volumes (owned by
    // the user the server runs as); no shell, nothing else.
    let files = image_files(&archive, dir.path());
    let regular: BTreeSet<&str> = files
        .iter()
        .map(|(path, _)| path.as_str())
        .filter(|path| rootfs.join(path).is_file())
        .collect();
    let linked: BTreeSet<String> = run(Command::new("ldd").arg(SERVER))
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some(path[1..].to_owned()),
                [path, ..] if path.starts_with('/') => Some(path[1..].to_owned()),
                _ => None,
            }
        })
        .collect();
    let mut expected: BTreeSet<&str> = linked.iter().map(String::as_str).collect();
    expected.extend([
        "usr/local/bin/secure-file-server",
        "etc/passwd",
        "etc/group",
    ]);
    assert_eq!(regular, expected);
    assert!(!files.iter().any(|(path, _)| path.ends_with("bin/sh")));
    for volume in ["data", "audit"] {
        let owner = files
            .iter()
            .find(|(path, _)| path == volume)
            .map(|(_, owner)| owner.as_str());
        assert_eq!(owner, Some("65532/65532"), "/{volume}");
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    // The root filesystem is enough to run the server, as the unprivileged user.
    let version = run(Command::new("chroot")
        .args(["--userspec=65532:65532"])
        .arg(&rootfs)
        .args(["/usr/local/bin/secure-file-server", "--version"]));
    assert!(version.starts_with("secure-file-server "), "{version}");
    // Over stdio there is no address to ask: the health check passes while the server runs.
    run(Command::new("chroot")
        .args(["--userspec=65532:65532"])
        .arg(&rootfs)
        .args(["/usr/local/bin/secure-file-server", "healthcheck"]));
}

/// The health check resolves the server's settings as the server does: give it the server's environment.
fn healthcheck(env: &[(&str, &str)]) -> std::process::Output {
    Command::new(SERVER)
        .arg("healthcheck")
        .envs(env.iter().copied())
        .env("MCP_AUTH_HS256_SECRET", HEALTH_SECRET)
        .output()
        .unwrap()
}

const HEALTH_SECRET: &str = "health-check-test-secret-of-32-bytes!";

#[test]
fn the_health_check_asks_an_http_server_and_fails_when_none_answers() {
    let env = |bind: &str, port: u16| {
        [
            ("MCP_HTTP", bind.to_owned()),
            ("MCP_AUTH_ISSUER", "https://issuer.test".to_owned()),
            ("MCP_RESOURCE_URL", format!("http://127.0.0.1:{port}/mcp")),
        ]
    };
    let check = |port: u16| {
        let env = env(&format!("0.0.0.0:{port}"), port);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        healthcheck(&env)
    };
    // Kept to the end: it holds the server's directory.
    let bearer = common::BearerHttp::new(SERVER, "https://issuer.test", HEALTH_SECRET);
    // The server must be told its port (its resource URL names it): one held by the test, then released to it.
    let (mut server, _, port) = common::start_on_a_held_port(|held| {
        // Nothing listens yet (the port is held, never listening).
        let refused = check(held.port());
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("cannot connect"),
            "{refused:?}"
        );
        let (mut command, _) = bearer.command(held.port());
        let port = held.release();
        (command.spawn().unwrap(), port)
    });
    let healthy = check(port);
    let _ = server.kill();
    let _ = server.wait();
    assert!(healthy.status.success(), "{healthy:?}");
}

/// Trial finding: a server that takes the connection but never answers (frozen, overloaded) failed the check with
/// `Resource temporarily unavailable (os error 11)`: it now says it had no answer in time.
#[test]
fn the_health_check_of_a_server_that_never_answers_says_so() {
    // The kernel completes connections in the backlog; nothing reads or answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let failed = healthcheck(&[
        ("MCP_HTTP", &format!("127.0.0.1:{port}")),
        ("MCP_AUTH_ISSUER", "https://issuer.test"),
        ("MCP_RESOURCE_URL", &format!("http://127.0.0.1:{port}/mcp")),
    ]);
    drop(silent);
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(said.contains("no answer from 127.0.0.1:"), "{said}");
    assert!(said.contains("within 3s"), "{said}");
    assert!(!said.contains("os error"), "{said}");
}

/// Review finding: the health check read the address from `--http` / `MCP_HTTP` only, so a server that took it
/// from its config file was never asked, and the check passed whether it answered or not.
#[test]
fn the_health_check_takes_the_address_from_the_config_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let config = config.to_str().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // The server must be told its port (its resource URL names it): one held by the test, then released to it.
    let (mut server, _, ()) = common::start_on_a_held_port(|held| {
        let port = held.port();
        std::fs::write(
            config,
            format!(
                "http = \"127.0.0.1:{port}\"\nissuer = \"https://issuer.test\"\n\
                 resource-url = \"http://127.0.0.1:{port}/mcp\"\n"
            ),
        )
        .unwrap();
        // Nothing listens yet (the port is held, never listening).
        let refused = healthcheck(&[("MCP_CONFIG", config)]);
        assert!(!refused.status.success(), "nothing listens: {refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("cannot connect"),
            "{refused:?}"
        );
        held.release();
        let server = Command::new(SERVER)
            .arg("--data-root")
            .arg(&data)
            .env("MCP_CONFIG", config)
            .env("MCP_AUTH_HS256_SECRET", HEALTH_SECRET)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (server, ())
    });
    let healthy = healthcheck(&[("MCP_CONFIG", config)]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(healthy.status.success(), "{healthy:?}");
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let dir = tempfile::tempdir().unwrap();
    let unit =
        std::fs::read_to_string(repo_root().join("deploy/secure-file-server.service")).unwrap();
    // `verify` checks that ExecStart's program exists: point it at the binary under test.
    let unit = unit.replace("/usr/local/bin/secure-file-server", SERVER);
    let path = dir.path().join("secure-file-server.service");
    std::fs::write(&path, unit).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path));
    let line = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{security}"));
    // `... exposure level for secure-file-server.service: 1.2 OK`
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        score <= 2.0,
        "exposure {score}, want 2.0 or less:\n{security}"
    );
    for directive in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=",
        "DynamicUser=yes",
    ] {
        assert!(
            std::fs::read_to_string(&path).unwrap().contains(directive),
            "{directive}"
        );
    }
}
