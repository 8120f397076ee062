//! Access tokens as identity providers issue them (the shapes of Auth0, Entra ID, Keycloak, Okta and Google, from
//! their documentation), and the checks RFC 8725, RFC 7515 and RFC 6750 ask of a verifier.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secure_tools::serve::http::{BearerAuth, TokenError, VerificationKeys};
use secure_tools::{Grant, Scope};
use serde_json::{Value, json};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";
const RESOURCE: &str = "https://mcp.example.com/mcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn auth(issuer: &str) -> BearerAuth {
    BearerAuth::new(
        issuer,
        RESOURCE,
        VerificationKeys::hmac_secret(SECRET).unwrap(),
    )
}

fn sign(header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn typed(typ: Option<&str>) -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = typ.map(str::to_owned);
    header
}

fn holds(grant: &Grant, scope: &str) -> bool {
    grant.contains(&Scope::new(scope).unwrap())
}

#[test]
fn auth0_scope_string_and_rbac_permissions() {
    let issuer = "https://example.us.auth0.com/";
    let claims = json!({
        "iss": issuer, "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
        "aud": [RESOURCE, "https://example.us.auth0.com/userinfo"],
        "iat": now(), "exp": now() + 3600, "azp": "my-client-id",
        "scope": "openid profile read:tickets",
        "permissions": ["read:tickets", "write:tickets"]
    });
    let token = sign(typed(Some("at+jwt")), &claims);
    let caller = auth(issuer).verify(&token).unwrap();
    assert_eq!(caller.id(), "auth0|5f7c8ec7c33c6c004bbafe82");
    assert!(holds(caller.grant(), "read:tickets"));
    assert!(
        !holds(caller.grant(), "write:tickets"),
        "permissions only when asked for"
    );
    let rbac = auth(issuer).scope_claims(["scope", "permissions"]);
    assert!(holds(rbac.verify(&token).unwrap().grant(), "write:tickets"));
}

#[test]
fn entra_id_scp_string_with_foreign_and_url_shaped_scopes() {
    let issuer = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
    let claims = json!({
        "aud": RESOURCE, "iss": issuer, "iat": now(), "nbf": now(), "exp": now() + 3600,
        "name": "Ada Lovelace", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "preferred_username": "ada@contoso.com",
        "scp": "Tickets.Read User.Read api://tickets/Tickets.Write",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "ver": "2.0"
    });
    let token = sign(typed(Some("JWT")), &claims);
    let caller = auth(issuer).verify(&token).unwrap();
    assert!(holds(caller.grant(), "Tickets.Read"));
    assert!(holds(caller.grant(), "api://tickets/Tickets.Write"));
    assert!(
        !holds(caller.grant(), "tickets.read"),
        "matching is case-sensitive"
    );
    // A mapping of one's own: identity from `oid`, the tenant recorded with each call.
    let mapped = auth(issuer)
        .map_claims(|token| {
            let claim = |name| token.claims().get(name).and_then(|v| v.as_str());
            let oid = claim("oid").ok_or("no oid")?;
            let tid = claim("tid").ok_or("no tid")?;
            Ok::<_, &str>(
                secure_tools::Caller::new(oid, token.grant().clone()).with_attribute("tenant", tid),
            )
        })
        .verify(&token)
        .unwrap();
    assert_eq!(mapped.id(), "00000000-0000-0000-66f3-3332eca7ea81");
    assert_eq!(
        mapped.attributes().unwrap()["tenant"],
        "72f988bf-86f1-41af-91ab-2d7cd011db47"
    );
    let refused = auth(issuer)
        .map_claims(|token| match token.claims().get("roles") {
            Some(_) => Ok(token.default_caller()),
            None => Err("an application token was expected"),
        })
        .verify(&token);
    assert_eq!(refused.unwrap_err(), TokenError::ClaimsRefused);
}

/// A claims mapping that panics (here indexing a claim the token lacks, as `claims()["oid"]` does) refuses the
/// token, as a mapping that returns an error does; uncaught, the panic would unwind through the connection's task
/// (the client would see the connection reset, and nothing would be audited). Its message, which may quote the
/// token's claims, is printed nowhere: the test runs again in a child process whose output the test harness does
/// not capture, and reads that process's standard error.
#[test]
fn a_claims_mapping_that_panics_refuses_the_token_and_prints_nothing() {
    const CHILD: &str = "SECURE_TOOLS_TEST_PANICKING_CLAIMS_MAPPING";
    let issuer = "https://login.example.com";
    let subject = "subject-quoted-by-a-panic-7f3e";
    let claims = json!({"iss": issuer, "sub": subject, "aud": RESOURCE, "exp": now() + 600});
    let token = sign(typed(Some("at+jwt")), &claims);
    let indexing = auth(issuer).map_claims(|token| {
        let oid = token.claims()["oid"]
            .as_str()
            .ok_or("`oid` is not a string")?;
        Ok::<_, &str>(secure_tools::Caller::new(oid, token.grant().clone()))
    });
    for _ in 0..2 {
        assert_eq!(
            indexing.verify(&token).unwrap_err(),
            TokenError::ClaimsRefused
        );
    }
    let quoting = auth(issuer).map_claims(|token| -> Result<secure_tools::Caller, &str> {
        panic!("the token of {} has no `oid`", token.subject())
    });
    if std::env::var_os(CHILD).is_some() {
        assert_eq!(
            quoting.verify(&token).unwrap_err(),
            TokenError::ClaimsRefused
        );
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_claims_mapping_that_panics_refuses_the_token_and_prints_nothing",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
    assert!(!stderr.contains(subject), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn keycloak_scope_string_with_openid_scopes() {
    let issuer = "https://sso.example.com/realms/tickets";
    let claims = json!({
        "exp": now() + 300, "iat": now(), "jti": "6b9d2e4a-1c3f-4e5d-8a7b-9c0d1e2f3a4b",
        "iss": issuer, "aud": [RESOURCE, "account"], "sub": "f1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "typ": "Bearer", "azp": "mcp-client", "session_state": "abc",
        "realm_access": {"roles": ["offline_access", "uma_authorization"]},
        "scope": "openid email profile tickets.read", "email_verified": true,
        "preferred_username": "ada"
    });
    let token = sign(typed(Some("JWT")), &claims);
    let verified = auth(issuer).verify(&token).unwrap();
    assert!(holds(verified.grant(), "tickets.read"));
    assert!(holds(verified.grant(), "openid"));
}

#[test]
fn okta_scp_array_and_untyped_header() {
    let issuer = "https://example.okta.com/oauth2/default";
    let claims = json!({
        "ver": 1, "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
        "iss": issuer, "aud": RESOURCE, "iat": now(), "exp": now() + 3600,
        "cid": "0oa1hrp2nb2LzxBTF0h8", "uid": "00uid4BxXw6I6TV4m0g3",
        "scp": ["openid", "tickets.read", "tickets.write"], "sub": "ada@example.com"
    });
    let token = sign(typed(None), &claims);
    let verified = auth(issuer).verify(&token).unwrap();
    assert!(holds(verified.grant(), "tickets.write"));
}

#[test]
fn google_url_shaped_scopes() {
    let issuer = "https://accounts.google.com";
    let claims = json!({
        "iss": issuer, "aud": RESOURCE, "sub": "110169484474386276334",
        "azp": "1008719970978-hb24n2dstb40o45d4feuo2ukqmcc6381.apps.googleusercontent.com",
        "scope": "https://www.googleapis.com/auth/drive.readonly openid",
        "iat": now(), "exp": now() + 3600, "email": "ada@gmail.com"
    });
    let token = sign(typed(Some("JWT")), &claims);
    let verified = auth(issuer).verify(&token).unwrap();
    assert!(holds(
        verified.grant(),
        "https://www.googleapis.com/auth/drive.readonly"
    ));
}

#[test]
fn scope_claims_are_split_on_spaces_only_and_odd_items_ignored() {
    let issuer = "https://issuer.test";
    let claims = |scope: Value| json!({"iss": issuer, "aud": RESOURCE, "sub": "ada", "exp": now() + 60, "scope": scope});
    let token = sign(
        typed(None),
        &claims(json!("files.read,files.write * fïles tickets.read")),
    );
    let grant = auth(issuer).verify(&token).unwrap().grant().clone();
    assert!(holds(&grant, "tickets.read"));
    assert!(
        !holds(&grant, "files.read") && !holds(&grant, "files.write"),
        "{grant:?}"
    );
    for odd in [json!(7), json!({"a": 1}), json!(["ok", 3])] {
        let token = sign(typed(None), &claims(odd.clone()));
        assert_eq!(
            auth(issuer).verify(&token).unwrap_err(),
            TokenError::InvalidScope,
            "{odd}"
        );
    }
}

#[test]
fn header_rules_of_rfc_8725_and_rfc_7515() {
    let issuer = "https://issuer.test";
    let claims =
        json!({"iss": issuer, "aud": RESOURCE, "sub": "ada", "exp": now() + 60, "scope": "a"});
    // Explicit typing: another kind of JWT from the same issuer is not an access token.
    for typ in ["logout+jwt", "secevent+jwt", "dpop+jwt", "JOSE"] {
        let token = sign(typed(Some(typ)), &claims);
        assert_eq!(
            auth(issuer).verify(&token).unwrap_err(),
            TokenError::WrongType,
            "{typ}"
        );
    }
    for typ in [
        None,
        Some("JWT"),
        Some("at+jwt"),
        Some("application/at+jwt"),
    ] {
        assert!(
            auth(issuer).verify(&sign(typed(typ), &claims)).is_ok(),
            "{typ:?}"
        );
    }
    let strict = auth(issuer).require_access_token_type(true);
    assert_eq!(
        strict
            .verify(&sign(typed(Some("JWT")), &claims))
            .unwrap_err(),
        TokenError::WrongType
    );
    assert!(strict.verify(&sign(typed(Some("at+jwt")), &claims)).is_ok());
    // A critical extension the verifier does not understand is refused.
    let mut header = typed(Some("at+jwt"));
    header.crit = Some(vec!["exp-ext".into()]);
    assert_eq!(
        auth(issuer).verify(&sign(header, &claims)).unwrap_err(),
        TokenError::UnsupportedHeader
    );
}

#[test]
fn a_key_set_never_supplies_a_symmetric_or_weak_key() {
    let oct = json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]});
    assert!(VerificationKeys::jwks_json(&oct.to_string()).is_err());
    // A 1024-bit RSA modulus (171 base64url characters).
    let weak = json!({"keys": [{"kty": "RSA", "kid": "k2", "e": "AQAB", "n": "w".repeat(171)}]});
    assert!(VerificationKeys::jwks_json(&weak.to_string()).is_err());
}

/// A key set is published: one that carries a key's private half (`d`, RFC 7517's example key of appendix A.2)
/// lets anyone who reads it sign tokens. Such a key is never used, as a symmetric key is not (red-team finding: it
/// was taken, its public half verifying tokens anyone could have signed); the set's other keys still are.
#[test]
fn a_key_set_never_supplies_a_key_whose_private_half_it_publishes() {
    let public = json!({"kty": "EC", "crv": "P-256", "kid": "published",
                        "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
                        "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"});
    let mut private = public.clone();
    private["kid"] = json!("leaked");
    private["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
    assert!(VerificationKeys::jwks_json(&json!({"keys": [public]}).to_string()).is_ok());
    assert!(VerificationKeys::jwks_json(&json!({"keys": [private]}).to_string()).is_err());
    let both =
        VerificationKeys::jwks_json(&json!({"keys": [private, public]}).to_string()).unwrap();
    let described = format!("{both:?}");
    assert!(
        described.contains("published") && !described.contains("leaked"),
        "{described}"
    );
}

/// Verified tokens are kept for their next use; nothing about that lets a token in that would not pass the checks
/// itself: a token with its signature or payload changed is checked anew and refused, one with another claim set
/// gets its own verdict, and a token refused once stays refused.
#[test]
fn tokens_kept_after_verification_let_nothing_else_in() {
    let issuer = "https://issuer.test";
    let auth = auth(issuer);
    let claims = json!({"iss": issuer, "sub": "alice", "aud": RESOURCE, "exp": now() + 600,
                        "scope": "tickets.read"});
    let token = sign(typed(None), &claims);
    for _ in 0..3 {
        let caller = auth.verify(&token).unwrap();
        assert_eq!(caller.id(), "alice");
        assert!(holds(caller.grant(), "tickets.read"));
    }
    // The same token with its signature changed, then its payload: both checked anew, both refused.
    let (head, signature) = token.rsplit_once('.').unwrap();
    let mut forged = signature.chars().rev().collect::<String>();
    if forged == signature {
        forged.push('A');
    }
    assert!(auth.verify(&format!("{head}.{forged}")).is_err());
    let parts: Vec<&str> = token.split('.').collect();
    let payload = serde_json::to_vec(&json!({"iss": issuer, "sub": "mallory", "aud": RESOURCE,
                                             "exp": now() + 600, "scope": "tickets.read tickets.write"}))
    .unwrap();
    let swapped = format!("{}.{}.{}", parts[0], base64url(&payload), parts[2]);
    assert!(matches!(
        auth.verify(&swapped),
        Err(TokenError::BadSignature)
    ));
    // Another identity's token, verified on its own.
    let bob = sign(
        typed(None),
        &json!({"iss": issuer, "sub": "bob", "aud": RESOURCE, "exp": now() + 600, "scope": ""}),
    );
    assert_eq!(auth.verify(&bob).unwrap().id(), "bob");
    // An expired token is refused every time.
    let expired = sign(
        typed(None),
        &json!({"iss": issuer, "sub": "carol", "aud": RESOURCE, "exp": now() - 3600}),
    );
    for _ in 0..2 {
        assert!(matches!(auth.verify(&expired), Err(TokenError::Expired)));
    }
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

/// Algorithm confusion (RFC 8725 section 2.1): a token signed HS256 with the server's public key as the HMAC secret,
/// the classic forgery against verifiers that take the algorithm from the token. Refused: a public key allows only
/// its own algorithms. (Review finding: only `alg: none` was tested.)
#[test]
fn a_token_signed_hs256_with_the_public_key_as_secret_is_refused() {
    const PUBLIC_PEM: &[u8] = b"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEa+Wy76k3FwsRuNxSB1OHG4+7ao9b
gNkAxb9j7JblLmZRd9iXlkq/RjpsS20nScnaMshMvyoMl1ZrNLVnbvmlUg==
-----END PUBLIC KEY-----
";
    let issuer = "https://issuer.example.com";
    let auth = BearerAuth::new(
        issuer,
        RESOURCE,
        VerificationKeys::public_key_pem(PUBLIC_PEM).unwrap(),
    );
    let claims = json!({"iss": issuer, "aud": RESOURCE, "sub": "mallory", "scope": "files.write",
                        "iat": now(), "exp": now() + 600});
    for secret in [PUBLIC_PEM, PUBLIC_PEM.trim_ascii_end()] {
        let forged = jsonwebtoken::encode(
            &typed(Some("at+jwt")),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert!(
            matches!(auth.verify(&forged), Err(TokenError::AlgorithmNotAllowed)),
            "{:?}",
            auth.verify(&forged).map(|c| c.id().to_owned())
        );
    }
}

/// A clone given other settings started with the first one's verified tokens: a token checked for one resource was
/// taken by a clone for another (and by one with a claims mapping that would refuse it) for up to a minute.
#[test]
fn a_clone_with_other_settings_takes_nothing_on_the_first_ones_word() {
    let issuer = "https://issuer.example.com";
    let claims = json!({"iss": issuer, "sub": "alice", "aud": RESOURCE, "exp": now() + 600, "scope": "a.read"});
    let token = sign(typed(None), &claims);
    let first = auth(issuer);
    first.verify(&token).unwrap();

    let mut elsewhere = first.clone();
    elsewhere.resource = "https://other.example.com/mcp".into();
    assert_eq!(
        elsewhere.verify(&token).unwrap_err(),
        TokenError::WrongAudience
    );

    let strict = first
        .clone()
        .map_claims(|_| Err::<secure_tools::Caller, _>("no"));
    assert_eq!(
        strict.verify(&token).unwrap_err(),
        TokenError::ClaimsRefused
    );
    let typed_only = first.clone().require_access_token_type(true);
    assert_eq!(
        typed_only.verify(&token).unwrap_err(),
        TokenError::WrongType
    );
    assert!(first.verify(&token).is_ok(), "the first keeps its own");
}

/// A token bound to a client's key (`cnf`: DPoP or a certificate) is worth nothing without proof of that key, which
/// this server does not ask for: taken as a bearer token, a stolen one worked.
#[test]
fn a_sender_constrained_token_is_refused() {
    let issuer = "https://issuer.example.com";
    let claims = json!({
        "iss": issuer, "sub": "alice", "aud": RESOURCE, "exp": now() + 600, "scope": "a.read",
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
    });
    let error = auth(issuer)
        .verify(&sign(typed(None), &claims))
        .unwrap_err();
    assert_eq!(error, TokenError::SenderConstrained);
    assert_eq!(error.code(), "sender_constrained");
}

/// A token past 16 KiB is refused before it is hashed or decoded (three base64 and JSON passes over its header
/// each request, with only hyper's header limit above it), even when it is otherwise valid.
#[test]
fn an_oversized_token_is_refused_as_malformed() {
    let issuer = "https://issuer.example.com";
    let claims = json!({
        "iss": issuer, "sub": "alice", "aud": RESOURCE, "exp": now() + 600, "scope": "a.read",
        "padding": "x".repeat(secure_tools::serve::http::bearer::MAX_TOKEN_BYTES)
    });
    let token = sign(typed(None), &claims);
    assert_eq!(
        auth(issuer).verify(&token).unwrap_err(),
        TokenError::Malformed
    );
}

/// An HS256 token of this test's secret whose header and payload are the given JSON texts, as written (duplicate
/// keys and all).
fn signed_text(header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        base64url(header.as_bytes()),
        base64url(payload.as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

/// Red-team finding: a token whose `exp` was 2^63 seconds or more panicked its request (the time it stops being
/// taken overflowed), which then had no answer and no record. Such a token is taken (it has not expired), its end
/// put at the latest time there is.
#[test]
fn a_token_expiring_past_any_clock_is_checked_without_a_panic() {
    let issuer = "https://issuer.test";
    for exp in [
        json!(9_223_372_036_854_775_807u64),
        json!(u64::MAX),
        json!(1.8e19),
    ] {
        let claims =
            json!({"iss": issuer, "aud": RESOURCE, "sub": "ada", "exp": exp, "scope": "a"});
        let checked = std::panic::catch_unwind(|| auth(issuer).verify(&sign(typed(None), &claims)));
        assert!(checked.is_ok(), "{exp}: panicked");
    }
}

/// Red-team note: a header naming `crit` (or `b64`, `zip`, `enc`) as `null` was taken as one without it. RFC 7515
/// has no `null` for them: a header that names one, whatever its value, is refused.
#[test]
fn a_header_naming_an_unsupported_member_as_null_is_refused() {
    let issuer = "https://issuer.test";
    let payload =
        json!({"iss": issuer, "aud": RESOURCE, "sub": "ada", "exp": now() + 60, "scope": "a"})
            .to_string();
    for member in ["crit", "b64", "zip", "enc"] {
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","{member}":null}}"#);
        assert_eq!(
            auth(issuer).verify(&signed_text(&header, &payload)).err(),
            Some(TokenError::UnsupportedHeader),
            "{member}"
        );
    }
    // The same header without them passes.
    assert!(
        auth(issuer)
            .verify(&signed_text(r#"{"alg":"HS256","typ":"JWT"}"#, &payload))
            .is_ok()
    );
}

/// Red-team finding: `iss` as an array holding the issuer was accepted (jsonwebtoken takes any of an array's
/// values), though RFC 7519 makes it one string and the README says it must equal `--issuer` exactly.
#[test]
fn an_issuer_in_an_array_is_refused() {
    let issuer = "https://issuer.test";
    for iss in [json!([issuer]), json!(["https://attacker.example", issuer])] {
        let claims =
            json!({"iss": iss, "aud": RESOURCE, "sub": "ada", "exp": now() + 60, "scope": "a"});
        let refused = auth(issuer).verify(&sign(typed(None), &claims));
        assert!(
            matches!(
                refused,
                Err(TokenError::Malformed | TokenError::WrongIssuer)
            ),
            "{iss}: {:?}",
            refused.map(|c| c.id().to_owned())
        );
    }
}

/// Red-team finding: a claim written twice took its last value for the scopes (`"scope":"files.read",
/// "scope":"files.write"` granted `files.write`), while a repeated `sub`, `exp` or `iss` was refused: what a token
/// grants depended on which parser read it. A payload with a key written twice is malformed.
#[test]
fn a_claim_written_twice_is_refused() {
    let issuer = "https://issuer.test";
    let claims = format!(
        r#"{{"iss":"{issuer}","aud":"{RESOURCE}","sub":"ada","exp":{},"scope":"a","scope":"b"}}"#,
        now() + 60
    );
    let once = format!(
        r#"{{"iss":"{issuer}","aud":"{RESOURCE}","sub":"ada","exp":{},"scope":"b"}}"#,
        now() + 60
    );
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    assert!(auth(issuer).verify(&signed_text(header, &once)).is_ok());
    assert_eq!(
        auth(issuer)
            .verify(&signed_text(header, &claims))
            .unwrap_err(),
        TokenError::Malformed
    );
}

/// Red-team findings: `typ: application/jwt` was refused, though RFC 7515 section 4.1.9 makes it the same type as
/// `JWT`; and `cty: JWT` (a nested token, RFC 7519 section 5.2, whose payload is another JWT to verify) was accepted
/// with its payload read as claims. Nested tokens are not supported: refused.
#[test]
fn typ_application_jwt_is_jwt_and_a_nested_token_is_refused() {
    let issuer = "https://issuer.test";
    let claims =
        json!({"iss": issuer, "aud": RESOURCE, "sub": "ada", "exp": now() + 60, "scope": "a"});
    for typ in ["application/jwt", "Application/JWT"] {
        assert!(
            auth(issuer)
                .verify(&sign(typed(Some(typ)), &claims))
                .is_ok(),
            "{typ}"
        );
    }
    for cty in ["JWT", "jwt", "application/jwt"] {
        let mut header = typed(None);
        header.cty = Some(cty.into());
        assert_eq!(
            auth(issuer).verify(&sign(header, &claims)).unwrap_err(),
            TokenError::UnsupportedHeader,
            "{cty}"
        );
    }
}
