//! `mint-test-token`: prints an HS256 access token signed with `MCP_AUTH_HS256_SECRET`, FOR TESTING ONLY (real
//! tokens come from your authorization server). It lives in the test crate, out of every server's binary.
//!
//! `mint-test-token --issuer URL --audience URL --subject ID [--scopes "a b"] [--ttl SECONDS]`

use std::time::Duration;

fn main() {
    let mut issuer = None;
    let mut audience = None;
    let mut subject = None;
    let mut scopes = String::new();
    let mut ttl = 3600;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("mint-test-token: {flag} needs a value");
                std::process::exit(2);
            })
        };
        match flag.as_str() {
            "--issuer" => issuer = Some(value()),
            "--audience" => audience = Some(value()),
            "--subject" => subject = Some(value()),
            "--scopes" => scopes = value().replace(',', " "),
            "--ttl" => {
                let raw = value();
                ttl = raw.parse().unwrap_or_else(|_| {
                    eprintln!("mint-test-token: --ttl needs a number of seconds, not {raw:?}");
                    std::process::exit(2);
                })
            }
            _ => {
                eprintln!(
                    "usage: mint-test-token --issuer URL --audience URL --subject ID [--scopes \"a b\"] [--ttl SECONDS]"
                );
                std::process::exit(2);
            }
        }
    }
    let secret = std::env::var(secure_tools::serve::HS256_SECRET_VARIABLE)
        .ok()
        .filter(|s| s.len() >= 32);
    let (Some(issuer), Some(audience), Some(subject), Some(secret)) =
        (issuer, audience, subject, secret)
    else {
        eprintln!(
            "mint-test-token: needs --issuer, --audience, --subject, and MCP_AUTH_HS256_SECRET (32 bytes or more)"
        );
        std::process::exit(2);
    };
    println!(
        "{}",
        secure_tools::testing::hs256_token(
            &secret,
            &issuer,
            &audience,
            &subject,
            &scopes,
            Duration::from_secs(ttl),
        )
    );
}
