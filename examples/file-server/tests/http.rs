//! The file server over streamable HTTP with bearer authentication: the real binary, a real HTTP client, and the
//! audit log it writes.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");
const SECRET: &str = "test-secret-0123456789abcdef0123456789";
const ISSUER: &str = "https://issuer.test";

struct Server {
    _child: common::KillOnDrop,
    base: String,
    resource: String,
    audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// The server with `args` added to its command line.
    fn start_with(args: &[&str]) -> Server {
        let bearer = common::BearerHttp::new(SERVER, ISSUER, SECRET);
        std::fs::write(bearer.data.join("greeting.txt"), "hello\n").unwrap();
        let common::Started {
            child,
            url: resource,
            ..
        } = bearer.start(|command| {
            command.args(["--max-message-bytes", "65536"]).args(args);
        });
        let base = resource.trim_end_matches("/mcp").to_owned();
        Server {
            _child: child,
            base,
            resource,
            audit_log: bearer.audit_log,
            _dir: bearer.dir,
        }
    }

    fn token(&self, claims: Value) -> String {
        sign(claims, SECRET)
    }

    fn claims(&self, subject: &str, scopes: &str) -> Value {
        let now = now();
        json!({"iss": ISSUER, "aud": self.resource, "sub": subject, "scope": scopes,
               "iat": now, "nbf": now, "exp": now + 600})
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `http_rejected` records; each names the client's address (trial finding: none did, while the records
    /// of calls and sessions do, so a flood of refused tokens could not be traced to its source).
    fn rejections(&self) -> Vec<Value> {
        let rejections: Vec<Value> = self
            .records()
            .into_iter()
            .filter(|r| r["event"] == "http_rejected")
            .collect();
        for rejection in &rejections {
            assert!(
                rejection["remote_addr"]
                    .as_str()
                    .is_some_and(|addr| addr.starts_with("127.0.0.1:")),
                "{rejection}"
            );
        }
        rejections
    }

    /// The `reason` of each `http_rejected` record, in order.
    fn rejection_reasons(&self) -> Vec<Value> {
        self.rejections()
            .into_iter()
            .map(|r| r["reason"].clone())
            .collect()
    }

    fn calls(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == "tool_call")
            .collect()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn client() -> reqwest::Client {
    // Plain HTTP: no reqwest in this workspace has a TLS backend (secure-tools fetches JWKS over https with its own
    // hyper + rustls client on an explicit provider), so no process-wide rustls provider is needed.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// A `POST` of `body` to `url_suffix` with the headers an SDK client sends, to add headers to.
fn post_request(server: &Server, url_suffix: &str, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}{url_suffix}", server.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
}

/// A `POST` of `body` to the endpoint from a browser page on `origin`, with a bearer token if given.
async fn post_from_page(
    server: &Server,
    origin: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = post_request(server, "/mcp", body).header("origin", origin);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

async fn post(
    server: &Server,
    url_suffix: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = post_request(server, url_suffix, body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A token refused: 401, a challenge naming the metadata and `invalid_token`, and an audit record with `detail`.
async fn assert_refused(server: &Server, token: &str, detail: &str) {
    let before = server.rejections().len();
    let response = post(
        server,
        "/mcp",
        Some(token),
        &call(1, "read_file", json!({"filename": "greeting.txt"})),
    )
    .await;
    assert_eq!(response.status(), 401, "{detail}");
    let header = challenge(&response);
    assert!(
        header.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            server.base
        )),
        "{header}"
    );
    assert!(header.contains("error=\"invalid_token\""), "{header}");
    let rejections = server.rejections();
    assert_eq!(rejections.len(), before + 1, "{detail}");
    let record = rejections.last().unwrap();
    assert_eq!(record["status"], 401);
    assert_eq!(record["reason"], "invalid_token");
    assert_eq!(record["detail"], detail);
    assert!(server.calls().is_empty(), "no tool ran for {detail}");
}

/// Trial finding: the challenge of a `401` named no scope, so the Python SDK's OAuth client asked the provider for
/// every scope of the metadata's `scopes_supported` (the MCP authorization spec's fallback), `files.write` for a
/// client that only reads. The MCP spec says a server SHOULD name the scopes needed in it: `--challenge-scope`.
#[tokio::test]
async fn the_challenge_names_the_scopes_configured_for_it() {
    let server = Server::start_with(&["--challenge-scope", "files.read"]);
    for token in [None, Some("not-a-token")] {
        let response = post(
            &server,
            "/mcp",
            token,
            &call(1, "read_file", json!({"filename": "greeting.txt"})),
        )
        .await;
        assert_eq!(response.status(), 401);
        let header = challenge(&response);
        assert!(header.contains("scope=\"files.read\""), "{header}");
    }
    // Not a scope (a space in it): refused at start, named.
    let mut refused = std::process::Command::new(SERVER)
        .args(["--http", "127.0.0.1:0", "--issuer", ISSUER])
        .args([
            "--resource-url",
            "http://127.0.0.1:1/mcp",
            "--data-root",
            "/tmp",
        ])
        .args(["--challenge-scope", "files read"])
        .env("MCP_AUTH_HS256_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Refused at once; one that started would serve until killed.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = refused.kill();
            panic!("the server started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--challenge-scope"), "{stderr}");
}

#[tokio::test]
async fn no_token_is_challenged_and_audited() {
    let server = Server::start();
    let response = post(
        &server,
        "/mcp",
        None,
        &call(1, "read_file", json!({"filename": "greeting.txt"})),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenge(&response),
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            server.base
        )
    );
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["reason"], "missing_token");
    assert_eq!(rejections[0]["path"], "/mcp");
    assert!(rejections[0].get("detail").is_none());

    // Another scheme is no token (RFC 6750 section 3.1: no error code for an unsupported method); it was answered
    // `invalid_token`, which tells a client its token was bad when it sent none.
    let response = post_request(
        &server,
        "/mcp",
        &call(2, "read_file", json!({"filename": "greeting.txt"})),
    )
    .header("authorization", "Basic YWxpY2U6c2VjcmV0")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    let header = challenge(&response);
    assert!(!header.contains("error="), "{header}");
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 2);
    assert_eq!(rejections[1]["reason"], "missing_token");
    assert_eq!(rejections[1]["detail"], "unsupported_scheme");
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_invalid_token() {
    let server = Server::start();
    let now = now();
    assert_refused(&server, "not-a-jwt", "malformed").await;
    let good = server.claims("mallory", "files.read");
    assert_refused(
        &server,
        &sign(good.clone(), "another-secret-0123456789abcdef0123"),
        "bad_signature",
    )
    .await;
    let mut expired = good.clone();
    expired["exp"] = json!(now - 3600);
    expired["nbf"] = json!(now - 7200);
    assert_refused(&server, &server.token(expired), "expired").await;
    let mut early = good.clone();
    early["nbf"] = json!(now + 3600);
    assert_refused(&server, &server.token(early), "not_yet_valid").await;
    let mut issuer = good.clone();
    issuer["iss"] = json!("https://other-issuer.test");
    assert_refused(&server, &server.token(issuer), "wrong_issuer").await;
    let mut audience = good.clone();
    audience["aud"] = json!("https://other-server.test/mcp");
    assert_refused(&server, &server.token(audience), "wrong_audience").await;
    let mut scope = good.clone();
    scope["scope"] = json!(["files.read", 7]);
    assert_refused(&server, &server.token(scope), "invalid_scope").await;
    let none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(good.to_string().as_bytes())
    );
    assert_refused(&server, &none, "algorithm_not_allowed").await;
}

#[tokio::test]
async fn a_token_in_the_query_string_is_ignored() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read files.write"));
    let response = post(
        &server,
        &format!("/mcp?access_token={token}"),
        None,
        &call(1, "read_file", json!({"filename": "greeting.txt"})),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(!challenge(&response).contains("error="));
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["reason"], "missing_token");
    assert_eq!(rejections[0]["detail"], "query_token_ignored");
    let log = std::fs::read_to_string(&server.audit_log).unwrap();
    assert!(
        !log.contains(&token),
        "the token never reaches the audit log"
    );
    assert!(server.calls().is_empty());
}

#[tokio::test]
async fn credentials_sent_two_ways_are_refused_as_ambiguous() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read files.write"));
    let body = call(1, "read_file", json!({"filename": "greeting.txt"}));
    // A header and a query token; then two headers (RFC 6750: one method, once).
    let both = post(
        &server,
        &format!("/mcp?access_token={token}"),
        Some(&token),
        &body,
    )
    .await;
    let twice = post_request(&server, "/mcp", &body)
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    for response in [both, twice] {
        assert_eq!(response.status(), 400);
        assert_eq!(challenge(&response), "Bearer error=\"invalid_request\"");
    }
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 2);
    assert!(
        rejections
            .iter()
            .all(|r| r["reason"] == "invalid_request" && r["detail"] == "more_than_one_credential")
    );
    assert!(server.calls().is_empty());
}

#[tokio::test]
async fn a_read_only_token_cannot_write() {
    let server = Server::start();
    let token = server.token(server.claims("reader-7", "files.read"));
    let response = post(
        &server,
        "/mcp",
        Some(&token),
        &call(
            5,
            "write_file",
            json!({"filename": "x.txt", "content": "secret text"}),
        ),
    )
    .await;
    assert_eq!(response.status(), 403);
    let header = challenge(&response);
    assert!(
        header.starts_with("Bearer error=\"insufficient_scope\""),
        "{header}"
    );
    assert!(header.contains("scope=\"files.write\""), "{header}");
    assert!(header.contains("resource_metadata="), "{header}");
    assert!(
        header.contains("error_description=\"missing_scope:files.write\""),
        "{header}"
    );
    // A JSON-RPC error, which SDK clients hand to the application from a non-2xx answer, with the refusal typed.
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 5, "{body}");
    assert_eq!(body["error"]["code"], -32003, "{body}");
    assert_eq!(body["error"]["message"], "missing_scope:files.write");
    assert_eq!(
        body["error"]["data"]["requiredScopes"],
        json!(["files.write"])
    );
    assert_eq!(body["error"]["data"]["outcome"], "denied");
    assert_eq!(body["error"]["data"]["callId"].as_str().unwrap().len(), 32);
    let calls = server.calls();
    assert_eq!(calls.len(), 1, "exactly one record for the call");
    assert_eq!(calls[0]["caller"], "reader-7");
    assert_eq!(calls[0]["outcome"], "denied");
    assert_eq!(calls[0]["error"], "missing_scope:files.write");
    assert!(
        !server
            .records()
            .iter()
            .any(|r| r.to_string().contains("secret text"))
    );
    assert!(
        server.rejections().is_empty(),
        "the call's record is its only record"
    );
}

#[tokio::test]
async fn a_full_token_lists_reads_and_writes() {
    let server = Server::start();
    let mut claims = server.claims("alice", "files.read files.write");
    claims["jti"] = json!("token-7f3a");
    let token = server.token(claims);
    let list = post(
        &server,
        "/mcp",
        Some(&token),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["read_file", "write_file"]);

    let read = post(
        &server,
        "/mcp",
        Some(&token),
        &call(2, "read_file", json!({"filename": "greeting.txt"})),
    )
    .await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["result"]["structuredContent"]["content"], "hello\n");

    let write = post(
        &server,
        "/mcp",
        Some(&token),
        &call(
            3,
            "write_file",
            json!({"filename": "note.txt", "content": "written over http"}),
        ),
    )
    .await;
    assert_eq!(write.status(), 200);
    let write: Value = write.json().await.unwrap();
    assert_eq!(write["result"]["isError"], false, "{write}");
    assert_eq!(write["result"]["structuredContent"]["status"], "created");

    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c["caller"] == "alice" && c["outcome"] == "ok")
    );
    // Each record names the token used, the transport and the peer; the write's `call_started` record too.
    for record in server
        .records()
        .iter()
        .filter(|r| r["event"] == "tool_call" || r["event"] == "call_started")
    {
        assert_eq!(record["token_id"], "token-7f3a", "{record}");
        assert_eq!(record["transport"], "http");
        assert!(
            record["remote_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
    }
    assert_ne!(calls[0]["call_id"], calls[1]["call_id"]);
    assert!(server.rejections().is_empty());
    let start = &server.records()[0];
    assert_eq!(start["event"], "server_start");
    assert_eq!(start["transport"], "http");
}

#[tokio::test]
async fn protected_resource_metadata_lists_the_tool_scopes() {
    let server = Server::start();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = client()
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let metadata: Value = response.json().await.unwrap();
        assert_eq!(
            metadata,
            json!({
                "resource": server.resource,
                "authorization_servers": [ISSUER],
                "scopes_supported": ["files.read", "files.write"],
                "bearer_methods_supported": ["header"],
            })
        );
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_audited() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    let body = call(1, "read_file", json!({"filename": "greeting.txt"}));
    let response = post_request(&server, "/mcp", &body)
        .header("origin", "https://evil.example")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["status"], 403);
    assert_eq!(rejections[0]["reason"], "origin_not_allowed");
    assert!(server.calls().is_empty());

    // A loopback origin is fine.
    let body = call(2, "read_file", json!({"filename": "greeting.txt"}));
    let response = post_request(&server, "/mcp", &body)
        .header("origin", "http://localhost:5173")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A CORS preflight, as a browser sends it before a cross-origin `POST` with an SDK client's headers.
fn preflight(server: &Server, origin: &str) -> reqwest::RequestBuilder {
    client()
        .request(reqwest::Method::OPTIONS, format!("{}/mcp", server.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            // The 2026-07-28 revision's `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` among them.
            "authorization,content-type,mcp-protocol-version,mcp-session-id,last-event-id,mcp-method,mcp-name,\
             mcp-param-filename",
        )
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap())
}

/// The names in a comma-separated header, lowercased.
fn names(response: &reqwest::Response, name: &str) -> Vec<String> {
    header(response, name)
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

#[tokio::test]
async fn a_browser_page_on_an_allowed_origin_can_use_the_server() {
    let server = Server::start_with(&[
        "--allowed-origin",
        "https://app.example.com",
        "--allowed-origin",
        "http://localhost:*",
    ]);
    let token = server.token(server.claims("alice", "files.read"));
    for origin in ["https://app.example.com", "http://localhost:6274"] {
        // The preflight needs no token (a browser sends none with it), and grants the SDK clients' headers.
        let response = preflight(&server, origin).send().await.unwrap();
        assert!(response.status().is_success(), "{origin}: {response:?}");
        assert_eq!(header(&response, "access-control-allow-origin"), origin);
        assert!(
            names(&response, "vary").contains(&"origin".to_owned()),
            "{response:?}"
        );
        let methods = names(&response, "access-control-allow-methods");
        for method in ["get", "post", "delete"] {
            assert!(methods.contains(&method.to_owned()), "{methods:?}");
        }
        let allowed = names(&response, "access-control-allow-headers");
        for name in [
            "authorization",
            "content-type",
            "mcp-protocol-version",
            "mcp-session-id",
            "last-event-id",
            "mcp-method",
            "mcp-name",
            "mcp-param-filename",
        ] {
            assert!(allowed.contains(&name.to_owned()), "{name}: {allowed:?}");
        }
        // A call from the page: its answer is readable there, and so are the headers a client needs.
        let body = call(1, "read_file", json!({"filename": "greeting.txt"}));
        let response = post_from_page(&server, origin, Some(&token), &body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "access-control-allow-origin"), origin);
        let exposed = names(&response, "access-control-expose-headers");
        for name in [
            "mcp-session-id",
            "mcp-protocol-version",
            "www-authenticate",
            "retry-after",
        ] {
            assert!(exposed.contains(&name.to_owned()), "{name}: {exposed:?}");
        }
        // A refusal is readable too: a client in a browser finds the authorization server through the challenge.
        let response = post_from_page(&server, origin, None, &body).await;
        assert_eq!(response.status(), 401);
        assert_eq!(header(&response, "access-control-allow-origin"), origin);
        assert!(!challenge(&response).is_empty());
        // The guard's own refusals as well (a body over the limit).
        let big = call(
            2,
            "write_file",
            json!({"filename": "big.txt", "content": "x".repeat(70_000)}),
        );
        let response = post_from_page(&server, origin, Some(&token), &big).await;
        assert_eq!(response.status(), 413);
        assert_eq!(header(&response, "access-control-allow-origin"), origin);
        // And the resource's metadata, which a browser client reads to start authorization.
        let response = client()
            .get(format!(
                "{}/.well-known/oauth-protected-resource/mcp",
                server.base
            ))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "access-control-allow-origin"), origin);
    }
    // The same document asked without an `Origin` (a native client) carries no grant, but says that it varies by
    // `Origin`: a shared cache must not hand this copy to a page, which would then be unable to read it.
    let response = client()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "");
    assert!(
        names(&response, "vary").contains(&"origin".to_owned()),
        "{response:?}"
    );
    // Preflights are not refusals: no record. The two 401s and the two 413s are.
    let reasons = server.rejection_reasons();
    assert_eq!(
        reasons,
        [
            "missing_token",
            "body_too_large",
            "missing_token",
            "body_too_large"
        ]
    );
    assert_eq!(server.calls().len(), 2);
}

/// A loopback origin passes the `Origin` check without a listing (a local tool, the same machine), but a page on
/// it is granted CORS only when listed: any local web page (a dev server, another application's UI) could
/// otherwise read a server's answers, one serving without authentication for tests above all.
#[tokio::test]
async fn a_page_on_an_unlisted_loopback_origin_gets_no_cors_grant() {
    let server = Server::start();
    let origin = "http://localhost:5173";
    let response = preflight(&server, origin).send().await.unwrap();
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        "",
        "{response:?}"
    );
    let token = server.token(server.claims("alice", "files.read"));
    let body = call(1, "read_file", json!({"filename": "greeting.txt"}));
    let response = post_from_page(&server, origin, Some(&token), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn a_preflight_from_a_foreign_origin_is_refused_and_audited() {
    let server = Server::start_with(&["--allowed-origin", "https://app.example.com"]);
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "null",
    ] {
        let response = preflight(&server, origin).send().await.unwrap();
        assert_eq!(response.status(), 403, "{origin}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            "",
            "{origin}"
        );
        assert_eq!(
            header(&response, "access-control-allow-headers"),
            "",
            "{origin}"
        );
    }
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 3, "{rejections:?}");
    for rejection in &rejections {
        assert_eq!(rejection["status"], 403);
        assert_eq!(rejection["reason"], "origin_not_allowed");
        assert_eq!(rejection["method"], "OPTIONS");
    }
    // A request without an Origin (not a browser's) gets no CORS headers.
    let token = server.token(server.claims("alice", "files.read"));
    let body = call(1, "read_file", json!({"filename": "greeting.txt"}));
    let response = post(&server, "/mcp", Some(&token), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn an_oversized_body_is_refused_and_audited() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read files.write"));
    let big = "x".repeat(70_000);
    let response = post(
        &server,
        "/mcp",
        Some(&token),
        &call(
            1,
            "write_file",
            json!({"filename": "big.txt", "content": big}),
        ),
    )
    .await;
    assert_eq!(response.status(), 413);
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["status"], 413);
    assert_eq!(rejections[0]["reason"], "body_too_large");
    assert!(server.calls().is_empty());

    // The same without a declared length (chunked), which only rmcp's limit can catch as the body streams in: refused
    // too, and audited once, with the caller (review finding: only the declared-length path was tested).
    use std::io::{Read, Write};
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The answer is read as it comes, while the body is still being sent: the server may close the connection with
    // part of the body unread, and a reset would then discard an answer left unread.
    let mut reading = stream.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = reading.read_to_end(&mut answer);
        answer
    });
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
    for _ in 0..10 {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break; // the server answered and closed before the end
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let answer = reader.join().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // The same answer as to a declared length: a JSON-RPC error naming the refusal.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json")
            && answer.contains("\"message\":\"body_too_large"),
        "{answer}"
    );
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    assert_eq!(
        (
            &rejections[1]["status"],
            &rejections[1]["reason"],
            &rejections[1]["subject"]
        ),
        (&json!(413), &json!("body_too_large"), &json!("alice"))
    );
    assert!(server.calls().is_empty());
}

#[tokio::test]
async fn a_foreign_host_is_refused_and_audited() {
    let server = Server::start();
    let response = client()
        .get(format!(
            "{}/.well-known/oauth-protected-resource",
            server.base
        ))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["reason"], "host_not_allowed");

    // The endpoint itself, with a valid token (DNS rebinding: a page of another site reaching the loopback server).
    // The guard is its only Host check (rmcp's own is off): a loopback-looking name of another host is foreign too.
    let token = server.token(server.claims("alice", "files.read"));
    for (id, host) in [
        (1, "attacker.example"),
        (2, "localhost.attacker.example:80"),
    ] {
        let body = call(id, "read_file", json!({"filename": "greeting.txt"}));
        let response = post_request(&server, "/mcp", &body)
            .header("host", host)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{host}");
    }
    let rejections = server.rejections();
    assert_eq!(rejections.len(), 3, "{rejections:?}");
    assert!(
        rejections
            .iter()
            .all(|r| r["reason"] == "host_not_allowed" && r["status"] == 403),
        "{rejections:?}"
    );
    assert!(server.calls().is_empty());
}

/// Review finding: the protocol layer's own refusals of an authenticated request (rmcp answers a media type, an
/// `Accept`, a method or a body it does not serve with `4xx` itself) wrote no record. Now each is audited once,
/// with its caller, and refusals a layer already audited are not audited twice.
#[tokio::test]
async fn the_protocol_layers_own_refusals_are_audited_once_with_their_caller() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    let bearer = format!("Bearer {token}");
    let body = call(1, "read_file", json!({"filename": "greeting.txt"}));
    let endpoint = format!("{}/mcp", server.base);
    let request = |method: reqwest::Method, content_type: &str, accept: &str, body: String| {
        client()
            .request(method, &endpoint)
            .header("content-type", content_type)
            .header("accept", accept)
            .body(body)
    };
    let both = "application/json, text/event-stream";
    let refused = [
        request(reqwest::Method::POST, "text/plain", both, body.to_string()),
        request(
            reqwest::Method::POST,
            "application/json",
            "text/html",
            body.to_string(),
        ),
        request(
            reqwest::Method::PUT,
            "application/json",
            both,
            body.to_string(),
        ),
        request(
            reqwest::Method::POST,
            "application/json",
            both,
            "{not json".into(),
        ),
    ];
    let mut statuses = Vec::new();
    for request in refused {
        let response = request
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| (400..500).contains(s)),
        "{statuses:?}"
    );
    // And one refusal of the authentication layer, audited by it.
    assert_eq!(post(&server, "/mcp", None, &body).await.status(), 401);
    let rejections = server.rejections();
    assert_eq!(rejections.len(), statuses.len() + 1, "{rejections:#?}");
    for (record, status) in rejections.iter().zip(&statuses) {
        assert_eq!(record["status"], *status, "{record}");
        assert_eq!(record["subject"], "alice", "{record}");
        assert_ne!(record["reason"], "client_error", "{record}");
    }
    assert_eq!(rejections[statuses.len()]["reason"], "missing_token");
    assert!(server.calls().is_empty());
}

/// rmcp's own refusals (a body that is not a JSON-RPC message, a missing `Accept`, another content type or method, a
/// path that is not the endpoint) were answered in plain text, which the Python SDK turns into `-32603 "Server returned an error
/// response"`, whatever the refusal: each is now a JSON-RPC error naming its reason, as the runner's own are. The
/// message is ours: rmcp's text (serde's, for a body it could not read) may quote the request.
#[tokio::test]
async fn the_protocol_layers_own_refusals_are_json_rpc_errors() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    let bearer = format!("Bearer {token}");
    let secret = "Q-secret-7213";
    let body = call(1, "read_file", json!({"filename": secret}));
    let both = "application/json, text/event-stream";
    let request =
        |method: reqwest::Method, path: &str, content_type: &str, accept: &str, body: String| {
            client()
                .request(method, format!("{}{path}", server.base))
                .header("content-type", content_type)
                .header("accept", accept)
                .header("authorization", &bearer)
                .body(body)
        };
    let cases = [
        (
            request(
                reqwest::Method::POST,
                "/mcp",
                "text/plain",
                both,
                body.to_string(),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            request(
                reqwest::Method::POST,
                "/mcp",
                "application/json",
                "text/html",
                body.to_string(),
            ),
            406,
            "not_acceptable",
        ),
        (
            request(
                reqwest::Method::PUT,
                "/mcp",
                "application/json",
                both,
                body.to_string(),
            ),
            405,
            "method_not_allowed",
        ),
        (
            request(
                reqwest::Method::POST,
                "/mcp",
                "application/json",
                both,
                // Not a JSON-RPC message rmcp reads (its text quotes serde's message about it): rmcp says `415`,
                // as to a wrong content type; sent as JSON, it is a malformed request.
                json!({"jsonrpc": "2.0", "id": secret, "method": 7}).to_string(),
            ),
            400,
            "bad_request",
        ),
        (
            request(
                reqwest::Method::POST,
                "/mcp/extra",
                "application/json",
                both,
                body.to_string(),
            ),
            404,
            "not_found",
        ),
    ];
    for (request, status, reason) in cases {
        let response = request.send().await.unwrap();
        let (_, body) = common::jsonrpc_refusal(response, status, -32600, reason).await;
        assert!(!body.to_string().contains(secret), "{reason}: {body}");
    }
    let reasons = server.rejection_reasons();
    assert_eq!(
        reasons,
        [
            "unsupported_media_type",
            "not_acceptable",
            "method_not_allowed",
            "bad_request",
            "not_found"
        ]
    );
}

/// A JSON answer goes out with its `Content-Length`, not chunked: a client then knows where it ends, and keeps its
/// connection for the next request (with chunked answers, clients dropped about one connection in a hundred calls,
/// each a new TCP handshake). One client makes many calls over one connection, seen from the server's side as one
/// remote address in the records.
#[tokio::test]
async fn json_answers_carry_their_length_and_keep_the_connection() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for id in 1..=200u64 {
        let response = client
            .post(format!("{}/mcp", server.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .body(call(id, "read_file", json!({"filename": "greeting.txt"})).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("transfer-encoding").is_none(),
            "{:?}",
            response.headers()
        );
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), length);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["result"]["structuredContent"]["content"], "hello\n");
    }
    let peers: std::collections::BTreeSet<String> = server
        .calls()
        .iter()
        .map(|c| c["remote_addr"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(server.calls().len(), 200);
    assert_eq!(peers.len(), 1, "{peers:?}");
}

/// The MCP endpoint is `/mcp` itself: a path under it is no endpoint (`404`), whatever the token.
#[tokio::test]
async fn paths_under_the_endpoint_are_not_found() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    for suffix in ["/mcp/", "/mcp/extra"] {
        let response = post(
            &server,
            suffix,
            Some(&token),
            &call(1, "read_file", json!({"filename": "greeting.txt"})),
        )
        .await;
        assert_eq!(response.status(), 404, "{suffix}");
    }
    assert!(server.calls().is_empty());
    let ok = post(
        &server,
        "/mcp",
        Some(&token),
        &call(2, "read_file", json!({"filename": "greeting.txt"})),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(server.calls().len(), 1);
}

/// Review finding: the resource URL was also the only audience a token could name, so the README's advice for
/// providers that put another identifier in `aud` (`--resource-url api://APP_ID` for Entra) made every challenge
/// point clients to `api://APP_ID/.well-known/oauth-protected-resource`, which no client can fetch. The audience
/// is a setting of its own (`--token-audience`), and a resource URL clients cannot reach is refused at start.
#[tokio::test]
async fn a_token_audience_of_its_own_keeps_the_resource_url_reachable() {
    let bearer = common::BearerHttp::new(SERVER, ISSUER, SECRET);
    let data = &bearer.data;
    std::fs::write(data.join("greeting.txt"), "hello\n").unwrap();
    let common::Started {
        mut child,
        url: resource,
        ..
    } = bearer.start(|command| {
        command.args(["--token-audience", "api://files-app"]);
    });
    let now = now();
    let claims = |aud: &str| {
        json!({"iss": ISSUER, "aud": aud, "sub": "alice", "scope": "files.read",
               "iat": now, "nbf": now, "exp": now + 600})
    };
    let request = |token: String| {
        reqwest::Client::new()
            .post(&resource)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(call(1, "read_file", json!({"filename": "greeting.txt"})).to_string())
            .send()
    };
    let answer = request(sign(claims("api://files-app"), SECRET))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let refused = request(sign(claims(&resource), SECRET)).await.unwrap();
    assert_eq!(
        refused.status(),
        401,
        "the audience replaces the resource URL"
    );
    let header = challenge(&refused);
    assert!(
        header.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            resource.trim_end_matches("/mcp")
        )),
        "{header}"
    );
    let _ = child.kill();
    let _ = child.wait();

    for url in [
        "api://files-app",
        "http://files.example.com/mcp",
        "files.example.com",
    ] {
        let (status, stderr) = common::refused_start(
            std::process::Command::new(SERVER)
                .args([
                    "--http",
                    "127.0.0.1:0",
                    "--issuer",
                    ISSUER,
                    "--resource-url",
                    url,
                ])
                .arg("--data-root")
                .arg(data)
                .env("MCP_AUTH_HS256_SECRET", SECRET)
                .stdin(std::process::Stdio::null()),
        );
        assert!(!status.success(), "{url}");
        assert!(stderr.contains("--resource-url"), "{url}: {stderr}");
    }
}

/// Review finding: without sessions (the default), the `Mcp-Session-Id` a client sent was recorded as its call's
/// `session_id`, though nothing checks it: a client could stamp its calls with another client's session, or any
/// text. A session id is recorded only where the server issued it (session mode).
#[tokio::test]
async fn a_session_id_sent_without_sessions_is_not_recorded() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    let response = post_request(
        &server,
        "/mcp",
        &call(1, "read_file", json!({"filename": "greeting.txt"})),
    )
    .header("authorization", format!("Bearer {token}"))
    .header("mcp-session-id", "forged-session-of-bob")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let calls = server.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].get("session_id").is_none(), "{}", calls[0]);
}

/// Review finding: the HS256 secret could only come from `MCP_AUTH_HS256_SECRET`, which stays in the server's
/// environment and is inherited by every process a tool starts: whoever reads it can mint tokens. It can come from a
/// file (`--hs256-secret-file`), warned about when others can read it, like the other key files; and given both
/// ways, the server refuses to start rather than pick one.
#[tokio::test]
async fn the_hs256_secret_comes_from_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let bearer = common::BearerHttp::new(SERVER, ISSUER, SECRET);
    std::fs::write(bearer.data.join("greeting.txt"), "hello\n").unwrap();
    let file_secret = "file-secret-0123456789abcdef0123456789";
    let secret_file = bearer.dir.path().join("hs256.secret");
    // Written as `echo` writes it: the line break is not part of the secret.
    std::fs::write(&secret_file, format!("{file_secret}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mut child, listening, url) = common::start_on_a_held_port(|held| {
        let (mut command, url) = bearer.command(held.port());
        command
            .env_remove("MCP_AUTH_HS256_SECRET")
            .arg("--hs256-secret-file")
            .arg(&secret_file);
        held.release();
        (command.spawn().expect("starting the server"), url)
    });
    let said = listening.text();
    let now = now();
    let claims = json!({"iss": ISSUER, "aud": url, "sub": "alice", "scope": "files.read",
                        "iat": now, "nbf": now, "exp": now + 600});
    let request = |token: String| {
        client()
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(call(1, "read_file", json!({"filename": "greeting.txt"})).to_string())
            .send()
    };
    let answer = request(sign(claims.clone(), file_secret)).await.unwrap();
    assert_eq!(answer.status(), 200, "{said}");
    let refused = request(sign(claims, SECRET)).await.unwrap();
    assert_eq!(refused.status(), 401, "only the file's secret is used");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        said.contains("can be read by users other than its owner")
            && said.contains("--hs256-secret-file"),
        "{said}"
    );
    assert!(!said.contains(file_secret), "{said}");

    // Both ways at once: refused at start, naming both.
    let (status, stderr) = common::refused_start(
        bearer
            .command(0)
            .0
            .arg("--hs256-secret-file")
            .arg(&secret_file),
    );
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("give exactly one key source"), "{stderr}");
    assert!(
        stderr.contains("--hs256-secret-file") && stderr.contains("MCP_AUTH_HS256_SECRET"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(file_secret) && !stderr.contains(SECRET),
        "{stderr}"
    );
}

/// A request timeout no longer than the tool timeout (60 s by default) answers `408` to a call that runs too long,
/// before the call's own `timeout` refusal could: the operator is told at start (review finding: the default
/// request timeout, 30 s, did this silently).
#[test]
fn a_request_timeout_not_above_the_tool_timeout_is_warned_of() {
    let bearer = common::BearerHttp::new(SERVER, ISSUER, SECRET);
    let warned = |args: &[&str]| {
        let mut started = bearer.start(|command| {
            command.args(args);
        });
        let _ = started.child.kill();
        let _ = started.child.wait();
        let said = started.listening.text();
        said.contains("WARN") && said.contains("--http-request-timeout")
    };
    assert!(warned(&["--http-request-timeout", "30s"]));
    assert!(warned(&[
        "--http-request-timeout",
        "5s",
        "--tool-timeout",
        "5s"
    ]));
    assert!(!warned(&["--http-request-timeout", "61s"]));
    assert!(!warned(&[]));
}

/// Review finding: the runner's own refusals were `text/plain`, which the official Python SDK reports only as
/// `-32603 "Server returned an error response"`: the client never learnt why. Each is now a JSON-RPC error
/// (`application/json`), its message the refusal's code, with the status and headers it had.
#[tokio::test]
async fn the_runners_own_refusals_are_json_rpc_errors() {
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read files.write"));
    let body = call(1, "read_file", json!({"filename": "greeting.txt"}));

    // No token: the challenge stays.
    let response = post(&server, "/mcp", None, &body).await;
    let (headers, _) = common::jsonrpc_refusal(response, 401, -32000, "missing_token").await;
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer resource_metadata="),
        "{headers:?}"
    );
    // An invalid token: the challenge and its detail.
    let response = post(&server, "/mcp", Some("not-a-jwt"), &body).await;
    let (headers, body_seen) =
        common::jsonrpc_refusal(response, 401, -32000, "invalid_token").await;
    assert_eq!(
        body_seen["error"]["message"], "invalid_token: malformed",
        "{body_seen}"
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""),
        "{headers:?}"
    );
    // A token sent two ways (RFC 6750: `400 invalid_request`).
    let response = post(&server, "/mcp?access_token=x", Some(&token), &body).await;
    let (headers, _) = common::jsonrpc_refusal(response, 400, -32600, "invalid_request").await;
    assert!(headers.contains_key("www-authenticate"), "{headers:?}");
    // A browser page of another origin.
    let response = post_request(&server, "/mcp", &body)
        .header("origin", "https://evil.example")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    common::jsonrpc_refusal(response, 403, -32000, "origin_not_allowed").await;
    // Another host (DNS rebinding).
    let response = post_request(&server, "/mcp", &body)
        .header("host", "attacker.example")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    common::jsonrpc_refusal(response, 403, -32000, "host_not_allowed").await;
    // A body over the limit (65536 bytes here), declared.
    let big = call(
        2,
        "write_file",
        json!({"filename": "big.txt", "content": "x".repeat(70_000)}),
    );
    let response = post(&server, "/mcp", Some(&token), &big).await;
    common::jsonrpc_refusal(response, 413, -32600, "body_too_large").await;

    // The records are as they were: one a refusal, each with its reason.
    let reasons = server.rejection_reasons();
    assert_eq!(
        reasons,
        [
            "missing_token",
            "invalid_token",
            "invalid_request",
            "origin_not_allowed",
            "host_not_allowed",
            "body_too_large"
        ],
    );
    assert!(server.calls().is_empty());
}

/// An integrator's trial: with sessions on, each request of the stateless revision (2026-07-28, which has no
/// sessions: rmcp serves each on its own) wrote a `session` record, for every `tools/list` and every call, while
/// the stateless server wrote none. Each such request stands alone over HTTP in both modes now: no `session`
/// record; a client that opens a session with `initialize` still gets one.
#[tokio::test]
async fn requests_of_the_stateless_revision_write_no_session_record_with_sessions_on() {
    let server = Server::start_with(&["--http-sessions"]);
    let token = server.token(server.claims("alice", "files.read"));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    for (id, method, name, params) in [
        (1, "tools/list", None, json!({"_meta": meta})),
        (
            2,
            "tools/call",
            Some("read_file"),
            json!({"name": "read_file", "arguments": {"filename": "greeting.txt"}, "_meta": meta}),
        ),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut request = post_request(&server, "/mcp", &body)
            .bearer_auth(&token)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = name {
            // The revision's header naming the tool called.
            request = request.header("mcp-name", name);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{method}");
        let text = response.text().await.unwrap();
        assert!(text.contains("\"result\""), "{method}: {text}");
    }
    let initialize = json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "session-client", "version": "2"}}});
    let response = post_request(&server, "/mcp", &initialize)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session_id = header(&response, "mcp-session-id");
    assert!(!session_id.is_empty());
    let sessions: Vec<Value> = server
        .records()
        .into_iter()
        .filter(|r| r["event"] == "session")
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    assert_eq!(sessions[0]["client_name"], "session-client");
    // Who opened it, and its id, which its calls carry (a trial found the id on the calls only).
    assert_eq!(sessions[0]["caller"], "alice");
    assert_eq!(sessions[0]["session_id"], session_id, "{sessions:#?}");
    assert!(
        sessions[0]["remote_addr"]
            .as_str()
            .is_some_and(|addr| addr.starts_with("127.0.0.1:")),
        "{sessions:#?}"
    );
    assert_eq!(server.calls().len(), 1);
    // A red team's (round 47): a request of the stateless revision naming that session (its caller's own) is served
    // standing alone, but its records carried the session's id and rmcp's placeholder for the client (`rmcp`
    // 3.11.0) instead of the client its `_meta` names.
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"filename": "greeting.txt"}, "_meta": meta}});
    let response = post_request(&server, "/mcp", &body)
        .bearer_auth(&token)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "read_file")
        .header("mcp-session-id", session_id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let calls = server.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        calls[1]["client_name"], "stateless-client",
        "{:#?}",
        calls[1]
    );
    assert!(calls[1].get("session_id").is_none(), "{:#?}", calls[1]);
}

/// Red-team findings on the HTTP settings: `--allowed-origin null` let every page through (any page can send
/// `Origin: null`, from a sandboxed frame); the test-only mode without authentication took a public `--allowed-host`,
/// which lets a reverse proxy forward the world to it; and an `MCP_AUTH_HS256_SECRET` that was not UTF-8 was taken
/// for no secret (alone: "needs a key"; beside a public key: that key served). Each now stops the start, saying why.
#[test]
fn settings_that_would_open_the_server_wider_than_asked_stop_the_start() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], envs: &[(&str, &std::ffi::OsStr)]| {
        common::refused_http_start(SERVER, dir.path(), args, envs)
    };
    let secret = std::ffi::OsStr::new(SECRET);
    let bearer = [
        "--issuer",
        ISSUER,
        "--resource-url",
        "http://127.0.0.1:0/mcp",
    ];
    for null in ["null", "NULL", " null "] {
        let stderr = run(
            &[&bearer[..], &["--allowed-origin", null]].concat(),
            &[("MCP_AUTH_HS256_SECRET", secret)],
        );
        assert!(
            stderr.contains("--allowed-origin") && stderr.contains("null"),
            "{stderr}"
        );
    }
    let stderr = run(
        &[
            "--http-insecure-no-auth",
            "--scopes",
            "files.read",
            "--allowed-host",
            "files.example.com",
        ],
        &[],
    );
    assert!(
        stderr.contains("--allowed-host") && stderr.contains("loopback"),
        "{stderr}"
    );
    // Red-team finding: refusals quoted a URL's credentials, or a config value of the wrong type, whole on stderr.
    for url in [
        "https://u:hunter2@issuer.example/mcp",
        "ftp://u:hunter2@h/mcp",
        "https://u:hunter2@exa mple.com/mcp",
    ] {
        let stderr = run(
            &["--issuer", ISSUER, "--resource-url", url],
            &[("MCP_AUTH_HS256_SECRET", secret)],
        );
        assert!(
            stderr.contains("--resource-url") && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "max-concurrent-calls = \"redis://:hunter2@x\"\n").unwrap();
    let stderr = run(
        &[&bearer[..], &["--config", config.to_str().unwrap()]].concat(),
        &[("MCP_AUTH_HS256_SECRET", secret)],
    );
    assert!(
        stderr.contains("max-concurrent-calls") || stderr.contains("invalid type"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // Red-team findings: `null:*` let `Origin: null` through past the check of `null`; `*`, `file://` or `data:`
    // were taken as origins, matching nothing they seem to. An entry is an origin, `scheme://host[:port]` (or
    // `:*` for any port).
    for entry in [
        "null:*",
        "NULL:8080",
        "*",
        "http://*",
        "file://",
        "data:",
        "about:blank",
        "https://a.example/app",
    ] {
        let stderr = run(
            &[&bearer[..], &["--allowed-origin", entry]].concat(),
            &[("MCP_AUTH_HS256_SECRET", secret)],
        );
        assert!(stderr.contains("--allowed-origin"), "{entry}: {stderr}");
    }
    // Red-team finding: credentials in the issuer or an authorization server were taken, and published to every
    // client in the protected resource metadata; a resource URL with a fragment (RFC 8707: none) was published.
    for (flag, url, named) in [
        ("--issuer", "https://u:hunter2@issuer.test", "--issuer"),
        (
            "--authorization-server",
            "https://u:hunter2@as.example",
            "--authorization-server",
        ),
        (
            "--resource-url",
            "http://127.0.0.1:0/mcp#hunter2",
            "--resource-url",
        ),
    ] {
        let mut args = vec![
            "--issuer",
            ISSUER,
            "--resource-url",
            "http://127.0.0.1:0/mcp",
        ];
        match args.iter().position(|arg| *arg == flag) {
            Some(at) => args[at + 1] = url,
            None => args.extend([flag, url]),
        }
        let stderr = run(&args, &[("MCP_AUTH_HS256_SECRET", secret)]);
        assert!(
            stderr.contains(named) && !stderr.contains("hunter2"),
            "{flag} {url}: {stderr}"
        );
    }
    // A red team's (round 43): an empty issuer or audience was taken (a token naming `iss: ""` or `aud: ""` was
    // accepted, and `""` published as the authorization server), and an audience with spaces around it was
    // compared as written. Each stops the start.
    for (flag, value, named) in [
        ("--issuer", "", "--issuer"),
        ("--issuer", " ", "--issuer"),
        ("--issuer", "https://issuer.test ", "--issuer"),
        ("--token-audience", "", "--token-audience"),
        ("--token-audience", "api://x,", "--token-audience"),
        ("--token-audience", " api://x", "--token-audience"),
        ("--authorization-server", "", "--authorization-server"),
    ] {
        let mut args = bearer.to_vec();
        match args.iter().position(|arg| *arg == flag) {
            Some(at) => args[at + 1] = value,
            None => args.extend([flag, value]),
        }
        let stderr = run(&args, &[("MCP_AUTH_HS256_SECRET", secret)]);
        assert!(stderr.contains(named), "{flag} {value:?}: {stderr}");
    }
    let stderr = run(
        &bearer,
        &[
            ("MCP_AUTH_HS256_SECRET", secret),
            (
                "MCP_AUTH_AUDIENCES",
                std::ffi::OsStr::new("api://x, api://y"),
            ),
        ],
    );
    assert!(stderr.contains("MCP_AUTH_AUDIENCES"), "{stderr}");
    // A red team's (round 43): a max age of a millisecond let every request, a token of `x` included, start a fetch
    // of the JWKS. At least a second.
    let stderr = run(
        &[
            &bearer[..],
            &[
                "--jwks-url",
                "https://idp.example/jwks.json",
                "--jwks-max-age",
                "1ms",
            ],
        ]
        .concat(),
        &[],
    );
    assert!(
        stderr.contains("--jwks-max-age") && stderr.contains("second"),
        "{stderr}"
    );
    let not_utf8 = std::ffi::OsStr::from_bytes(b"secret-\xff-0123456789abcdef0123456789");
    let stderr = run(&bearer, &[("MCP_AUTH_HS256_SECRET", not_utf8)]);
    assert!(
        stderr.contains("MCP_AUTH_HS256_SECRET") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

/// A red team's (round 43): the container recipe's HTTP run (`MCP_RESOURCE_URL=https://files.example/mcp`, bound
/// to `0.0.0.0`) refused every request for its own resource URL's host, `403 host_not_allowed`, while its health
/// check passed on loopback. The resource URL names where clients reach the server: its host is served, besides
/// loopback and `--allowed-host`; another host is still refused (DNS rebinding).
#[tokio::test]
async fn the_resource_urls_own_host_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, _listening, port) = common::start_on_a_held_port(|held| {
        let port = held.port();
        let mut command = std::process::Command::new(SERVER);
        command
            .arg("--data-root")
            .arg(dir.path())
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args([
                "--issuer",
                ISSUER,
                "--resource-url",
                "https://files.example/mcp",
            ])
            .env("MCP_AUTH_HS256_SECRET", SECRET)
            .env_remove("MCP_AUDIT_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        held.release();
        (command.spawn().unwrap(), port)
    });
    let post = |host: &'static str| {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/mcp"))
            .header("host", host)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
    };
    // Its own host, with and without a port: past the host check, to the token's (none here).
    for host in ["files.example", "files.example:443", "FILES.example"] {
        let response = post(host).await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{host}");
    }
    let response = post("attacker.example").await.unwrap();
    common::jsonrpc_refusal(response, 403, -32000, "host_not_allowed").await;
}

/// What a server without authentication on loopback, started with `args` added, says on stderr up to its listening.
fn said_at_start(dir: &std::path::Path, args: &[&str]) -> String {
    let mut child = common::KillOnDrop(
        std::process::Command::new(SERVER)
            .arg("--data-root")
            .arg(dir)
            .args(["--scopes", "files.read", "--http-insecure-no-auth"])
            .args(["--http", "127.0.0.1:0"])
            .args(args)
            .env_remove("MCP_AUDIT_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    common::wait_until_listening(&mut child, "serving MCP over HTTP", |_| {}).text()
}

/// A red team's (round 43): `--http-metrics 0.0.0.0:PORT` served the metrics, unauthenticated, to every network the
/// host is on, and nothing said so, where `--http` itself refuses every address without authentication. A start on
/// every address is warned of (a private address, the scraper's network, is the operator's choice and is not).
#[test]
fn metrics_on_every_address_are_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let start = |metrics: &str| said_at_start(dir.path(), &["--http-metrics", metrics]);
    for every in ["0.0.0.0:0", "[::ffff:0.0.0.0]:0"] {
        let said = start(every);
        assert!(
            said.contains("warning")
                && said.contains("--http-metrics")
                && said.contains("every address"),
            "{every}: {said}"
        );
    }
    let said = start("127.0.0.1:0");
    assert!(!said.contains("every address"), "{said}");
}

#[test]
fn trusting_every_address_as_a_proxy_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let start = |trusted: &str| said_at_start(dir.path(), &["--trusted-proxy", trusted]);
    for every in ["0.0.0.0/0", "::/0"] {
        let said = start(every);
        assert!(
            said.contains("warning") && said.contains("--trusted-proxy") && said.contains("every"),
            "{every}: {said}"
        );
    }
    let said = start("10.0.0.0/8");
    assert!(!said.contains("--trusted-proxy"), "{said}");
}

/// Behind a reverse proxy the connection is the proxy's: with the proxy's addresses listed (`--trusted-proxy`), the
/// records also name the client the proxies forwarded for (`X-Forwarded-For`, read from the right: the nearest
/// address no listed proxy owns), so a flood of refused tokens can be traced past the proxy. Without the setting, or
/// from a peer not listed, the header is the client's own word and is not recorded.
#[tokio::test]
async fn a_trusted_proxys_forwarded_client_is_recorded() {
    let send = |server: &Server, token: Option<String>, forwarded: &[&str]| {
        let mut request = post_request(
            server,
            "/mcp",
            &call(1, "read_file", json!({"filename": "greeting.txt"})),
        );
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        async move { request.send().await.unwrap().status() }
    };
    let last = |server: &Server, event: &str| {
        server
            .records()
            .into_iter()
            .rfind(|r| r["event"] == event)
            .unwrap()
    };

    // Not configured: the header is whatever the client wrote.
    let server = Server::start();
    let token = server.token(server.claims("alice", "files.read"));
    assert_eq!(send(&server, Some(token), &["198.51.100.7"]).await, 200);
    let record = last(&server, "tool_call");
    assert!(record.get("forwarded_for").is_none(), "{record}");
    assert!(
        record["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // The test's connections come from 127.0.0.1: the proxy. The client put a forged address first; the proxy
    // appended the one it saw.
    let server = Server::start_with(&["--trusted-proxy", "127.0.0.1"]);
    let token = server.token(server.claims("alice", "files.read"));
    let chain = ["10.9.9.9, 203.0.113.9"];
    assert_eq!(send(&server, Some(token.clone()), &chain).await, 200);
    let record = last(&server, "tool_call");
    assert_eq!(record["forwarded_for"], "203.0.113.9", "{record}");
    assert!(
        record["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    // A refusal before any call (no token) names it too.
    assert_eq!(send(&server, None, &chain).await, 401);
    let rejected = last(&server, "http_rejected");
    assert_eq!(rejected["forwarded_for"], "203.0.113.9", "{rejected}");
    // Two header lines are one list, in order; a port, and IPv6 in brackets, are the client's address.
    assert_eq!(
        send(
            &server,
            Some(token.clone()),
            &["10.9.9.9", "[2001:db8::7]:4711"]
        )
        .await,
        200
    );
    assert_eq!(last(&server, "tool_call")["forwarded_for"], "2001:db8::7");
    assert_eq!(
        send(&server, Some(token.clone()), &["198.51.100.7:4711"]).await,
        200
    );
    assert_eq!(last(&server, "tool_call")["forwarded_for"], "198.51.100.7");
    // What is not an address (the nearest hop a proxy would not have written) names no client.
    for unknown in [
        "unknown",
        "",
        "203.0.113.9, 1.2.3.4.5",
        "203.0.113.9 203.0.113.10",
    ] {
        assert_eq!(send(&server, Some(token.clone()), &[unknown]).await, 200);
        let record = last(&server, "tool_call");
        assert!(
            record.get("forwarded_for").is_none(),
            "{unknown:?}: {record}"
        );
    }

    // A chain of listed proxies: the first address from the right that none of them owns.
    let server = Server::start_with(&[
        "--trusted-proxy",
        "127.0.0.0/8",
        "--trusted-proxy",
        "203.0.113.0/24,2001:db8::/32",
    ]);
    let token = server.token(server.claims("alice", "files.read"));
    assert_eq!(
        send(
            &server,
            Some(token.clone()),
            &["198.51.100.7, 2001:db8::1, 203.0.113.9"]
        )
        .await,
        200
    );
    assert_eq!(last(&server, "tool_call")["forwarded_for"], "198.51.100.7");
    // Only listed proxies on the way: the farthest of them is the client.
    assert_eq!(
        send(&server, Some(token), &["203.0.113.20, 203.0.113.9"]).await,
        200
    );
    assert_eq!(last(&server, "tool_call")["forwarded_for"], "203.0.113.20");
}

#[test]
fn a_trusted_proxy_that_is_no_address_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for entry in ["proxy.example", "10.0.0.0/33", "10.0.0.1/8", ""] {
        let stderr = common::refused_http_start(
            SERVER,
            dir.path(),
            &[
                "--issuer",
                ISSUER,
                "--resource-url",
                "http://127.0.0.1:0/mcp",
                "--trusted-proxy",
                entry,
            ],
            &[("MCP_AUTH_HS256_SECRET", std::ffi::OsStr::new(SECRET))],
        );
        assert!(stderr.contains("--trusted-proxy"), "{entry:?}: {stderr}");
    }
}
