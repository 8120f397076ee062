//! Scope names and the grants callers hold.
//!
//! A [`Scope`] is an OAuth scope name as RFC 6749 defines it (`files.read`, `write:tickets`,
//! `api://tickets/Tickets.Read`), without `,` or `*`. A [`Grant`] is the set of scopes a caller holds. Matching is
//! exact and case-sensitive: there is no hierarchy and no wildcard, so `files`, `files.readwrite` and `FILES.READ`
//! grant nothing but a scope of exactly that name.
//!
//! Configuration (`MCP_SCOPES`, a certificate mapping) is strict: text that is not a scope is an error, never
//! silently dropped. An access token is lenient ([`Grant::from_token_scopes`]): identity providers put scopes of
//! their own in it (`openid`, `profile`, `User.Read`), which are kept or ignored but never make the token fail,
//! and which grant nothing unless a tool requires exactly that name.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use crate::grammar::MAX_SCOPE_LEN;

/// A validated scope name: RFC 6749's scope-token (printable ASCII without space, `"` and `\`), without `,` (it
/// separates scopes in lists) and `*` (there are no wildcards); at most [`MAX_SCOPE_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(Arc<str>);

/// Why a text is not a valid [`Scope`] or [`Grant`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The text was empty.
    #[error("a scope name cannot be empty")]
    Empty,
    /// The text was longer than [`MAX_SCOPE_LEN`].
    #[error("scope name is {len} bytes long; the limit is {MAX_SCOPE_LEN}")]
    TooLong {
        /// Length of the rejected text in bytes.
        len: usize,
    },
    /// The text broke the grammar; `reason` says how.
    #[error("invalid scope name `{}`: {reason}", .text.escape_debug())]
    Invalid {
        /// The rejected text (shortened if long).
        text: String,
        /// What rule it broke.
        reason: &'static str,
    },
}

impl Scope {
    /// Parses and validates a scope name.
    pub fn new(text: &str) -> Result<Self, ScopeError> {
        validate(text)?;
        Ok(Scope(Arc::from(text)))
    }

    /// The scope name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(text: &str) -> Result<(), ScopeError> {
    use crate::grammar::ScopeGrammarError as E;
    crate::grammar::scope(text).map_err(|error| match error {
        E::Empty => ScopeError::Empty,
        E::TooLong => ScopeError::TooLong { len: text.len() },
        other => ScopeError::Invalid {
            text: text.chars().take(64).collect(),
            reason: other.reason(),
        },
    })
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::new(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", &*self.0)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Scope::new(&text).map_err(serde::de::Error::custom)
    }
}

/// The set of scopes a caller holds.
///
/// Parsed from text in which scopes are separated by commas, white space or both (`"files.read, files.write"`,
/// the form of the `MCP_SCOPES` variable, or `"files.read files.write"`, the form of an OAuth `scope` claim).
/// Empty text is the empty grant; any item that is not a valid [`Scope`] makes the whole text an error.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Grant(BTreeSet<Scope>);

/// The first scope a tool requires that a caller's grant lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing_scope:{0}")]
pub struct MissingScope(pub Scope);

impl Grant {
    /// The grant that holds nothing.
    pub fn none() -> Self {
        Grant::default()
    }

    /// Parses a comma- or white-space-separated list of scopes, as configuration gives it; anything that is not
    /// a scope is an error.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(Scope::new)
            .collect()
    }

    /// The grant of an access token's scopes (the items of a space-separated `scope` claim, or of an `scp` array):
    /// items that are not scope names here (`*`, a comma, a non-ASCII name) are ignored, never fatal. The count of
    /// ignored items is returned beside the grant.
    pub fn from_token_scopes<'a>(items: impl IntoIterator<Item = &'a str>) -> (Self, usize) {
        let mut ignored = 0;
        let grant = items
            .into_iter()
            .filter(|item| !item.is_empty())
            .filter_map(|item| {
                let scope = Scope::new(item).ok();
                ignored += usize::from(scope.is_none());
                scope
            })
            .collect();
        (grant, ignored)
    }

    /// Whether the grant holds exactly this scope.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Checks that every scope in `required` is held; on failure names the first one missing, in the order given.
    pub fn check<'a>(
        &self,
        required: impl IntoIterator<Item = &'a Scope>,
    ) -> Result<(), MissingScope> {
        match required.into_iter().find(|scope| !self.contains(scope)) {
            Some(missing) => Err(MissingScope(missing.clone())),
            None => Ok(()),
        }
    }

    /// The scopes held, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether the grant holds no scope at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Scope> for Grant {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Grant(iter.into_iter().collect())
    }
}

impl FromStr for Grant {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grant::parse(s)
    }
}

impl fmt::Display for Grant {
    /// Space-separated, the form of an OAuth `scope` value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.iter().map(Scope::as_str))
            .finish()
    }
}

impl serde::Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_oauth_scope_names() {
        for ok in [
            "files",
            "files.read",
            "a.b-c.d_e9",
            "FILES.READ",
            "write:tickets",
            "Tickets.Read",
            "api://tickets/Tickets.Read",
        ] {
            assert_eq!(Scope::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "*",
            "files.*",
            "files read",
            "files,read",
            "fïles",
            "a\"b",
            "a\\b",
        ] {
            assert!(Scope::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            Scope::new(&"a".repeat(MAX_SCOPE_LEN + 1)),
            Err(ScopeError::TooLong {
                len: MAX_SCOPE_LEN + 1
            })
        );
    }

    #[test]
    fn a_token_s_foreign_or_odd_scopes_are_ignored_not_fatal() {
        let (grant, ignored) =
            Grant::from_token_scopes("openid profile tickets.read * a,b fïles".split(' '));
        let names: Vec<_> = grant.iter().map(Scope::as_str).collect();
        assert_eq!(names, ["openid", "profile", "tickets.read"]);
        assert_eq!(ignored, 3);
        // A foreign scope grants nothing but itself.
        let read = Scope::new("tickets.read").unwrap();
        let write = Scope::new("tickets.write").unwrap();
        assert!(grant.check([&read]).is_ok());
        assert!(grant.check([&write]).is_err());
    }

    #[test]
    fn grant_parses_commas_and_spaces() {
        let grant = Grant::parse(" files.read,files.write  admin\tx,,").unwrap();
        let names: Vec<_> = grant.iter().map(Scope::as_str).collect();
        assert_eq!(names, ["admin", "files.read", "files.write", "x"]);
        assert!(Grant::parse("").unwrap().is_empty());
        assert!(Grant::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn configured_grants_reject_invalid_items_instead_of_dropping_them() {
        let err = Grant::parse("files.read,fïles.write").unwrap_err();
        assert!(err.to_string().contains("fïles.write"), "{err}");
        assert!(Grant::parse("files.read *").is_err());
    }

    #[test]
    fn matching_is_exact() {
        let write = Scope::new("files.write").unwrap();
        for grant in [
            "files",
            "files.writer",
            "files.write.all",
            "files.read",
            "FILES.WRITE",
        ] {
            let grant = Grant::parse(grant).unwrap();
            assert_eq!(grant.check([&write]), Err(MissingScope(write.clone())));
        }
        assert!(Grant::parse("files.write").unwrap().check([&write]).is_ok());
    }

    #[test]
    fn all_required_scopes_must_be_held() {
        let a = Scope::new("a").unwrap();
        let b = Scope::new("b").unwrap();
        let grant = Grant::parse("a").unwrap();
        let err = grant.check([&a, &b]).unwrap_err();
        assert_eq!(err.to_string(), "missing_scope:b");
        assert!(Grant::parse("b a").unwrap().check([&a, &b]).is_ok());
        assert!(Grant::none().check([]).is_ok());
    }
}
