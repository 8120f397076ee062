//! Running the `secure-tools` command, for the test files that drive it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use secure_tools_tests::interop::{self, repo_root};

/// A run's limit; each normally takes a second or two.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The `secure-tools` command, built by `cargo test --workspace` beside the file server (its own package's
/// integration test makes cargo build it).
pub fn cli() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_secure-file-server")).with_file_name("secure-tools");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), or build it first \
         (`cargo build -p secure-tools --features command --bin secure-tools`)",
        path.display()
    );
    path
}

/// Runs the command from the repository root with `env` added; its exit code (-1 if killed), stdout and stderr.
pub fn secure_tools(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(cli());
    command.args(args).current_dir(repo_root());
    for (name, value) in env {
        command.env(name, value);
    }
    let done = interop::run(&mut command, TIMEOUT);
    (done.code().unwrap_or(-1), done.stdout, done.stderr)
}
