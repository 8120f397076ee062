//! Helpers shared by the HTTP test files.

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the server's standard error until a line contains `marker` (the runner's "serving ..." line), passing
/// every line read to `check`; then keeps draining it on a thread so the server never blocks on a full pipe.
#[allow(dead_code)]
pub fn wait_until_listening(child: &mut Child, marker: &str, check: impl Fn(&str)) {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        check(&line);
        if line.contains(marker) {
            break;
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
}

/// A loopback port free now (the listener that found it is closed again), for a server started next.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
