//! Helpers shared by the integration tests.

use secure_tools::{CallRequest, Caller, Grant, RequestId};
use serde_json::Value;

/// A call request from `caller` with JSON `arguments` (an object, or `null` for none).
pub fn request(caller: &Caller, id: i64, tool: &str, arguments: Value) -> CallRequest {
    CallRequest {
        caller: caller.clone(),
        request_id: RequestId::Number(id),
        tool: tool.to_owned(),
        arguments: match arguments {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => panic!("arguments must be an object, not {other}"),
        },
    }
}

/// A caller holding the scopes listed in `grant`.
pub fn caller(id: &str, grant: &str) -> Caller {
    Caller::new(id, Grant::parse(grant).expect("test grant parses"))
}
