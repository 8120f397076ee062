//! What the HTTP runner says to a client about authentication: the credential a request carries, the
//! `WWW-Authenticate` challenges of a `401` and a `403`, and the protected resource metadata (RFC 9728).

use std::collections::HashSet;

use super::bearer::BearerAuth;
use crate::scope::Scope;

/// The path of the protected resource metadata document (RFC 9728 section 3).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The bearer token of a request: the `Authorization: Bearer` header, and nothing else. Two `Authorization`
/// headers are ambiguous (RFC 6750 section 2: one method, once), as is a header together with a token in the query.
pub(crate) fn bearer_token<'a>(
    headers: &'a axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Credential<'a> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credential::None;
    };
    if values.next().is_some() || query_has_token(uri) {
        return Credential::Ambiguous;
    }
    let Ok(text) = value.to_str() else {
        return Credential::Malformed;
    };
    let mut parts = text.splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("").trim();
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::OtherScheme;
    }
    if token.is_empty() {
        return Credential::Malformed;
    }
    Credential::Token(token)
}

/// What a request carries to authenticate with.
pub(crate) enum Credential<'a> {
    /// Nothing (a token in the query string does not count).
    None,
    /// A bearer token.
    Token(&'a str),
    /// An `Authorization` header of another scheme (`Basic`, say): no token, as far as this server goes.
    OtherScheme,
    /// A `Bearer` header without a token, or a header that is not text.
    Malformed,
    /// More than one credential.
    Ambiguous,
}

/// Whether the query string carries an `access_token` (ignored, and noted in the audit record).
pub(crate) fn query_has_token(uri: &axum::http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    })
}

/// The `WWW-Authenticate` value of a 401: `error="invalid_token"` when a token was presented (RFC 6750 section 3).
pub(crate) fn unauthorized_challenge(auth: &BearerAuth, token_presented: bool) -> String {
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", auth.metadata_url());
    // Scope names hold no space, `"` or `\\` (RFC 6749's scope-token): a quoted string as they are.
    if !auth.challenge_scopes.is_empty() {
        let scopes: Vec<&str> = auth.challenge_scopes.iter().map(|s| s.as_str()).collect();
        challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    if token_presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    challenge
}

/// The `WWW-Authenticate` value of a 403 for a valid token short of scopes.
///
/// `error_description` is the refusal's code (`missing_scope:files.write`) when it cannot be mistaken for another
/// parameter (clients find parameters anywhere in the header, so it must not hold `=`), else a sentence.
pub(crate) fn insufficient_scope_challenge(
    auth: &BearerAuth,
    scopes: &[String],
    code: &str,
) -> String {
    let description = if code.contains('=') {
        "the access token lacks a scope this tool requires"
    } else {
        code
    };
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"{}\"",
        scopes.join(" "),
        auth.metadata_url(),
        description
    )
}

/// The protected resource metadata document (RFC 9728 section 2).
pub(crate) fn resource_metadata(
    auth: &BearerAuth,
    scopes_supported: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "resource": auth.resource,
        "authorization_servers": auth.authorization_servers,
        "scopes_supported": scopes_supported,
        "bearer_methods_supported": ["header"],
    })
}

/// The union of the scopes a tool set's tools require, sorted.
pub(crate) fn scopes_supported<'a>(scopes: impl Iterator<Item = &'a Scope>) -> Vec<String> {
    let mut set: Vec<String> = scopes
        .map(|s| s.as_str().to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    set.sort();
    set
}
