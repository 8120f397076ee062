//! Serving a tool set over MCP with rmcp: a server handler, routes to merge into an existing rmcp server, the
//! protocol version policy, and the stdio runner.

mod handler;
#[cfg(feature = "http")]
pub mod http;
mod id_scan;
mod in_flight;
mod lifecycle;
pub(crate) mod settings;
mod stdin;
mod stdio;
mod transport;

pub use handler::{SecureServer, Secured};
pub use lifecycle::{STDIO_CALLER, ServeError, listed_tools};
pub use settings::{
    Auth, CallLimits, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STDIO_SHUTDOWN_GRACE, HS256_SECRET_VARIABLE,
    InvalidSetting, ServerArgs, Settings, SettingsError, Transport,
};
pub use stdio::serve_stdio;
pub use transport::{DEFAULT_MAX_MESSAGE_BYTES, LineTransport};

use rmcp::model::ProtocolVersion;

/// The name the runners' own lines on standard error start with, as a program's messages do (`NAME: warning:
/// ...`): the running program's file name (`secure-file-server`), so that a server started by another program
/// (`secure-tools pin -- SERVER`, a host) is told apart from it; `secure-tools` if it has none.
pub(crate) fn program_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::args_os()
            .next()
            .and_then(|path| {
                std::path::Path::new(&path)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "secure-tools".to_owned())
    })
}

/// Which tools `tools/list` shows a caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Listing {
    /// Every tool, each with the scopes it requires in `_meta` (the default). A caller, and the person behind the
    /// host, can see what exists and what it would take to use it; hiding a tool protects nothing, since every
    /// call is checked anyway, and many clients only call tools they have listed.
    #[default]
    All,
    /// Only the tools whose scopes the caller holds. The list then depends on the caller, so it is not marked
    /// cacheable across callers.
    CallableOnly,
}

/// The protocol versions a server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPolicy {
    accepted: Vec<ProtocolVersion>,
    strict: bool,
}

impl Default for VersionPolicy {
    /// Every version rmcp knows, negotiated as the specification says: a client asking for a version the server
    /// does not have is offered the newest one it does.
    fn default() -> Self {
        VersionPolicy {
            accepted: ProtocolVersion::KNOWN_VERSIONS.to_vec(),
            strict: false,
        }
    }
}

impl VersionPolicy {
    /// Every known version from `minimum` on, strictly: a client asking for anything else is refused.
    pub fn minimum(minimum: ProtocolVersion) -> Self {
        VersionPolicy {
            accepted: ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .filter(|v| v.as_str() >= minimum.as_str())
                .cloned()
                .collect(),
            strict: true,
        }
    }

    /// [`VersionPolicy::minimum`] from a version's name (`2025-06-18`), as configuration gives it; an unknown name
    /// is an error whose message lists the known ones.
    pub fn minimum_named(name: &str) -> Result<Self, String> {
        match ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .find(|v| v.as_str() == name.trim())
        {
            Some(minimum) => Ok(VersionPolicy::minimum(minimum.clone())),
            None => {
                let names: Vec<_> = ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .map(|v| v.as_str())
                    .collect();
                Err(format!(
                    "unknown protocol version `{}`; expected one of {}",
                    name.escape_debug(),
                    names.join(", ")
                ))
            }
        }
    }

    /// Exactly these versions, strictly.
    pub fn only(versions: impl IntoIterator<Item = ProtocolVersion>) -> Self {
        VersionPolicy {
            accepted: versions.into_iter().collect(),
            strict: true,
        }
    }

    /// Whether a client asking for a version outside the policy is refused (`true`) or offered one inside it.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The versions accepted, oldest first.
    pub fn accepted(&self) -> &[ProtocolVersion] {
        &self.accepted
    }

    /// Whether out-of-policy versions are refused.
    pub fn is_strict(&self) -> bool {
        self.strict
    }
}

/// An error's message, then each cause's that it does not already hold: `Debug` for the errors a `main` returns.
pub(crate) fn message_with_causes(
    error: &dyn std::error::Error,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    let mut said = error.to_string();
    f.write_str(&said)?;
    let mut cause = error.source();
    while let Some(source) = cause {
        let text = source.to_string();
        if !said.contains(&text) {
            write!(f, ": {text}")?;
            said.push_str(&text);
        }
        cause = source.source();
    }
    Ok(())
}
