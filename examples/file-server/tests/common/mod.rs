//! Helpers shared by the HTTP test files.
//!
//! Ports: a port found free and closed again (`free_port`) can be taken by another process (another test running in
//! parallel) before the program it is meant for binds it. So a server is started on port 0, binding a port nobody
//! holds, and the test reads the address from the line it prints ([`Listening`]); a port the server must be told
//! in advance (its resource URL names it) is held by the test until the server is started ([`HeldPort`],
//! [`start_on_a_held_port`], or [`retry_on_a_held_port`] for a server in the test's own process); a listener the
//! test runs itself stays bound from the start.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::{Child, ExitStatus, Stdio};

/// The start of the line the runner prints once it listens for MCP, over HTTP or HTTPS (the URL follows).
const SERVING_MCP: &str = "serving MCP over HTTP";

/// How many times [`start_on_a_held_port`] starts a server that found its port taken.
const ATTEMPTS: usize = 5;

/// Reads the server's standard error until a line contains `marker` (the runner's "serving ..." line), passing
/// every line read to `check`; then keeps draining it on a thread so the server never blocks on a full pipe.
/// Returns the lines read, with the addresses the server says it bound.
#[allow(dead_code)]
pub fn wait_until_listening(child: &mut Child, marker: &str, check: impl Fn(&str)) -> Listening {
    read_until(child, marker, check)
        .unwrap_or_else(|said| panic!("server exited before listening:\n{}", said.join("")))
}

/// [`wait_until_listening`], or the lines the server wrote before it exited without printing `marker` (for a
/// test of a server that may refuse to start).
#[allow(dead_code)]
pub fn read_until(
    child: &mut Child,
    marker: &str,
    check: impl Fn(&str),
) -> Result<Listening, Vec<String>> {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            return Err(lines);
        }
        check(&line);
        let found = line.contains(marker);
        lines.push(line);
        if found {
            break;
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    Ok(Listening { lines })
}

/// A child process killed, and waited for, when dropped: a server whose test fails (an assertion panics) stops
/// with it instead of running on. Derefs to the [`Child`].
#[allow(dead_code)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Runs `command`, a server expected to refuse to start: spawned with its standard error piped (its standard
/// output discarded) and read until it exits. A server that says it listens instead fails the test (and is
/// killed) rather than running until the test times out. Returns its exit status and what it wrote.
#[allow(dead_code)]
pub fn refused_start(command: &mut std::process::Command) -> (ExitStatus, String) {
    let mut child = KillOnDrop(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the server"),
    );
    match read_until(&mut child, SERVING_MCP, |_| {}) {
        Ok(listening) => panic!(
            "the server started instead of refusing to:\n{}",
            listening.text()
        ),
        Err(lines) => (child.wait().expect("the server's exit"), lines.concat()),
    }
}

/// `server` started over HTTP on loopback (`--http 127.0.0.1:0`) with `data_root`, `args` and the variables `envs`
/// (no HS256 secret of the environment's own), expected to refuse to start: what it wrote on standard error.
#[allow(dead_code)]
pub fn refused_http_start<V: AsRef<std::ffi::OsStr>>(
    server: &str,
    data_root: &std::path::Path,
    args: &[&str],
    envs: &[(&str, V)],
) -> String {
    let mut command = std::process::Command::new(server);
    command
        .arg("--data-root")
        .arg(data_root)
        .args(["--http", "127.0.0.1:0"])
        .args(args)
        .env_remove("MCP_AUTH_HS256_SECRET")
        .stdin(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    let (status, stderr) = refused_start(&mut command);
    assert!(!status.success(), "{stderr}");
    stderr
}

/// What a server wrote on its standard error up to the line saying it listens, among it the addresses of its
/// listeners: one given port 0 is found here.
#[allow(dead_code)]
pub struct Listening {
    lines: Vec<String>,
}

#[allow(dead_code)]
impl Listening {
    /// The URL in the server's line `serving {what} at URL`: `MCP over HTTP` gives `http://127.0.0.1:PORT/mcp`,
    /// `metrics` (with `--http-metrics`) `http://127.0.0.1:PORT/metrics`.
    pub fn url(&self, what: &str) -> String {
        let prefix = format!("serving {what} at ");
        self.lines
            .iter()
            .find_map(|line| line.trim_end().split_once(&prefix))
            .map(|(_, url)| url.split_whitespace().next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{}", self.lines.join("")))
    }

    /// Everything the server wrote up to that line.
    pub fn text(&self) -> String {
        self.lines.concat()
    }

    /// The address in [`url`](Self::url)'s URL.
    pub fn address(&self, what: &str) -> SocketAddr {
        let url = self.url(what);
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        authority
            .parse()
            .unwrap_or_else(|e| panic!("`{url}` names no address: {e}"))
    }
}

/// A loopback port free now: the listener that found it is closed again, so another process can take it before
/// the program it is for binds it. Only for a program that must be given its port and cannot report one it chose
/// (`redis-server`, HAProxy); the file server binds port 0 and says its address, or is given a [`HeldPort`].
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A loopback TCP port bound by this process and never listening: no other process can bind it (the kernel gives
/// it to no one asking for port 0 either), and connections to it are refused, for as long as it is held. Kept for
/// an address where nothing must answer, or released to the server started next ([`start_on_a_held_port`]).
#[allow(dead_code)]
pub struct HeldPort {
    _socket: OwnedFd,
    port: u16,
}

#[allow(dead_code)]
impl HeldPort {
    pub fn new() -> HeldPort {
        use std::os::fd::FromRawFd;
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut bound = address;
        let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: a new socket, owned by the `OwnedFd` at once, bound and asked its address through the C API with
        // a `sockaddr_in` of the length given.
        let socket = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let socket = OwnedFd::from_raw_fd(fd);
            let done = libc::bind(fd, (&address as *const libc::sockaddr_in).cast(), length);
            assert_eq!(done, 0, "bind: {}", std::io::Error::last_os_error());
            let done = libc::getsockname(
                fd,
                (&mut bound as *mut libc::sockaddr_in).cast(),
                &mut length,
            );
            assert_eq!(done, 0, "getsockname: {}", std::io::Error::last_os_error());
            socket
        };
        HeldPort {
            _socket: socket,
            port: u16::from_be(bound.sin_port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes the socket, for the server started next to bind the port.
    pub fn release(self) -> u16 {
        self.port
    }
}

/// Starts a server that must be told its loopback port before it binds it, as one whose resource URL (and so
/// the tokens' audience) names the port: given port 0 it would say which port it took only once it is too late to
/// name it. `start` gets a [`HeldPort`], releases it as it spawns the server on it (standard error piped) and
/// returns the server with what the test keeps. Another process can still take the port between its release and
/// the server's bind; the server then exits saying the address is in use, and is started again on another port.
/// (The test never reaches another process's server on the port: the server is ready once it says it listens.)
/// The server is returned as a [`KillOnDrop`].
#[allow(dead_code)]
pub fn start_on_a_held_port<T>(
    mut start: impl FnMut(HeldPort) -> (Child, T),
) -> (KillOnDrop, Listening, T) {
    retry_on_a_held_port(|held| {
        let (child, kept) = start(held);
        let mut child = KillOnDrop(child);
        match read_until(&mut child, SERVING_MCP, |_| {}) {
            Ok(listening) => Ok((child, listening, kept)),
            Err(lines) => {
                let _ = child.wait();
                Err(lines.concat())
            }
        }
    })
}

/// [`start_on_a_held_port`] for any server, one in the test's own process among them: `start` gets a
/// [`HeldPort`], releases it as it starts the server on it, and returns the server once it is ready by a sign of
/// its own (never by something answering on the port, which could be another process), or what it said if it
/// stopped before (its error). A server that stopped saying the address is in use is started again on another
/// port; any other failure fails the test.
#[allow(dead_code)]
pub fn retry_on_a_held_port<T>(mut start: impl FnMut(HeldPort) -> Result<T, String>) -> T {
    let in_use = std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    let mut said = String::new();
    for _ in 0..ATTEMPTS {
        match start(HeldPort::new()) {
            Ok(started) => return started,
            Err(stopped) => {
                assert!(
                    stopped.contains(&in_use),
                    "server exited before listening:\n{stopped}"
                );
                said = stopped;
            }
        }
    }
    panic!("the server found its port taken {ATTEMPTS} times:\n{said}");
}

/// The file server over HTTP with bearer tokens (an HS256 `secret`, tokens from `issuer`), serving an empty data
/// root in a temporary directory and auditing to `audit.jsonl` beside it (outside the root, as the server
/// requires).
#[allow(dead_code)]
pub struct BearerHttp {
    pub data: std::path::PathBuf,
    pub audit_log: std::path::PathBuf,
    pub dir: tempfile::TempDir,
    server: String,
    issuer: String,
    secret: String,
    /// Served over HTTPS with this certificate and key, at `https://localhost:PORT/mcp`.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// A [`BearerHttp`] server started and listening.
#[allow(dead_code)]
pub struct Started {
    pub child: KillOnDrop,
    /// The MCP endpoint's URL, also the resource URL (the tokens' audience).
    pub url: String,
    pub port: u16,
    /// What it said as it started (the address of its metrics, with `--http-metrics 127.0.0.1:0`).
    pub listening: Listening,
}

#[allow(dead_code)]
impl BearerHttp {
    pub fn new(server: &str, issuer: &str, secret: &str) -> BearerHttp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the data root");
        let audit_log = dir.path().join("audit.jsonl");
        BearerHttp {
            data,
            audit_log,
            dir,
            server: server.to_owned(),
            issuer: issuer.to_owned(),
            secret: secret.to_owned(),
            tls: None,
        }
    }

    /// Served over HTTPS, with a certificate for `localhost` signed by a CA made here: returns the CA's PEM file,
    /// for the clients to trust.
    pub fn over_tls(&mut self) -> std::path::PathBuf {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "secure-tools test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let write = |name: &str, text: String| {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key) = (
            write("server.pem", cert.pem()),
            write("server.key", key.serialize_pem()),
        );
        std::fs::set_permissions(
            &key,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        self.tls = Some((cert, key));
        write("ca.pem", ca.pem())
    }

    /// The command serving on the loopback `port`, its standard error piped for [`wait_until_listening`], to add
    /// to and spawn; and the MCP endpoint's URL.
    pub fn command(&self, port: u16) -> (std::process::Command, String) {
        use std::process::Stdio;
        let url = match self.tls {
            Some(_) => format!("https://localhost:{port}/mcp"),
            None => format!("http://127.0.0.1:{port}/mcp"),
        };
        let mut command = std::process::Command::new(&self.server);
        if let Some((cert, key)) = &self.tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        command
            .arg("--data-root")
            .arg(&self.data)
            .arg("--audit-log")
            .arg(&self.audit_log)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(["--issuer", &self.issuer, "--resource-url", &url])
            .env("MCP_AUTH_HS256_SECRET", &self.secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        (command, url)
    }

    /// The server with `configure`'s further flags and variables, started on a port of its own
    /// ([`start_on_a_held_port`]), once it listens.
    pub fn start(&self, mut configure: impl FnMut(&mut std::process::Command)) -> Started {
        let (child, listening, (url, port)) = start_on_a_held_port(|held| {
            let (mut command, url) = self.command(held.port());
            configure(&mut command);
            let port = held.release();
            (command.spawn().expect("starting the server"), (url, port))
        });
        Started {
            child,
            url,
            port,
            listening,
        }
    }
}

/// A refusal of the HTTP runner's own, checked as the official SDK clients need it to surface its reason: `status`,
/// `Content-Type: application/json`, and a JSON-RPC error body (`id` null: the request is refused before its body
/// is read) whose code is `code` and whose message starts with `reason`. Returns the headers and the body.
#[allow(dead_code)]
pub async fn jsonrpc_refusal(
    response: reqwest::Response,
    status: u16,
    code: i64,
    reason: &str,
) -> (reqwest::header::HeaderMap, serde_json::Value) {
    let headers = response.headers().clone();
    assert_eq!(response.status().as_u16(), status, "{reason}: {headers:?}");
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let text = response.text().await.unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{reason}: content-type `{content_type}`, body {text:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{reason}: the body is not JSON ({e}): {text:?}"));
    assert_eq!(body["jsonrpc"], "2.0", "{reason}: {body}");
    assert!(body["id"].is_null(), "{reason}: {body}");
    assert_eq!(body["error"]["code"], code, "{reason}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(reason), "{reason}: {body}");
    (headers, body)
}

/// Reads an event stream until the server ends it; fails saying `why` if no chunk and no end comes for `quiet`.
#[allow(dead_code)]
pub async fn read_until_the_stream_ends(
    stream: &mut reqwest::Response,
    quiet: std::time::Duration,
    why: &str,
) {
    loop {
        match tokio::time::timeout(quiet, stream.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => panic!("{why}"),
        }
    }
}
