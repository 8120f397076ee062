//! The body of the runner's own refusals: a JSON-RPC error, as the official SDK clients read one. The Python SDK
//! surfaces a non-`2xx` answer's reason only when its body is a JSON-RPC error (`application/json`); any other body
//! becomes `-32603 "Server returned an error response"`, whatever the refusal. The status and headers say what
//! HTTP says (a `401`'s challenge, a `429`'s `Retry-After`); the body says it again to the client library.
//!
//! Codes, by status: a request malformed or over the size limit (`400`, `413`), one of a method, media type or
//! `Accept` the endpoint does not take (`405`, `415`, `406`), and a session or path that does not exist (`404`),
//! `-32600` (invalid request), as over stdio; a protocol version outside the policy, the protocol's own
//! `-32022` with what was asked and what is supported; a request past the request timeout (`408`),
//! [`REQUEST_TIMEOUT_CODE`]; every other refusal (`401`, `403`, `429`, `503`), [`REFUSED_CODE`]. The message is the
//! refusal's code as audited (`missing_token`, `body_too_large`, ...), then what it means. The `id` is `null`: the
//! request is refused before its body is read.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The JSON-RPC error code of a request the HTTP runner refuses for who sends it, where it comes from, or what the
/// server can take now (`401`, `403`, `429`, `503`): a server error, its reason in the message.
pub const REFUSED_CODE: i32 = -32000;

/// The JSON-RPC error code of a request whose answer was not ready within the request timeout (`408`): the code the
/// official SDKs give a request that timed out on their side.
pub const REQUEST_TIMEOUT_CODE: i32 = -32001;

/// JSON-RPC 2.0's invalid request.
const INVALID_REQUEST_CODE: i32 = -32600;

/// How long a client refused `429` (too many sessions or streams for its identity) is told to wait.
const RETRY_AFTER_TOO_MANY: &str = "10";

/// How long a client refused `503` (its connection is being closed to make room) is told to wait.
const RETRY_AFTER_UNAVAILABLE: &str = "1";

/// The JSON-RPC error code of a refusal answered `status`.
fn code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::NOT_FOUND
        | StatusCode::METHOD_NOT_ALLOWED
        | StatusCode::NOT_ACCEPTABLE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => INVALID_REQUEST_CODE,
        StatusCode::REQUEST_TIMEOUT => REQUEST_TIMEOUT_CODE,
        _ => REFUSED_CODE,
    }
}

/// What a refusal means, for a client reading it.
fn meaning(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "missing_token" => "this endpoint needs a bearer token",
        "invalid_token" => "the bearer token was refused",
        "invalid_request" => "the request is malformed",
        "host_not_allowed" => "this server does not serve the host the request names",
        "origin_not_allowed" => "requests from this browser origin are refused",
        "body_too_large" => "the request body is over the size limit",
        "timeout" => "the answer was not ready within the request timeout",
        "too_many_sessions" => {
            "this caller holds as many sessions as it may, each in use (a request or an event stream open on \
             it); end one (DELETE with its Mcp-Session-Id), or close one's stream"
        }
        "too_many_streams" => "this caller holds as many event streams as it may; close one",
        "too_many_requests" => {
            "this caller has as many requests in progress as it may; retry once one is answered"
        }
        "session_not_found" => "no such session",
        "stream_ended" => {
            "this event stream has ended, with its answer, and was resumed once already: it has nothing more"
        }
        "session_required" => {
            "this server keeps sessions: send `initialize` first, then its Mcp-Session-Id with every request"
        }
        "unavailable" => "this connection is being closed; retry on a new one",
        "shutting_down" => "the server is shutting down and opens no new session; retry on another",
        "bad_request" => "the request is malformed (a header, or the body)",
        "not_found" => "no such endpoint",
        "method_not_allowed" => "this path does not take the request's method",
        "not_acceptable" => "the request must accept both application/json and text/event-stream",
        "unsupported_media_type" => {
            "the request body must be a JSON-RPC message, as application/json"
        }
        "conflict" => "the request conflicts with the session's state",
        "unprocessable" => "the request cannot be processed",
        _ => return None,
    })
}

/// The runner's answer refusing a request: `status`, and a JSON-RPC error whose message is `reason`, then `detail`
/// (the audited detail: `expired`, `query_token_ignored`, ...) or what the reason means.
pub(super) fn answer(status: StatusCode, reason: &str, detail: Option<&str>) -> Response {
    let message = match detail.or_else(|| meaning(reason)) {
        Some(detail) => format!("{reason}: {detail}"),
        None => reason.to_owned(),
    };
    with_body(status, code(status), message, None)
}

/// The answer refusing a request whose `MCP-Protocol-Version` is outside the policy: `400`, and the protocol's error
/// for an unsupported version, with the version asked for and those supported (as the handler answers one named
/// in `initialize` or `_meta`), so that a client can retry with one of them.
pub(super) fn unsupported_version(requested: &str, supported: &[&str]) -> Response {
    let message = format!(
        "unsupported_protocol_version: MCP-Protocol-Version `{}` is not supported; supported: {}",
        requested.escape_debug(),
        supported.join(", ")
    );
    let data = serde_json::json!({ "requested": requested, "supported": supported });
    with_body(
        StatusCode::BAD_REQUEST,
        rmcp::model::ErrorCode::UNSUPPORTED_PROTOCOL_VERSION.0,
        message,
        Some(data),
    )
}

/// The answer to a request on a session that does not exist, or that is another identity's: the same for both, so
/// that a session's existence is not told to whoever does not own it.
pub(super) fn session_not_found() -> Response {
    answer(StatusCode::NOT_FOUND, "session_not_found", None)
}

/// The answer to a request on a connection being closed to make room for another: `503`, to retry on a new
/// connection.
pub(super) fn connection_closing() -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The message of the answer to a request its client cancelled.
pub(super) const CANCELLED_MESSAGE: &str = "cancelled: the client cancelled this request (whether it had taken \
                                           effect is in the server's audit record)";

/// The message of the answer to a request whose session ended before it was answered (its client deleted it
/// meanwhile, say).
pub(super) const SESSION_ENDED_MESSAGE: &str = "session_ended: the session ended before this request was \
                                               answered (whether it had taken effect is in the server's audit \
                                               record)";

/// The answer to a call its client cancelled (without a session: see `stateless_cancel`), which that client no longer
/// waits for: a JSON-RPC error for its id, [`REFUSED_CODE`], saying so. The call may have ended just before (a
/// handler past its point of no return runs on, too): its record says how it ended.
pub(super) fn cancelled(id: &rmcp::model::RequestId) -> Response {
    let error = serde_json::json!({
        "code": REFUSED_CODE,
        "message": CANCELLED_MESSAGE,
    });
    json_rpc_error(
        StatusCode::OK,
        serde_json::to_value(id).unwrap_or(Value::Null),
        error,
    )
}

/// A JSON-RPC error answered with `status` (`id` null), and, for `429` and `503`, a `Retry-After`.
pub(super) fn with_body(
    status: StatusCode,
    code: i32,
    message: String,
    data: Option<Value>,
) -> Response {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json_rpc_error(status, Value::Null, error)
}

/// The answer `status` whose body is the JSON-RPC error `error` for the request `id`; `429` and `503` say when to
/// retry.
pub(super) fn json_rpc_error(status: StatusCode, id: Value, error: Value) -> Response {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error });
    let mut response = (status, axum::Json(body)).into_response();
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS => Some(RETRY_AFTER_TOO_MANY),
        StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_UNAVAILABLE),
        _ => None,
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn content_type(response: &Response) -> &str {
        response.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    /// Review finding: the `503` to a request on a connection being closed to make room was empty; no client could
    /// tell why. It is a JSON-RPC error, closes the connection and says when to retry.
    #[tokio::test]
    async fn a_request_on_a_closing_connection_is_told_to_retry() {
        let response = connection_closing();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type(&response), "application/json");
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = body(response).await;
        assert_eq!(body["id"], Value::Null, "{body}");
        assert_eq!(body["error"]["code"], REFUSED_CODE, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("unavailable: "),
            "{body}"
        );
    }

    #[tokio::test]
    async fn each_status_gets_its_code_and_each_reason_its_meaning() {
        for (status, reason, detail, code, message) in [
            (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                Some("expired"),
                REFUSED_CODE,
                "invalid_token: expired",
            ),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                None,
                -32600,
                "body_too_large: the request body is over the size limit",
            ),
            (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                None,
                REQUEST_TIMEOUT_CODE,
                "timeout: the answer was not ready within the request timeout",
            ),
            (
                StatusCode::FORBIDDEN,
                "unknown_client",
                None,
                REFUSED_CODE,
                "unknown_client",
            ),
        ] {
            let response = answer(status, reason, detail);
            assert_eq!(response.status(), status);
            assert_eq!(content_type(&response), "application/json");
            assert!(response.headers().get(header::RETRY_AFTER).is_none());
            let body = body(response).await;
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["message"], message, "{body}");
        }
        let response = answer(StatusCode::TOO_MANY_REQUESTS, "too_many_sessions", None);
        assert_eq!(response.headers()[header::RETRY_AFTER], "10");
    }
}
