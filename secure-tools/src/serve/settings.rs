//! One settings shape for every runner: identity, audit, limits, versions, transport and authentication.
//!
//! [`ServerArgs`] holds the settings as text, the way flags, `MCP_*` environment variables and a TOML config file
//! give them; [`Settings`] is what they mean, checked. Precedence, highest first: flags, environment variables,
//! the config file (`--config FILE` or `MCP_CONFIG`), defaults.
//!
//! - A binary with clap flattens [`ServerArgs`] into its own parser (feature `cli`; clap reads each flag's
//!   variable too) and calls [`Settings::from_args`].
//! - A binary without clap calls [`Settings::from_env`].
//! - Code that configures a server itself builds [`Settings::stdio`] or [`Settings::http`] and sets fields.
//!
//! The config file holds the same settings, named as the flags are (`server-id = "files"`,
//! `allowed-origins = ["https://app.example.com"]`); tables in it are sections for the application's own settings
//! ([`Settings::section`]). An unknown key is an error, so a typo is not silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::Implementation;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{DEFAULT_MAX_MESSAGE_BYTES, Listing, VersionPolicy};
use crate::call::{Rate, parse_duration};
use crate::scope::Grant;
use crate::toolset::ToolSetBuilder;

/// How long calls still running at shutdown may take to finish over HTTP, unless configured: 10 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long calls still running at shutdown may take to finish over stdio, unless configured: 1 second. A host stops
/// a stdio server by closing its input, then sends SIGTERM if it has not exited, then SIGKILL (MCP's stdio transport;
/// the Python SDK waits 2 s before each): the calls get a second, and their records and `server_stop` the rest.
pub const DEFAULT_STDIO_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The limits every call of a served tool set gets, on top of what each tool declares: a rate per caller and tool,
/// a timeout, and how many calls may run at once. Unset fields keep the tool set's defaults (no rate limit, a 60 s
/// timeout, 64 calls at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallLimits {
    /// `MCP_RATE_LIMIT`: how often each caller may call each tool (`60/min`).
    pub rate: Option<Rate>,
    /// `MCP_TOOL_TIMEOUT`: how long a handler may run (`30s`), unless its tool says otherwise.
    pub timeout: Option<Duration>,
    /// `MCP_MAX_CONCURRENT_CALLS`: how many calls the server runs at once.
    pub max_concurrent_calls: Option<u32>,
    /// `MCP_MAX_CONCURRENT_CALLS_PER_CALLER`: how many of them one caller may have running.
    pub max_concurrent_calls_per_caller: Option<u32>,
}

impl CallLimits {
    /// Applies the limits that are set to a tool set.
    pub fn apply<S: Send + Sync + 'static>(
        self,
        mut builder: ToolSetBuilder<S>,
    ) -> ToolSetBuilder<S> {
        if let Some(rate) = self.rate {
            builder = builder.rate_limit(rate);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(max) = self.max_concurrent_calls {
            builder = builder.max_concurrent_calls(Some(max));
        }
        if let Some(max) = self.max_concurrent_calls_per_caller {
            builder = builder.max_concurrent_calls_per_caller(Some(max));
        }
        builder
    }
}

/// A setting that cannot be used: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct InvalidSetting {
    /// The setting, as its flag and variable name it (`--rate-limit / MCP_RATE_LIMIT`).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl InvalidSetting {
    pub(crate) fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidSetting {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// Why settings could not be read or used.
///
/// Its `Debug` is its message and those of its causes it does not already say, so that a `main` returning
/// `Result<(), Box<dyn Error>>` prints them, not the variant's fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A setting holds a value that cannot be used, or settings contradict each other.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    /// The config file cannot be read or is not valid.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Token verification keys cannot be loaded.
    #[cfg(feature = "http")]
    #[error(transparent)]
    Keys(#[from] super::http::KeyError),
    /// The mutual TLS setup is not usable.
    #[cfg(feature = "mtls")]
    #[error(transparent)]
    Mtls(#[from] super::http::mtls::MtlsError),
}

impl std::fmt::Debug for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::serve::message_with_causes(self, f)
    }
}

/// A value a setting is given as text (a flag, a variable): parsed, or why not.
pub(crate) trait FromSetting: Sized {
    fn from_setting(text: &str, delimiter: Option<char>) -> Result<Self, String>;
}

macro_rules! from_str_setting {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl FromSetting for $ty {
            fn from_setting(text: &str, _: Option<char>) -> Result<Self, String> {
                text.trim().parse().map_err(|_| {
                    format!(concat!("expected ", $expected, "; got `{}`"), text.escape_debug())
                })
            }
        }
    )*};
}

from_str_setting! {
    u64 => "a number",
    usize => "a number",
    u32 => "a number",
    SocketAddr => "an address and port such as 127.0.0.1:8080",
}

impl FromSetting for String {
    fn from_setting(text: &str, _: Option<char>) -> Result<Self, String> {
        Ok(text.trim().to_owned())
    }
}

impl FromSetting for PathBuf {
    fn from_setting(text: &str, _: Option<char>) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
}

impl FromSetting for bool {
    fn from_setting(text: &str, _: Option<char>) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "expected true or false; got `{}`",
                text.escape_debug()
            )),
        }
    }
}

impl FromSetting for Vec<String> {
    fn from_setting(text: &str, delimiter: Option<char>) -> Result<Self, String> {
        Ok(text
            .split(delimiter.unwrap_or(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// The mode of `path` when users other than its owner (its group or everyone) can write it.
fn writable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o022 != 0).then_some(mode & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Says so on stderr when a file the settings name can be written by users other than its owner.
fn warn_if_writable_by_others(path: &Path, setting: &str) {
    if let Some(mode) = writable_by_others(path) {
        eprintln!(
            "{}: warning: {} ({setting}) can be written by users other than its owner (mode {mode:o}): whoever can \
             write it can change what the server trusts or how it runs; make it writable by its owner only \
             (chmod go-w)",
            super::program_name(),
            path.display(),
        );
    }
}

/// Says so on stderr when a key file can be read by users other than its owner (its group or everyone): whoever can
/// read the audit keys can forge the chain or its checkpoints. Not refused: a secret mounted by an orchestrator is
/// often `0644` inside a container only its process sees.
pub(crate) fn warn_if_readable_by_others(path: &Path, setting: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o044 != 0
        {
            eprintln!(
                "{}: warning: {} ({setting}) can be read by users other than its owner (mode {:o}); keep it \
                 readable by the server's user only (chmod 600)",
                super::program_name(),
                path.display(),
                metadata.permissions().mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, setting);
}

/// Warns of each `MCP_*` variable that is not a setting but is spelled nearly like one (`MCP_RATE_LIMITS`,
/// `MCP_AUDIT_CHAIN_KEYS`): a typo in the environment would otherwise leave the weaker default in place without a
/// word, where the same typo in the config file is refused. Other `MCP_*` names are left alone: an application
/// may read variables of its own.
pub(crate) fn warn_misspelled_variables(names: impl Iterator<Item = std::ffi::OsString>) {
    for name in names {
        if let Some(near) = misspelled_variable(&name.to_string_lossy()) {
            eprintln!(
                "{}: warning: {} is not a setting of this server; did you mean {near}?",
                super::program_name(),
                name.to_string_lossy().escape_debug()
            );
        }
    }
}

/// The known variable `name` nearly spells, if it is an `MCP_*` name that is not itself known.
fn misspelled_variable(name: &str) -> Option<&'static str> {
    let mut known = ServerArgs::VARIABLES
        .iter()
        .copied()
        .chain([HS256_SECRET_VARIABLE]);
    if !name.starts_with("MCP_") || name.len() > 64 || known.clone().any(|k| k == name) {
        return None;
    }
    known.find(|k| edit_distance(k.as_bytes(), name.as_bytes()) <= 2)
}

/// The variable of `own` (a binary's own settings, as the file server's root) that `name` nearly spells, or spells
/// with the `MCP_` prefix the server's own settings have (`MCP_MAX_ROOT_FILES`), if `name` is none of them and none
/// of the server's.
#[cfg(feature = "fs")]
pub(crate) fn misspelled_among(name: &str, own: &[&'static str]) -> Option<&'static str> {
    if name.len() > 64
        || own.contains(&name)
        || ServerArgs::VARIABLES.contains(&name)
        || name == HS256_SECRET_VARIABLE
    {
        return None;
    }
    let unprefixed = name.strip_prefix("MCP_");
    own.iter().copied().find(|known| {
        unprefixed == Some(*known) || edit_distance(known.as_bytes(), name.as_bytes()) <= 2
    })
}

/// Warns of each variable that nearly spells one of `own` (see [`misspelled_among`]): a typo would otherwise leave
/// the weaker default in place without a word.
#[cfg(feature = "fs")]
pub(crate) fn warn_misspelled_among(
    names: impl Iterator<Item = std::ffi::OsString>,
    own: &[&'static str],
) {
    for name in names {
        if let Some(near) = misspelled_among(&name.to_string_lossy(), own) {
            eprintln!(
                "{}: warning: {} is not a setting of this server; did you mean {near}?",
                super::program_name(),
                name.to_string_lossy().escape_debug()
            );
        }
    }
}

/// Levenshtein distance, for names of at most 64 bytes.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(x != y))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// A variable's value: unset or blank is `None`.
pub(crate) fn variable<T: FromSetting>(
    name: &'static str,
    flag: &str,
    delimiter: Option<char>,
) -> Result<Option<T>, InvalidSetting> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => T::from_setting(&text, delimiter)
            .map(Some)
            .map_err(|message| InvalidSetting::new(format!("{flag} / {name}"), message)),
        Ok(_) => Ok(None),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(InvalidSetting::new(
            format!("{flag} / {name}"),
            "not valid UTF-8",
        )),
    }
}

/// `text` with every double-quoted part (`"..."`, escapes within kept together) shown as `"..."`: serde's messages
/// about a value quote it whole.
fn without_quoted_values(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        shown.push(c);
        if c == '"' {
            let mut escaped = false;
            for inner in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if inner == '\\' {
                    escaped = true;
                } else if inner == '"' {
                    break;
                }
            }
            shown.push_str("...\"");
        }
    }
    shown
}

/// `text` with the credentials a URL in it may carry masked: its userinfo (`redis://:PASSWORD@host`,
/// `https://USER:PASSWORD@host`: user and password both, as `***`), and the values of the query parameters `user`,
/// `username`, `pass` and `password` (Redis takes them there for a Unix socket), and of those that commonly carry a
/// credential in a URL (`token`, `access_token`, `api_key`, `apikey`, `key`, `secret`, `sig`, `signature`). Text that
/// is no such URL is returned as it is. For what is shown of settings (their `Debug`, messages naming a URL); never
/// for what is used. (A `method_call` record's target drops more: see `recorded_target` in the handler.)
pub(crate) fn masked_url(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let Some(scheme_end) = text.find("://") else {
        return Cow::Borrowed(text);
    };
    let authority_start = scheme_end + "://".len();
    let rest = &text[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let mut changed = false;
    let mut shown = String::with_capacity(text.len());
    shown.push_str(&text[..authority_start]);
    match authority.rfind('@') {
        Some(at) => {
            shown.push_str("***");
            shown.push_str(&authority[at..]);
            changed = true;
        }
        None => shown.push_str(authority),
    }
    match after.split_once('?') {
        Some((path, query_and_fragment)) => {
            let (query, fragment) = query_and_fragment
                .find('#')
                .map_or((query_and_fragment, ""), |hash| {
                    query_and_fragment.split_at(hash)
                });
            shown.push_str(path);
            shown.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    shown.push('&');
                }
                match pair.split_once('=') {
                    Some((name, _))
                        if [
                            "user",
                            "username",
                            "pass",
                            "password",
                            "token",
                            "access_token",
                            "api_key",
                            "apikey",
                            "key",
                            "secret",
                            "sig",
                            "signature",
                        ]
                        .iter()
                        .any(|secret| name.eq_ignore_ascii_case(secret)) =>
                    {
                        shown.push_str(name);
                        shown.push_str("=***");
                        changed = true;
                    }
                    _ => shown.push_str(pair),
                }
            }
            shown.push_str(fragment);
        }
        None => shown.push_str(after),
    }
    if changed {
        Cow::Owned(shown)
    } else {
        Cow::Borrowed(text)
    }
}

/// A setting as its `Debug` shows it: any URL's credentials masked ([`masked_url`]).
pub(crate) struct Shown<'a, T>(pub(crate) &'a Option<T>);

/// How a setting's value is shown.
pub(crate) trait ShownSetting {
    fn fmt_shown(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;
}

impl<T: ShownSetting> std::fmt::Debug for Shown<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(value) => {
                f.write_str("Some(")?;
                value.fmt_shown(f)?;
                f.write_str(")")
            }
        }
    }
}

impl ShownSetting for String {
    fn fmt_shown(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&masked_url(self), f)
    }
}

impl ShownSetting for Vec<String> {
    fn fmt_shown(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|item| masked_url(item)))
            .finish()
    }
}

macro_rules! shown_as_is {
    ($($ty:ty),*) => {
        $(impl ShownSetting for $ty {
            fn fmt_shown(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self, f)
            }
        })*
    };
}
shown_as_is!(PathBuf, bool, u32, u64, usize, SocketAddr);

/// Whether a setting's value is blank text (only text can be: clap refuses a blank number or address).
#[cfg(feature = "cli")]
pub(crate) trait Blank {
    fn is_blank(&self) -> bool;
}

#[cfg(feature = "cli")]
impl Blank for String {
    fn is_blank(&self) -> bool {
        self.trim().is_empty()
    }
}

#[cfg(feature = "cli")]
impl Blank for PathBuf {
    fn is_blank(&self) -> bool {
        self.to_str().is_some_and(|text| text.trim().is_empty())
    }
}

#[cfg(feature = "cli")]
impl Blank for Vec<String> {
    fn is_blank(&self) -> bool {
        self.iter().all(Blank::is_blank)
    }
}

#[cfg(feature = "cli")]
macro_rules! never_blank {
    ($($ty:ty),*) => {
        $(impl Blank for $ty {
            fn is_blank(&self) -> bool {
                false
            }
        })*
    };
}
#[cfg(feature = "cli")]
never_blank!(bool, u32, u64, usize, SocketAddr);

/// Declares the raw settings once: the struct (a clap `Args` with feature `cli`, each field's variable attached;
/// deserializable from the config file), reading them from the environment, and layering one set over another.
macro_rules! settings_args {
    (
        $(#[$struct_attr:meta])*
        pub struct $name:ident {
            $(
                $(#[$attr:meta])*
                $field:ident : $ty:ty $(= env $env:literal $(split $delimiter:literal)?)?
            ),* $(,)?
        }
    ) => {
        $(#[$struct_attr])*
        #[derive(Clone, Default, serde::Deserialize)]
        #[cfg_attr(feature = "cli", derive(clap::Args))]
        // Its documentation is for the API: a program flattening it keeps its own `--help` text (or none).
        #[cfg_attr(feature = "cli", command(about = None, long_about = None))]
        #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
        #[non_exhaustive]
        pub struct $name {
            $(
                $(#[$attr])*
                // A variable's value is not shown in `--help`: it may be a secret (a Redis or JWKS URL with
                // credentials in it).
                $(#[cfg_attr(feature = "cli", arg(env = $env, hide_env_values = true))])?
                pub $field: Option<$ty>,
            )*
        }

        /// Each setting as given, except the credentials a URL may carry (a Redis or JWKS URL's password):
        /// masked (see `masked_url`).
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &$crate::serve::settings::Shown(&self.$field)))*
                    .finish()
            }
        }

        impl $name {
            /// The environment variables these settings are read from.
            #[allow(dead_code)]
            pub(crate) const VARIABLES: &'static [&'static str] = &[$($($env,)?)*];

            /// The settings given by environment variables.
            pub fn from_env() -> Result<Self, $crate::serve::InvalidSetting> {
                Ok($name {
                    $(
                        $field: settings_args!(
                            @variable $ty, stringify!($field) $(, $env ; $($delimiter)?)?
                        )?,
                    )*
                })
            }

            /// Unsets each setting whose variable is set but blank and whose value is blank too: clap passes a
            /// blank variable on as a value, while a blank variable means unset (as [`Self::from_env`] reads it).
            #[cfg(feature = "cli")]
            pub(crate) fn blank_variables_unset(mut self) -> Self {
                $(
                    $(
                        if std::env::var_os($env).is_some_and(|value| {
                            value.to_str().is_some_and(|text| text.trim().is_empty())
                        }) && self
                            .$field
                            .as_ref()
                            .is_some_and($crate::serve::settings::Blank::is_blank)
                        {
                            self.$field = None;
                        }
                    )?
                )*
                self
            }

            /// The fields `lower` gives that these leave unset: those [`Self::or`] takes from it.
            #[allow(dead_code)] // read for the server's own settings, not for an application's table
            pub(crate) fn taken_from(&self, lower: &Self) -> Vec<&'static str> {
                let mut taken = Vec::new();
                $(
                    if self.$field.is_none() && lower.$field.is_some() {
                        taken.push(stringify!($field));
                    }
                )*
                taken
            }

            /// These settings, each unset one taken from `lower`.
            pub fn or(self, lower: Self) -> Self {
                $name {
                    $( $field: self.$field.or(lower.$field), )*
                }
            }
        }
    };
    (@variable $ty:ty, $field:expr, $env:literal ; $($delimiter:literal)?) => {
        $crate::serve::settings::variable::<$ty>(
            $env,
            &$crate::serve::settings::flag_of($field),
            settings_args!(@delimiter $($delimiter)?),
        )
    };
    (@variable $ty:ty, $field:expr) => {
        Ok::<Option<$ty>, $crate::serve::InvalidSetting>(None)
    };
    (@delimiter) => { None };
    (@delimiter $delimiter:literal) => { Some($delimiter) };
}

#[cfg_attr(not(feature = "fs"), allow(unused_imports))]
pub(crate) use settings_args;

/// `--server-id` for `server_id`; a list's flag is singular, given once per value (`--allowed-host`).
pub(crate) fn flag_of(field: &str) -> String {
    let singular = match field {
        "allowed_origins" => "allowed_origin",
        "allowed_hosts" => "allowed_host",
        "authorization_servers" => "authorization_server",
        "token_audiences" => "token_audience",
        "scope_claims" => "scope_claim",
        "challenge_scopes" => "challenge_scope",
        "mtls_clients" => "mtls_client",
        "trusted_proxies" => "trusted_proxy",
        other => other,
    };
    format!("--{}", singular.replace('_', "-"))
}

impl ServerArgs {
    /// These settings layered over the config file they name, as [`Settings::from_args`] reads them, and nothing
    /// else checked or loaded (no key read, no JWKS fetched): for a command that needs a setting or two of a
    /// server's, a health check say.
    pub fn layered(self) -> Result<ServerArgs, SettingsError> {
        self.layered_with_file().map(|(args, _)| args)
    }

    fn layered_with_file(self) -> Result<(ServerArgs, ConfigFile), SettingsError> {
        #[cfg(feature = "cli")]
        let args = self.blank_variables_unset();
        #[cfg(not(feature = "cli"))]
        let args = self;
        Ok(match args.config.clone() {
            Some(path) => {
                let (from_file, mut file) = ConfigFile::read(&path)?;
                file.taken = args.taken_from(&from_file);
                (args.or(from_file), file)
            }
            None => (args, ConfigFile::default()),
        })
    }
}

settings_args! {
    /// A server's settings as text, the way flags, environment variables and a config file give them. Every field
    /// is optional; [`Settings::from_args`] fills in the defaults and checks the whole.
    pub struct ServerArgs {
        /// A TOML file to read settings from; flags and environment variables take precedence over it.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        #[serde(skip)]
        config: PathBuf = env "MCP_CONFIG",
        /// The id stamped on every audit record.
        #[cfg_attr(feature = "cli", arg(long, value_name = "ID"))]
        server_id: String = env "MCP_SERVER_ID",
        /// Append audit records to this file (JSON lines, chained: see `--audit-chain-key`). Default: standard error.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        audit_log: PathBuf = env "MCP_AUDIT_LOG",
        /// A reviewed lockfile of the tool definitions (written by `secure-tools pin`): at start the server
        /// compares what it would list with it and, when they differ, prints what changed and refuses to start
        /// (or starts anyway, with `--tools-lock-mode warn`).
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        tools_lock: PathBuf = env "MCP_TOOLS_LOCK",
        /// With `--tools-lock`: `refuse` (the default) or `warn`.
        #[cfg_attr(feature = "cli", arg(long, value_name = "MODE"))]
        tools_lock_mode: String = env "MCP_TOOLS_LOCK_MODE",
        /// A file holding the key (32 bytes or more) that seals the audit file's chain (HMAC-SHA-256), so that
        /// whoever can write the file but lacks the key cannot re-chain it. Default: an unkeyed chain.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        audit_chain_key: PathBuf = env "MCP_AUDIT_CHAIN_KEY",
        /// A file holding the Ed25519 private key (hex; `secure-tools audit keygen`) that signs checkpoints of
        /// the audit file, so a file replaced by someone without it shows. Default: no checkpoints.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        audit_checkpoint_key: PathBuf = env "MCP_AUDIT_CHECKPOINT_KEY",
        /// With `--audit-checkpoint-key`: how long records may go unsigned while more are written. Default: 60s.
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        audit_checkpoint_interval: String = env "MCP_AUDIT_CHECKPOINT_INTERVAL",
        /// When audit records reach the disk: `write` (each handed to the operating system before the call's
        /// result, the default), `record` (each also synced), or a duration (synced at most that long apart).
        #[cfg_attr(feature = "cli", arg(long, value_name = "MODE"))]
        audit_sync: String = env "MCP_AUDIT_SYNC",
        /// The scopes of the one caller on stdio (or, with `--http-insecure-no-auth`, of every caller), comma- or
        /// space-separated (in the config file, also a list of them). Unset or empty grants nothing, so every
        /// scoped call is denied.
        #[cfg_attr(feature = "cli", arg(long, value_name = "SCOPES"))]
        #[serde(deserialize_with = "scopes_text_or_list")]
        scopes: String = env "MCP_SCOPES",
        /// The largest incoming message (stdio) or request body (HTTP), in bytes. Default: 4 MiB.
        #[cfg_attr(feature = "cli", arg(long, value_name = "BYTES"))]
        max_message_bytes: usize = env "MCP_MAX_MESSAGE_BYTES",
        /// How often each caller may call each tool, e.g. `60/min` (`10/s`, `1000/hour`); past it, calls are
        /// refused `rate_limited` with the time to wait. Default: no limit.
        #[cfg_attr(feature = "cli", arg(long, value_name = "RATE"))]
        rate_limit: String = env "MCP_RATE_LIMIT",
        /// Keep the rate limits' state in this Redis (`redis://127.0.0.1:6379/0`; feature `redis`), shared by every
        /// replica pointed at it, instead of in this process.
        #[cfg_attr(feature = "cli", arg(long, value_name = "URL"))]
        rate_limit_redis: String = env "MCP_RATE_LIMIT_REDIS",
        /// With `--rate-limit-redis`: the Redis password, read from this file (its bytes, a final line break left
        /// out; readable by the server's user only) rather than written in the URL, which a config file, `ps` or
        /// the server's environment shows. The URL may still name the user (`redis://USER@HOST/0`).
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        rate_limit_redis_password_file: PathBuf = env "MCP_RATE_LIMIT_REDIS_PASSWORD_FILE",
        /// With `--rate-limit-redis`: when Redis cannot be reached, `refuse` calls (`rate_limit_unavailable`, the
        /// default) or `allow` them unlimited.
        #[cfg_attr(feature = "cli", arg(long, value_name = "MODE"))]
        rate_limit_redis_unavailable: String = env "MCP_RATE_LIMIT_REDIS_UNAVAILABLE",
        /// With `--rate-limit-redis`: the name the limits' keys are kept under, shared by the replicas that share
        /// their limits (not `--server-id`, which each replica may have its own of). Default: the server's name.
        #[cfg_attr(feature = "cli", arg(long, value_name = "NAME"))]
        rate_limit_redis_namespace: String = env "MCP_RATE_LIMIT_REDIS_NAMESPACE",
        /// How long a tool may run before it is stopped, e.g. `30s` (`500ms`, `2min`); the call is then refused
        /// `timeout`. Default: 60s.
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        tool_timeout: String = env "MCP_TOOL_TIMEOUT",
        /// How many calls may run at once; one more is refused `overloaded`. Default: 64.
        #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
        max_concurrent_calls: u32 = env "MCP_MAX_CONCURRENT_CALLS",
        /// How many calls one caller may have running at once (over HTTP, one identity: all its sessions and
        /// connections); one more is refused `overloaded`. Default: no limit of its own, only the server's.
        #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
        max_concurrent_calls_per_caller: u32 = env "MCP_MAX_CONCURRENT_CALLS_PER_CALLER",
        /// How long calls in flight may take to finish at SIGTERM, SIGINT or SIGHUP (and over stdio once the input
        /// ends), e.g. `5s`. Default: 10s over HTTP, 1s over stdio (hosts kill a stdio server 2s after asking it to
        /// stop).
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        shutdown_grace: String = env "MCP_SHUTDOWN_GRACE",
        /// With `--http`: how long the server goes on serving after SIGTERM, SIGINT or SIGHUP, its health check
        /// answering `503` meanwhile, before its stop begins, e.g. `5s`: time for a load balancer to take it out.
        /// Default: none (a second signal ends it).
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        shutdown_delay: String = env "MCP_SHUTDOWN_DELAY",
        /// Refuse clients asking for a protocol version older than this (e.g. `2025-06-18`).
        #[cfg_attr(feature = "cli", arg(long, value_name = "VERSION"))]
        min_protocol_version: String = env "MCP_MIN_PROTOCOL_VERSION",
        /// Which tools `tools/list` shows a caller: `all` (each with the scopes it requires; the default) or
        /// `callable` (only those whose scopes the caller holds).
        #[cfg_attr(feature = "cli", arg(long, value_name = "WHICH"))]
        list_tools: String = env "MCP_LIST_TOOLS",
        /// Serve MCP over streamable HTTP at this address (`127.0.0.1:8080`) instead of stdio; the endpoint is
        /// `/mcp`. Needs authentication: bearer tokens (`--issuer`, `--resource-url` and a key; over HTTPS with
        /// `--tls-cert` and `--tls-key`) or mutual TLS (`--tls-cert`, `--tls-key`, `--client-ca`, `--mtls-client`).
        #[cfg_attr(feature = "cli", arg(long, value_name = "ADDR"))]
        http: SocketAddr = env "MCP_HTTP",
        /// FOR TESTING ONLY (e.g. the MCP conformance suite, which cannot send a token): with `--http`, serve
        /// without authentication; every caller is anonymous and holds `--scopes`. Loopback addresses only. No
        /// variable and no config key, so it is never on by accident.
        #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"))]
        #[serde(skip)]
        http_insecure_no_auth: bool,
        /// With `--http`: stateful sessions with streamed (SSE) answers instead of stateless JSON answers.
        #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"))]
        http_sessions: bool = env "MCP_HTTP_SESSIONS",
        /// With `--http-sessions`: how long a session lives without a request from its client. Default: 5min.
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        http_session_idle: String = env "MCP_HTTP_SESSION_IDLE",
        /// With `--http`: how long a client has to send a request head, on a new or an idle connection, and to read
        /// any of an answer the server cannot write further. Default: 10s.
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        http_header_timeout: String = env "MCP_HTTP_HEADER_TIMEOUT",
        /// With `--http`: how long a request may take until its answer starts. Default: the tool timeout and 5s,
        /// so that a call that runs too long gets its `timeout` refusal rather than a `408`.
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        http_request_timeout: String = env "MCP_HTTP_REQUEST_TIMEOUT",
        /// With `--http`: how many connections may be open at once. Default: 1024, and never more than the
        /// descriptor limit leaves.
        #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
        http_max_connections: usize = env "MCP_HTTP_MAX_CONNECTIONS",
        /// With `--http`: serve the call metrics as Prometheus text at `http://ADDR/metrics` (feature `otel`), on
        /// an address of its own and without authentication: bind a loopback address, or one only the scraper can
        /// reach (the metrics name the tools and count their calls and refusals).
        #[cfg_attr(feature = "cli", arg(long, value_name = "ADDR"))]
        http_metrics: SocketAddr = env "MCP_HTTP_METRICS",
        /// Browser origins allowed besides loopback ones (`https://app.example.com`); comma-separated in the
        /// variable.
        #[cfg_attr(feature = "cli", arg(long = "allowed-origin", value_name = "ORIGIN", value_delimiter = ','))]
        allowed_origins: Vec<String> = env "MCP_ALLOWED_ORIGINS" split ',',
        /// Host names accepted in `Host` besides loopback ones (for a server behind a proxy); comma-separated in
        /// the variable.
        #[cfg_attr(feature = "cli", arg(long = "allowed-host", value_name = "HOST", value_delimiter = ','))]
        allowed_hosts: Vec<String> = env "MCP_ALLOWED_HOSTS" split ',',
        /// With `--http`, behind a reverse proxy: the proxy's address or network (`10.0.0.0/8`), whose
        /// `X-Forwarded-For` names the client (recorded as `forwarded_for`; `remote_addr` stays the proxy's).
        /// Repeat for each; comma-separated in the variable.
        #[cfg_attr(feature = "cli", arg(long = "trusted-proxy", value_name = "ADDR[/BITS]", value_delimiter = ','))]
        trusted_proxies: Vec<String> = env "MCP_TRUSTED_PROXIES" split ',',
        /// The issuer (`iss`) access tokens must come from.
        #[cfg_attr(feature = "cli", arg(long, value_name = "URL"))]
        issuer: String = env "MCP_AUTH_ISSUER",
        /// This server's resource URL, e.g. `https://mcp.example.com/mcp` (`https://`, or `http://` to a loopback
        /// host): where clients reach it, and the audience (`aud`) tokens must name unless `--token-audience` says
        /// otherwise.
        #[cfg_attr(feature = "cli", arg(long, value_name = "URL"))]
        resource_url: String = env "MCP_RESOURCE_URL",
        /// The audiences a token may name in `aud` instead of the resource URL (Entra's application ID URI, say);
        /// comma-separated in the variable.
        #[cfg_attr(feature = "cli", arg(long = "token-audience", value_name = "AUDIENCE", value_delimiter = ','))]
        token_audiences: Vec<String> = env "MCP_AUTH_AUDIENCES" split ',',
        /// Authorization servers listed in the protected resource metadata (default: the issuer).
        #[cfg_attr(feature = "cli", arg(long = "authorization-server", value_name = "URL", value_delimiter = ','))]
        authorization_servers: Vec<String> = env "MCP_AUTHORIZATION_SERVERS" split ',',
        /// Verify tokens with the keys of this JWKS file.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        jwks_file: PathBuf = env "MCP_AUTH_JWKS_FILE",
        /// Verify tokens with the keys of the JWKS at this URL (feature `jwks`), fetched at start and again, at
        /// most every 30 s, when a token names a key it does not hold. `https://`, or `http://` to a loopback
        /// host only.
        #[cfg_attr(feature = "cli", arg(long, value_name = "URL"))]
        jwks_url: String = env "MCP_AUTH_JWKS_URL",
        /// With `--jwks-url`: the longest the fetched keys are used before they are fetched again (in the
        /// background), so that a key the provider removed stops being accepted. Default: 10m.
        #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
        jwks_max_age: String = env "MCP_AUTH_JWKS_MAX_AGE",
        /// Also trust the CA certificate(s) in this PEM file for an `https://` JWKS URL.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        jwks_ca: PathBuf = env "MCP_AUTH_JWKS_CA",
        /// Verify tokens with this RSA or EC public key (PEM).
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        public_key_pem: PathBuf = env "MCP_AUTH_PUBLIC_KEY_PEM",
        /// Verify tokens with the HS256 secret in this file (its bytes, a final line break left out; 32 bytes or
        /// more; readable by the server's user only). Better than `MCP_AUTH_HS256_SECRET`, which stays in the
        /// server's environment, and in that of every process it starts.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        hs256_secret_file: PathBuf = env "MCP_AUTH_HS256_SECRET_FILE",
        /// The claims a token's scopes are read from, in order (default: `scope`, then `scp`).
        #[cfg_attr(feature = "cli", arg(long = "scope-claim", value_name = "CLAIM", value_delimiter = ','))]
        scope_claims: Vec<String> = env "MCP_AUTH_SCOPE_CLAIMS" split ',',
        /// The scopes a `401`'s challenge names, for clients to ask their provider for (default: none named: they
        /// ask for every scope the metadata lists).
        #[cfg_attr(feature = "cli", arg(long = "challenge-scope", value_name = "SCOPE", value_delimiter = ','))]
        challenge_scopes: Vec<String> = env "MCP_AUTH_CHALLENGE_SCOPES" split ',',
        /// Accept only tokens typed as access tokens (`typ: at+jwt`, RFC 9068).
        #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"))]
        require_at_jwt: bool = env "MCP_AUTH_REQUIRE_AT_JWT",
        /// This server's certificate chain (PEM, leaf first): with `--http`, serve HTTPS. With `--mtls-client`,
        /// callers are authenticated by client certificate (mutual TLS); with bearer options, by their tokens.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        tls_cert: PathBuf = env "MCP_TLS_CERT",
        /// With `--tls-cert`: this server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        tls_key: PathBuf = env "MCP_TLS_KEY",
        /// With `--tls-cert`: the CA certificate(s) (PEM) client certificates must be signed by; a client without
        /// one cannot connect. With bearer options, the caller is still the token's.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        client_ca: PathBuf = env "MCP_TLS_CLIENT_CA",
        /// With `--client-ca`: certificate revocation lists (PEM, one per CA) checked on every client certificate: a
        /// revoked one, one no list covers, or a list past its `nextUpdate` fails the handshake. Read again when
        /// the file changes.
        #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
        client_crl: PathBuf = env "MCP_TLS_CLIENT_CRL",
        /// Mutual TLS: map client certificates carrying `NAME` (a subject CN, or `uri:`, `dns:` or `email:` and a
        /// subject alternative name, such as `uri:spiffe://example.org/ns/prod/sa/reader`) to the caller `NAME`
        /// holding `SCOPES` (`alice=files.read files.write`). Repeat for each client; in the variable, separate
        /// them with `;`.
        #[cfg_attr(feature = "cli", arg(long = "mtls-client", value_name = "NAME=SCOPES", value_delimiter = ';'))]
        mtls_clients: Vec<String> = env "MCP_MTLS_CLIENTS" split ';',
    }
}

/// The config file's `scopes`: a string (`"files.read files.write"`) or a list of them (`["files.read",
/// "files.write"]`), as other lists in the file are written; a list is read as its items separated by spaces.
fn scopes_text_or_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        Text(String),
        List(Vec<String>),
    }
    Ok(Some(match Scopes::deserialize(deserializer)? {
        Scopes::Text(text) => text,
        Scopes::List(list) => list.join(" "),
    }))
}

/// The variable an HS256 secret may be given in (never a flag, which other users could see, nor the config file,
/// which tends to be shared). A file is better (`--hs256-secret-file`, `MCP_AUTH_HS256_SECRET_FILE`): the variable
/// stays in the server's environment, which every process it starts inherits unless told otherwise, and whoever
/// reads it can mint tokens. A tool that starts a process should give it only the variables it needs
/// (`std::process::Command::env_clear`, then `env` for each), or at least `env_remove` this one; the server does
/// not unset it (`std::env::remove_var` is unsound while other threads may read the environment).
pub const HS256_SECRET_VARIABLE: &str = "MCP_AUTH_HS256_SECRET";

/// The settings of a config file: the server's own, and the tables left for the application.
#[derive(Clone, Default)]
struct ConfigFile {
    path: Option<PathBuf>,
    sections: toml::Table,
    /// The tables the application has read ([`Settings::section`]); one never read is refused at start.
    read: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The settings taken from the file (their fields), flags and variables having left them unset.
    taken: Vec<&'static str>,
}

impl ConfigFile {
    /// `error`, naming a setting taken from this file by its key in the file rather than by the flag and variable
    /// the operator did not use.
    fn name_keys(&self, error: SettingsError) -> SettingsError {
        let mut invalid = match (error, &self.path) {
            (SettingsError::Invalid(invalid), Some(_)) => invalid,
            (other, _) => return other,
        };
        let path = self.path.as_deref().unwrap_or(Path::new(""));
        let taken = self.taken.iter().find(|field| {
            let flag = flag_of(field);
            invalid
                .name
                .strip_prefix(&flag)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(" /"))
        });
        if let Some(field) = taken {
            invalid.name = format!(
                "{} in the config file {}",
                field.replace('_', "-"),
                path.display()
            );
        }
        SettingsError::Invalid(invalid)
    }
}

/// The file and the names of its tables, not what they hold: an application's table may hold a secret of its own
/// (a database URL with its password).
impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("sections", &self.sections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ConfigFile {
    fn read(path: &Path) -> Result<(ServerArgs, ConfigFile), SettingsError> {
        let error = |reason: String| SettingsError::File {
            path: path.to_owned(),
            reason,
        };
        let bytes = crate::operator_file::read_bounded(
            path,
            crate::operator_file::MAX_SETTINGS_FILE,
            "a configuration file",
        )
        .map_err(|e| error(e.to_string()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| error("stream did not contain valid UTF-8".to_owned()))?;
        // The parser's own message quotes the line it stopped on, which may hold a secret (a Redis URL's password,
        // say): the line and column, and what was wrong, only.
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let place = e.span().map_or_else(String::new, |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!(" at line {line}, column {column}")
            });
            error(format!(
                "not TOML{place}: {}",
                e.message().trim_end().escape_debug()
            ))
        })?;
        let sections: toml::Table = table
            .iter()
            .filter(|(_, value)| value.is_table())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        table.retain(|_, value| !value.is_table());
        // A value of the wrong type is not quoted: it may be a secret put under the wrong key (red-team finding: a
        // Redis URL's password was printed whole).
        let args = ServerArgs::deserialize(toml::Value::Table(table))
            .map_err(|e| error(without_quoted_values(&e.to_string())))?;
        Ok((
            args,
            ConfigFile {
                path: Some(path.to_owned()),
                sections,
                read: Arc::default(),
                taken: Vec::new(),
            },
        ))
    }
}

use serde::Deserialize as _;

/// How a server is reached.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Made once per server; its size costs nothing, and a box would be one more step for every user matching on it.
#[allow(clippy::large_enum_variant)]
pub enum Transport {
    /// Standard input and output: one client, the process that launched the server.
    Stdio,
    /// MCP streamable HTTP (feature `http`).
    #[cfg(feature = "http")]
    Http(super::http::HttpSettings),
}

/// How callers are authenticated: one choice, not several options checked against each other.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Auth {
    /// Nobody is authenticated, and every caller holds `grant`. On stdio, the one caller on the other end of the
    /// pipe (named `stdio` in records). Over HTTP, for tests on loopback only: every caller is `anonymous`.
    None {
        /// What every caller may do.
        grant: Grant,
    },
    /// Bearer tokens (JWT access tokens), over HTTP.
    #[cfg(feature = "http")]
    Bearer(super::http::BearerAuth),
    /// Client certificates, over HTTPS (feature `mtls`).
    #[cfg(feature = "mtls")]
    MutualTls(super::http::mtls::MtlsAuth),
}

impl Auth {
    /// The grant of every caller, when nobody is authenticated.
    pub(crate) fn unauthenticated_grant(&self) -> Option<&Grant> {
        #[allow(unreachable_patterns)]
        match self {
            Auth::None { grant } => Some(grant),
            _ => None,
        }
    }
}

/// What a server is configured with, checked. See the [`serve`](crate::serve) module for where it comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The id stamped on audit records, if set (else the tool set's own, `secure-tools` by default).
    pub server_id: Option<String>,
    /// The name and version announced to clients.
    pub server_info: Implementation,
    /// Append audit records to this file instead of the tool set's own sinks (standard error by default).
    pub audit_log: Option<PathBuf>,
    /// The protocol versions accepted.
    pub versions: VersionPolicy,
    /// Which tools `tools/list` shows.
    pub listing: Listing,
    /// Limits on every call: rate, timeout, concurrency.
    pub limits: CallLimits,
    /// How long calls still running at shutdown may take to finish before they are stopped.
    pub shutdown_grace: Duration,
    /// The largest incoming message (stdio) or request body (HTTP), in bytes.
    pub max_message_bytes: usize,
    /// The key sealing the audit file's chain (see [`audit::chain`](crate::audit::chain)); `None`: unkeyed.
    pub audit_chain_key: Option<crate::audit::ChainKey>,
    /// Signed checkpoints in the audit file (see [`audit::chain`](crate::audit::chain)); `None`: none.
    pub audit_checkpoints: Option<crate::audit::Checkpoints>,
    /// When audit records written to a file reach the disk.
    pub audit_durability: crate::audit::Durability,
    /// A lockfile the tool definitions are checked against at start, and what to do when they differ.
    pub tools_lock: Option<(PathBuf, crate::integrity::LockMode)>,
    /// How the server is reached.
    pub transport: Transport,
    /// How callers are authenticated.
    pub auth: Auth,
    /// Cancelling it stops the server gracefully, as SIGTERM and SIGINT do.
    pub cancellation: CancellationToken,
    file: ConfigFile,
    /// The files the settings name that no tool should reach (keys, certificates, the config file, the lockfile;
    /// the audit log is `audit_log`), each with the setting that names it: an application's file tools refuse to
    /// serve a root that holds one (see [`Settings::protected_files`]).
    protected: Vec<(&'static str, PathBuf)>,
    /// The digest of the definitions served, for the start record (set by the runner).
    pub(crate) toolset_digest: Option<String>,
    /// Where the rate limits keep their state, when replicas share it (feature `redis`).
    #[cfg(feature = "redis")]
    pub rate_limit_store: Option<crate::call::shared_rate::RedisRates>,
    /// OpenTelemetry as the `OTEL_*` variables set it up (set by the runner).
    #[cfg(feature = "otel")]
    pub(crate) otel: Option<std::sync::Arc<crate::telemetry::Otel>>,
}

impl Settings {
    /// A server on stdio whose one caller holds `grant`, with defaults for everything else.
    pub fn stdio(grant: Grant) -> Self {
        Settings {
            server_id: None,
            server_info: Implementation::new("secure-tools", env!("CARGO_PKG_VERSION")),
            audit_log: None,
            versions: VersionPolicy::default(),
            listing: Listing::default(),
            limits: CallLimits::default(),
            shutdown_grace: DEFAULT_STDIO_SHUTDOWN_GRACE,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            audit_chain_key: None,
            audit_checkpoints: None,
            audit_durability: crate::audit::Durability::Write,
            tools_lock: None,
            transport: Transport::Stdio,
            auth: Auth::None { grant },
            cancellation: CancellationToken::new(),
            file: ConfigFile::default(),
            protected: Vec::new(),
            toolset_digest: None,
            #[cfg(feature = "redis")]
            rate_limit_store: None,
            #[cfg(feature = "otel")]
            otel: None,
        }
    }

    /// A server over streamable HTTP at `bind`, authenticating callers as `auth` says, with defaults for
    /// everything else.
    #[cfg(feature = "http")]
    pub fn http(bind: SocketAddr, auth: Auth) -> Self {
        Settings {
            transport: Transport::Http(super::http::HttpSettings::new(bind)),
            auth,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            ..Settings::stdio(Grant::none())
        }
    }

    /// The HTTP transport's settings (sessions, allowed hosts and origins, TLS, limits), when the settings serve
    /// HTTP: `settings.http_mut().expect("HTTP").sessions = true`.
    #[cfg(feature = "http")]
    pub fn http_mut(&mut self) -> Option<&mut super::http::HttpSettings> {
        match &mut self.transport {
            Transport::Http(http) => Some(http),
            Transport::Stdio => None,
        }
    }

    /// The name and version announced to clients.
    pub fn server_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.server_info = Implementation::new(name.into(), version.into());
        self
    }

    /// Reads the settings from the environment and the config file `MCP_CONFIG` names, for a binary without
    /// clap. Keys are loaded (a JWKS URL is fetched) now.
    pub async fn from_env() -> Result<Self, SettingsError> {
        Self::from_args(ServerArgs::from_env()?).await
    }

    /// Checks settings given as flags (with feature `cli`, clap has read each flag's variable as well), layered
    /// over the config file they name. Keys are loaded (a JWKS URL is fetched) now.
    pub async fn from_args(args: ServerArgs) -> Result<Self, SettingsError> {
        let (args, file) = args.layered_with_file()?;
        let protected: Vec<(&'static str, PathBuf)> = [
            ("--config / MCP_CONFIG", &file.path),
            ("--tools-lock / MCP_TOOLS_LOCK", &args.tools_lock),
            (
                "--audit-chain-key / MCP_AUDIT_CHAIN_KEY",
                &args.audit_chain_key,
            ),
            (
                "--audit-checkpoint-key / MCP_AUDIT_CHECKPOINT_KEY",
                &args.audit_checkpoint_key,
            ),
            ("--jwks-file / MCP_AUTH_JWKS_FILE", &args.jwks_file),
            ("--jwks-ca / MCP_AUTH_JWKS_CA", &args.jwks_ca),
            (
                "--public-key-pem / MCP_AUTH_PUBLIC_KEY_PEM",
                &args.public_key_pem,
            ),
            (
                "--hs256-secret-file / MCP_AUTH_HS256_SECRET_FILE",
                &args.hs256_secret_file,
            ),
            ("--tls-cert / MCP_TLS_CERT", &args.tls_cert),
            ("--tls-key / MCP_TLS_KEY", &args.tls_key),
            ("--client-ca / MCP_TLS_CLIENT_CA", &args.client_ca),
            ("--client-crl / MCP_TLS_CLIENT_CRL", &args.client_crl),
        ]
        .into_iter()
        .filter_map(|(name, path)| path.clone().map(|path| (name, path)))
        .collect();
        warn_misspelled_variables(std::env::vars_os().map(|(name, _)| name));
        let redis_url = args.rate_limit_redis.clone();
        let mut settings = Self::resolve(args)
            .await
            .map_err(|error| file.name_keys(error))?;
        settings.file = file;
        // Whoever can write these can change what the server trusts (a token key, a client CA) or how it runs
        // (the config file): said at start, as for keys others can read (red-team finding: mode 0666 went unsaid).
        for (name, path) in &protected {
            warn_if_writable_by_others(path, name);
        }
        // A credential in the config file (a Redis password), which under the systemd unit is the natural place for
        // the URL: said, as for a key file others can read (red-team finding: it went unsaid at mode 0644).
        #[cfg(unix)]
        if let Some(path) = &settings.file.path
            && settings.file.taken.contains(&"rate_limit_redis")
            && let Some(url) = &redis_url
            && masked_url(url) != url.as_str()
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(metadata) = std::fs::metadata(path)
                && metadata.permissions().mode() & 0o044 != 0
            {
                eprintln!(
                    "{}: warning: {} (--config / MCP_CONFIG) holds the credentials of rate-limit-redis and can be \
                     read by users other than its owner (mode {:o}); keep it readable by the server's user only \
                     (chmod 600), or give the URL in MCP_RATE_LIMIT_REDIS from an environment file only root reads",
                    super::program_name(),
                    path.display(),
                    metadata.permissions().mode() & 0o777
                );
            }
        }
        settings.protected = protected;
        Ok(settings)
    }

    /// The files these settings name that no tool should reach, each with the setting that names it: the config
    /// file, the audit log, the tools lockfile, the audit keys, the token keys, the TLS certificates, keys and
    /// revocation lists. A file tool's root should hold none of them: `RootArgs::open` (feature `fs`) refuses one
    /// that does.
    pub fn protected_files(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        let audit_log = self
            .audit_log
            .as_deref()
            .map(|log| ("--audit-log / MCP_AUDIT_LOG", log));
        audit_log.into_iter().chain(
            self.protected
                .iter()
                .map(|(name, path)| (*name, path.as_path())),
        )
    }

    /// The application's own settings: the table `name` of the config file, if there is one, else `T`'s
    /// defaults. The file server keeps its data root under `[files]`, say.
    ///
    /// Read every section before serving: a table of the file that nothing has read when the server starts
    /// (misspelled, or server settings written after a table's header, where TOML puts them in that table) is
    /// refused, rather than left to mean nothing.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, SettingsError> {
        self.file
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned());
        match self.file.sections.get(name) {
            Some(value) => T::deserialize(value.clone()).map_err(|e| SettingsError::File {
                path: self.file.path.clone().unwrap_or_default(),
                reason: format!("[{name}]: {e}"),
            }),
            None => Ok(T::default()),
        }
    }

    /// The tables of the config file no part of the server has read so far ([`Settings::section`]), as written
    /// (`[file]`): for a message about a setting missing, which a misspelled table may hold.
    pub(crate) fn unread_sections(&self) -> Vec<String> {
        let read = self
            .file
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.file
            .sections
            .keys()
            .filter(|name| !read.contains(*name))
            .map(|name| format!("[{}]", name_shown(name)))
            .collect()
    }

    /// Refuses a table of the config file that no part of the server has read ([`Settings::section`]).
    pub(crate) fn check_sections_read(&self) -> Result<(), SettingsError> {
        let Some(unread) = self.unread_sections().into_iter().next() else {
            return Ok(());
        };
        let read = self
            .file
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = if read.is_empty() {
            "this server reads no table".to_owned()
        } else {
            let names: Vec<String> = read.iter().map(|name| format!("[{name}]")).collect();
            format!("this server reads {}", names.join(", "))
        };
        Err(SettingsError::File {
            path: self.file.path.clone().unwrap_or_default(),
            reason: format!(
                "{unread}: no part of this server reads this table ({known}; the server's own settings go at the top \
                 of the file, before any table header, and take no tables)"
            ),
        })
    }

    async fn resolve(args: ServerArgs) -> Result<Self, SettingsError> {
        let invalid = |name: &str, message: String| {
            SettingsError::Invalid(InvalidSetting::new(name, message))
        };
        let grant = Grant::parse(args.scopes.as_deref().unwrap_or_default())
            .map_err(|e| invalid("--scopes / MCP_SCOPES", e.to_string()))?;
        let duration = |text: &Option<String>, name: &str| {
            text.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|message| invalid(name, message))
        };
        let limits = CallLimits {
            rate: args
                .rate_limit
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|message| invalid("--rate-limit / MCP_RATE_LIMIT", message))?,
            timeout: duration(&args.tool_timeout, "--tool-timeout / MCP_TOOL_TIMEOUT")?,
            max_concurrent_calls: match args.max_concurrent_calls {
                Some(0) => {
                    return Err(invalid(
                        "--max-concurrent-calls / MCP_MAX_CONCURRENT_CALLS",
                        "expected a number of calls, at least 1; got `0`".into(),
                    ));
                }
                other => other,
            },
            max_concurrent_calls_per_caller: match args.max_concurrent_calls_per_caller {
                Some(0) => {
                    return Err(invalid(
                        "--max-concurrent-calls-per-caller / MCP_MAX_CONCURRENT_CALLS_PER_CALLER",
                        "expected a number of calls, at least 1; got `0`".into(),
                    ));
                }
                other => other,
            },
        };
        let mut settings = Settings::stdio(grant.clone());
        settings.server_id = args.server_id.clone();
        settings.audit_log = args.audit_log.clone();
        settings.limits = limits;
        let lock_mode = match &args.tools_lock_mode {
            Some(mode) => mode.parse().map_err(|message: String| {
                invalid("--tools-lock-mode / MCP_TOOLS_LOCK_MODE", message)
            })?,
            None => crate::integrity::LockMode::default(),
        };
        settings.tools_lock = args.tools_lock.clone().map(|path| (path, lock_mode));
        if let Some(url) = &args.rate_limit_redis {
            let name = "--rate-limit-redis / MCP_RATE_LIMIT_REDIS";
            #[cfg(feature = "redis")]
            {
                let mode = match &args.rate_limit_redis_unavailable {
                    Some(mode) => mode.parse().map_err(|message: String| {
                        invalid(
                            "--rate-limit-redis-unavailable / MCP_RATE_LIMIT_REDIS_UNAVAILABLE",
                            message,
                        )
                    })?,
                    None => crate::call::shared_rate::WhenUnavailable::default(),
                };
                // Keys are named by the namespace given, else by the server's name once it is known (see
                // `rate_limit_store_for_build`): never by the server id, which replicas may each have their own of.
                if args
                    .rate_limit_redis_namespace
                    .as_deref()
                    .is_some_and(|namespace| namespace.trim().is_empty())
                {
                    return Err(invalid(
                        "--rate-limit-redis-namespace / MCP_RATE_LIMIT_REDIS_NAMESPACE",
                        "is empty: give a name, or leave it out for the server's name".into(),
                    ));
                }
                let mut store = match &args.rate_limit_redis_namespace {
                    Some(namespace) => crate::call::shared_rate::RedisRates::open(url, namespace),
                    None => crate::call::shared_rate::RedisRates::open_unnamed(url),
                }
                .map_err(|e| {
                    invalid(
                        name,
                        format!(
                            "{e} (expected redis://[:PASSWORD@]HOST[:PORT][/DB] or \
                                 redis+unix:///PATH; this build has no TLS to Redis)"
                        ),
                    )
                })?;
                if let Some(path) = &args.rate_limit_redis_password_file {
                    let file_name =
                        "--rate-limit-redis-password-file / MCP_RATE_LIMIT_REDIS_PASSWORD_FILE";
                    if store.has_password() {
                        return Err(invalid(
                            file_name,
                            format!(
                                "{name} holds a password too: give it in one place (the file, and the URL \
                                 without it: {})",
                                masked_url(url)
                            ),
                        ));
                    }
                    warn_if_readable_by_others(path, file_name);
                    let bytes = crate::operator_file::read_bounded(
                        path,
                        crate::operator_file::MAX_SETTINGS_FILE,
                        "a secret file",
                    )
                    .map_err(|e| invalid(file_name, format!("{}: {e}", path.display())))?;
                    let password =
                        std::str::from_utf8(crate::operator_file::without_final_line_break(&bytes))
                            .ok()
                            .filter(|password| !password.trim().is_empty())
                            .ok_or_else(|| {
                                invalid(
                                    file_name,
                                    format!(
                                        "{}: is empty, white space only, or not UTF-8",
                                        path.display()
                                    ),
                                )
                            })?;
                    store = store
                        .password(password)
                        .map_err(|e| invalid(file_name, e.to_string()))?;
                }
                settings.rate_limit_store = Some(store.when_unavailable(mode));
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                return Err(invalid(
                    name,
                    "this server is built without the `redis` feature".into(),
                ));
            }
        }
        if let Some(mode) = &args.audit_sync {
            settings.audit_durability = mode
                .parse()
                .map_err(|message: String| invalid("--audit-sync / MCP_AUDIT_SYNC", message))?;
        }
        if let Some(path) = &args.audit_checkpoint_key {
            warn_if_readable_by_others(path, "--audit-checkpoint-key / MCP_AUDIT_CHECKPOINT_KEY");
            let key = crate::audit::CheckpointKey::read(path).map_err(|e| {
                invalid(
                    "--audit-checkpoint-key / MCP_AUDIT_CHECKPOINT_KEY",
                    e.to_string(),
                )
            })?;
            let interval = match &args.audit_checkpoint_interval {
                Some(text) => crate::call::parse_duration(text)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        invalid(
                            "--audit-checkpoint-interval / MCP_AUDIT_CHECKPOINT_INTERVAL",
                            format!(
                                "expected a duration such as 60s; got `{}`",
                                text.escape_debug()
                            ),
                        )
                    })?,
                None => crate::audit::chain::DEFAULT_CHECKPOINT_INTERVAL,
            };
            settings.audit_checkpoints = Some(crate::audit::Checkpoints { key, interval });
        }
        if let Some(path) = &args.audit_chain_key {
            warn_if_readable_by_others(path, "--audit-chain-key / MCP_AUDIT_CHAIN_KEY");
            let chain_key = crate::audit::ChainKey::read(path)
                .map_err(|e| invalid("--audit-chain-key / MCP_AUDIT_CHAIN_KEY", e.to_string()))?;
            if let Some(checkpoints) = &settings.audit_checkpoints {
                chain_key
                    .refuse_reuse_of(Some(&checkpoints.key), &checkpoints.key.public_key())
                    .map_err(|e| invalid("--audit-chain-key / MCP_AUDIT_CHAIN_KEY", e))?;
            }
            settings.audit_chain_key = Some(chain_key);
        }
        // Settings that qualify another one are refused without it, rather than silently ignored.
        if args.audit_log.is_none() {
            let audit_only = [
                (
                    args.audit_chain_key.is_some(),
                    "--audit-chain-key / MCP_AUDIT_CHAIN_KEY",
                ),
                (
                    args.audit_checkpoint_key.is_some(),
                    "--audit-checkpoint-key / MCP_AUDIT_CHECKPOINT_KEY",
                ),
                (
                    args.audit_checkpoint_interval.is_some(),
                    "--audit-checkpoint-interval / MCP_AUDIT_CHECKPOINT_INTERVAL",
                ),
                (args.audit_sync.is_some(), "--audit-sync / MCP_AUDIT_SYNC"),
            ];
            if let Some((_, name)) = audit_only.iter().find(|(set, _)| *set) {
                return Err(invalid(
                    name,
                    "only applies with --audit-log / MCP_AUDIT_LOG (records to standard error are not chained)"
                        .into(),
                ));
            }
        }
        if args.tools_lock_mode.is_some() && args.tools_lock.is_none() {
            return Err(invalid(
                "--tools-lock-mode / MCP_TOOLS_LOCK_MODE",
                "only applies with --tools-lock / MCP_TOOLS_LOCK".into(),
            ));
        }
        if args.audit_checkpoint_interval.is_some() && args.audit_checkpoint_key.is_none() {
            return Err(invalid(
                "--audit-checkpoint-interval / MCP_AUDIT_CHECKPOINT_INTERVAL",
                "only applies with --audit-checkpoint-key / MCP_AUDIT_CHECKPOINT_KEY (no key, no checkpoints)"
                    .into(),
            ));
        }
        if args.rate_limit_redis_unavailable.is_some() && args.rate_limit_redis.is_none() {
            return Err(invalid(
                "--rate-limit-redis-unavailable / MCP_RATE_LIMIT_REDIS_UNAVAILABLE",
                "only applies with --rate-limit-redis / MCP_RATE_LIMIT_REDIS (each replica limits on its own)"
                    .into(),
            ));
        }
        if args.rate_limit_redis_password_file.is_some() && args.rate_limit_redis.is_none() {
            return Err(invalid(
                "--rate-limit-redis-password-file / MCP_RATE_LIMIT_REDIS_PASSWORD_FILE",
                "only applies with --rate-limit-redis / MCP_RATE_LIMIT_REDIS".into(),
            ));
        }
        if args.rate_limit_redis_namespace.is_some() && args.rate_limit_redis.is_none() {
            return Err(invalid(
                "--rate-limit-redis-namespace / MCP_RATE_LIMIT_REDIS_NAMESPACE",
                "only applies with --rate-limit-redis / MCP_RATE_LIMIT_REDIS".into(),
            ));
        }
        if let Some(grace) = duration(
            &args.shutdown_grace,
            "--shutdown-grace / MCP_SHUTDOWN_GRACE",
        )? {
            settings.shutdown_grace = grace;
        }
        if let Some(max) = args.max_message_bytes {
            if max < 1024 {
                return Err(invalid(
                    "--max-message-bytes / MCP_MAX_MESSAGE_BYTES",
                    format!("expected a number of bytes, at least 1024; got `{max}`"),
                ));
            }
            settings.max_message_bytes = max;
        }
        if let Some(which) = &args.list_tools {
            settings.listing = match which.trim() {
                "all" => Listing::All,
                "callable" => Listing::CallableOnly,
                other => {
                    return Err(invalid(
                        "--list-tools / MCP_LIST_TOOLS",
                        format!(
                            "expected `all` or `callable`; got `{}`",
                            other.escape_debug()
                        ),
                    ));
                }
            };
        }
        if let Some(name) = &args.min_protocol_version {
            settings.versions = VersionPolicy::minimum_named(name).map_err(|message| {
                invalid("--min-protocol-version / MCP_MIN_PROTOCOL_VERSION", message)
            })?;
        }
        match args.http {
            None => {
                let http_only = [
                    (args.issuer.is_some(), "--issuer / MCP_AUTH_ISSUER"),
                    (
                        args.resource_url.is_some(),
                        "--resource-url / MCP_RESOURCE_URL",
                    ),
                    (args.jwks_file.is_some(), "--jwks-file / MCP_AUTH_JWKS_FILE"),
                    (args.jwks_url.is_some(), "--jwks-url / MCP_AUTH_JWKS_URL"),
                    (
                        args.public_key_pem.is_some(),
                        "--public-key-pem / MCP_AUTH_PUBLIC_KEY_PEM",
                    ),
                    (
                        args.hs256_secret_file.is_some(),
                        "--hs256-secret-file / MCP_AUTH_HS256_SECRET_FILE",
                    ),
                    (args.tls_cert.is_some(), "--tls-cert / MCP_TLS_CERT"),
                    (args.tls_key.is_some(), "--tls-key / MCP_TLS_KEY"),
                    (args.client_ca.is_some(), "--client-ca / MCP_TLS_CLIENT_CA"),
                    (
                        args.client_crl.is_some(),
                        "--client-crl / MCP_TLS_CLIENT_CRL",
                    ),
                    (
                        args.mtls_clients.is_some(),
                        "--mtls-client / MCP_MTLS_CLIENTS",
                    ),
                    (
                        args.http_insecure_no_auth == Some(true),
                        "--http-insecure-no-auth",
                    ),
                    (
                        args.shutdown_delay.is_some(),
                        "--shutdown-delay / MCP_SHUTDOWN_DELAY",
                    ),
                    (
                        args.http_sessions == Some(true),
                        "--http-sessions / MCP_HTTP_SESSIONS",
                    ),
                    (
                        args.http_header_timeout.is_some(),
                        "--http-header-timeout / MCP_HTTP_HEADER_TIMEOUT",
                    ),
                    (
                        args.http_session_idle.is_some(),
                        "--http-session-idle / MCP_HTTP_SESSION_IDLE",
                    ),
                    (
                        args.http_request_timeout.is_some(),
                        "--http-request-timeout / MCP_HTTP_REQUEST_TIMEOUT",
                    ),
                    (
                        args.http_max_connections.is_some(),
                        "--http-max-connections / MCP_HTTP_MAX_CONNECTIONS",
                    ),
                    (
                        args.http_metrics.is_some(),
                        "--http-metrics / MCP_HTTP_METRICS",
                    ),
                    (
                        args.allowed_origins.is_some(),
                        "--allowed-origin / MCP_ALLOWED_ORIGINS",
                    ),
                    (
                        args.allowed_hosts.is_some(),
                        "--allowed-host / MCP_ALLOWED_HOSTS",
                    ),
                    (
                        args.authorization_servers.is_some(),
                        "--authorization-server / MCP_AUTHORIZATION_SERVERS",
                    ),
                    (
                        args.token_audiences.is_some(),
                        "--token-audience / MCP_AUTH_AUDIENCES",
                    ),
                    (
                        args.jwks_max_age.is_some(),
                        "--jwks-max-age / MCP_AUTH_JWKS_MAX_AGE",
                    ),
                    (args.jwks_ca.is_some(), "--jwks-ca / MCP_AUTH_JWKS_CA"),
                    (
                        args.scope_claims.is_some(),
                        "--scope-claim / MCP_AUTH_SCOPE_CLAIMS",
                    ),
                    (
                        args.challenge_scopes.is_some(),
                        "--challenge-scope / MCP_AUTH_CHALLENGE_SCOPES",
                    ),
                    (
                        args.require_at_jwt == Some(true),
                        "--require-at-jwt / MCP_AUTH_REQUIRE_AT_JWT",
                    ),
                ];
                if let Some((_, flag)) = http_only.iter().find(|(set, _)| *set) {
                    return Err(invalid(flag, "only applies with --http / MCP_HTTP".into()));
                }
                Ok(settings)
            }
            #[cfg(feature = "http")]
            Some(bind) => super::http::resolve(settings, bind, grant, args).await,
            #[cfg(not(feature = "http"))]
            Some(_) => Err(invalid(
                "--http / MCP_HTTP",
                "this server is built without the `http` feature".into(),
            )),
        }
    }
}

/// A table's name as the file gave it, escaped and shortened for a message.
fn name_shown(name: &str) -> String {
    let shown: String = name.escape_debug().take(64).collect();
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trial finding: a program flattening `ServerArgs` into a command with no text of its own showed the type's
    /// API documentation ("A server's settings as text, ... [`Settings::from_args`] ...") as its `--help`.
    #[cfg(feature = "cli")]
    #[test]
    fn flattened_settings_lend_no_text_to_a_programs_help() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            server: ServerArgs,
        }
        /// Serves tickets.
        #[derive(clap::Parser)]
        struct Described {
            #[command(flatten)]
            server: ServerArgs,
        }
        let bare = Bare::command();
        assert!(bare.get_about().is_none(), "{:?}", bare.get_about());
        assert!(bare.get_long_about().is_none());
        let described = Described::command();
        assert_eq!(
            described.get_about().map(ToString::to_string).as_deref(),
            Some("Serves tickets")
        );
    }

    /// A setting that qualifies another one is refused without it (review finding: several were silently
    /// ignored).
    /// Red-team finding: the rate limits' keys in Redis were named by `--server-id`, so replicas given ids of their
    /// own (to tell their audit logs apart, as the README's examples do) each got the whole allowance: two replicas
    /// of a `10/min` limit let 20 calls through. Keys are named by the server's name (its `serverInfo`), the same
    /// for every replica of a program, or by `--rate-limit-redis-namespace`.
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn replicas_with_their_own_server_ids_share_their_rate_limits() {
        async fn store(server_id: &str, namespace: Option<&str>) -> String {
            let args = ServerArgs {
                server_id: Some(server_id.into()),
                scopes: Some("files.read".into()),
                rate_limit: Some("10/min".into()),
                rate_limit_redis: Some("redis://127.0.0.1:1/0".into()),
                rate_limit_redis_namespace: namespace.map(Into::into),
                ..ServerArgs::default()
            };
            let settings = Settings::from_args(args)
                .await
                .unwrap()
                .server_info("files", "1");
            settings
                .rate_limit_store_for_build()
                .unwrap()
                .prefix()
                .to_owned()
        }
        assert_eq!(store("files-a", None).await, store("files-b", None).await);
        assert!(store("files-a", None).await.contains(":files stdio:"));
        assert_eq!(
            store("files-a", Some("tenant-1")).await,
            store("files-b", Some("tenant-1")).await
        );
        assert_ne!(
            store("files-a", Some("tenant-1")).await,
            store("files-a", Some("tenant-2")).await
        );
        // Red-team finding (second round): an empty namespace from a template's flag put every such server in one.
        for blank in ["", " "] {
            let args = ServerArgs {
                scopes: Some("files.read".into()),
                rate_limit: Some("10/min".into()),
                rate_limit_redis: Some("redis://127.0.0.1:1/0".into()),
                rate_limit_redis_namespace: Some(blank.into()),
                ..ServerArgs::default()
            };
            let refused = Settings::from_args(args).await.err().map(|e| e.to_string());
            assert!(
                refused
                    .as_deref()
                    .is_some_and(|e| e.contains("MCP_RATE_LIMIT_REDIS_NAMESPACE")),
                "{refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn settings_that_qualify_another_are_refused_without_it() {
        let refused = |args: ServerArgs| async move {
            Settings::from_args(args)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let said = refused(ServerArgs {
            allowed_hosts: Some(vec!["example.com".into()]),
            ..ServerArgs::default()
        })
        .await;
        assert!(
            said.contains("--allowed-host / MCP_ALLOWED_HOSTS") && said.contains("--http"),
            "{said}"
        );
        let said = refused(ServerArgs {
            http_header_timeout: Some("5s".into()),
            ..ServerArgs::default()
        })
        .await;
        assert!(said.contains("--http-header-timeout"), "{said}");
        // A delay for a load balancer's health checks: there is none over stdio.
        let said = refused(ServerArgs {
            shutdown_delay: Some("5s".into()),
            ..ServerArgs::default()
        })
        .await;
        assert!(
            said.contains("--shutdown-delay / MCP_SHUTDOWN_DELAY")
                && said.contains("only applies with --http"),
            "{said}"
        );
        let said = refused(ServerArgs {
            audit_sync: Some("record".into()),
            ..ServerArgs::default()
        })
        .await;
        assert!(said.contains("only applies with --audit-log"), "{said}");
        let said = refused(ServerArgs {
            tools_lock_mode: Some("warn".into()),
            ..ServerArgs::default()
        })
        .await;
        assert!(said.contains("only applies with --tools-lock"), "{said}");
        let said = refused(ServerArgs {
            audit_log: Some("/tmp/never-opened.jsonl".into()),
            audit_checkpoint_interval: Some("banana".into()),
            ..ServerArgs::default()
        })
        .await;
        assert!(
            said.contains("only applies with --audit-checkpoint-key"),
            "{said}"
        );
        let said = refused(ServerArgs {
            rate_limit_redis_unavailable: Some("allow".into()),
            ..ServerArgs::default()
        })
        .await;
        assert!(
            said.contains("only applies with --rate-limit-redis"),
            "{said}"
        );
    }

    /// Red-team finding: a config file and a token's public key of mode 0666 were taken without a word.
    #[cfg(unix)]
    #[test]
    fn a_file_others_can_write_is_told_apart() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "k").unwrap();
        for (mode, flagged) in [
            (0o600, None),
            (0o644, None),
            (0o664, Some(0o664)),
            (0o666, Some(0o666)),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(writable_by_others(&path), flagged, "{mode:o}");
        }
    }

    /// Red-team finding: the file server's own variables (`MAX_ROOT_FILES`, `MAX_WRITE_BYTES`, ...) were outside the
    /// check: `MAX_ROOT_FILE=0` or `MCP_MAX_ROOT_FILES=0` left the root without its quota, without a word.
    #[cfg(feature = "fs")]
    #[test]
    fn a_variable_spelled_nearly_like_one_of_a_binarys_own_is_named() {
        let own = ["DATA_ROOT", "MAX_ROOT_FILES", "MAX_WRITE_BYTES"];
        assert_eq!(
            misspelled_among("MAX_ROOT_FILE", &own),
            Some("MAX_ROOT_FILES")
        );
        assert_eq!(
            misspelled_among("MCP_MAX_ROOT_FILES", &own),
            Some("MAX_ROOT_FILES")
        );
        assert_eq!(
            misspelled_among("MAX_WRITE_BYTE", &own),
            Some("MAX_WRITE_BYTES")
        );
        assert_eq!(misspelled_among("MCP_DATA_ROOT", &own), Some("DATA_ROOT"));
        // Known names, and names of other settings or nothing like them, are left alone.
        assert_eq!(misspelled_among("MAX_ROOT_FILES", &own), None);
        assert_eq!(misspelled_among("MCP_RATE_LIMIT", &own), None);
        assert_eq!(misspelled_among("PATH", &own), None);
        assert_eq!(misspelled_among("MAX_OPEN_FILES_LIMIT", &own), None);
    }

    #[test]
    fn a_variable_spelled_nearly_like_a_setting_is_named() {
        assert_eq!(
            misspelled_variable("MCP_RATE_LIMITS"),
            Some("MCP_RATE_LIMIT")
        );
        assert_eq!(
            misspelled_variable("MCP_AUDIT_CHAIN_KEYS"),
            Some("MCP_AUDIT_CHAIN_KEY")
        );
        assert_eq!(misspelled_variable("MCP_TOOL_LOCK"), Some("MCP_TOOLS_LOCK"));
        // Known names, other prefixes and an application's own variables are left alone.
        assert_eq!(misspelled_variable("MCP_RATE_LIMIT"), None);
        assert_eq!(misspelled_variable(HS256_SECRET_VARIABLE), None);
        assert_eq!(misspelled_variable("RATE_LIMITS"), None);
        assert_eq!(misspelled_variable("MCP_TICKETS_DATABASE_URL"), None);
    }

    /// Review finding: `ServerArgs`' derived `Debug` showed a Redis or JWKS URL whole, password and all; and
    /// `Settings`' showed every table of the config file, an application's secrets among them.
    #[tokio::test]
    async fn credentials_in_settings_are_never_shown() {
        let args = ServerArgs {
            rate_limit_redis: Some("redis://:hunter2@r/0".into()),
            jwks_url: Some("https://reader:swordfish@idp.example/jwks.json".into()),
            authorization_servers: Some(vec!["https://admin:opensesame@as.example/".into()]),
            server_id: Some("files".into()),
            ..ServerArgs::default()
        };
        let shown = format!("{args:?}");
        for secret in ["hunter2", "reader", "swordfish", "admin", "opensesame"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        for kept in [
            "redis://***@r/0",
            "https://***@idp.example/jwks.json",
            "https://***@as.example/",
            "\"files\"",
        ] {
            assert!(shown.contains(kept), "{kept}: {shown}");
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "server-id = \"files\"\n[db]\nurl = \"postgres://app:hunter2@db/app\"\n",
        )
        .unwrap();
        let settings = Settings::from_args(ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        })
        .await
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"db\""), "{shown}");
    }

    #[test]
    fn a_urls_credentials_are_masked_and_other_text_kept() {
        for (text, shown) in [
            ("redis://:hunter2@r/0", "redis://***@r/0"),
            ("rediss://user:hunter2@r:6380", "rediss://***@r:6380"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=hunter2",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("https://u:p%40ss@h/jwks?x=1#f", "https://***@h/jwks?x=1#f"),
            ("https://idp.example/a@b", "https://idp.example/a@b"),
            (
                "https://idp.example/jwks.json",
                "https://idp.example/jwks.json",
            ),
            ("files.read files.write", "files.read files.write"),
        ] {
            assert_eq!(masked_url(text), shown, "{text}");
        }
    }

    #[test]
    fn higher_layers_win_field_by_field() {
        let flags = ServerArgs {
            server_id: Some("from-flags".into()),
            ..ServerArgs::default()
        };
        let file = ServerArgs {
            server_id: Some("from-file".into()),
            rate_limit: Some("5/s".into()),
            ..ServerArgs::default()
        };
        let merged = flags.or(file);
        assert_eq!(merged.server_id.as_deref(), Some("from-flags"));
        assert_eq!(merged.rate_limit.as_deref(), Some("5/s"));
    }

    #[test]
    fn variables_are_parsed_and_lists_split() {
        assert_eq!(
            Vec::<String>::from_setting("a; b;;c", Some(';')).unwrap(),
            ["a", "b", "c"]
        );
        assert!(bool::from_setting("yes", None).unwrap());
        assert!(bool::from_setting("maybe", None).is_err());
        assert!(usize::from_setting("lots", None).is_err());
    }

    #[tokio::test]
    async fn each_bad_setting_is_named() {
        let cases = [
            (
                ServerArgs {
                    rate_limit: Some("lots".into()),
                    ..Default::default()
                },
                "--rate-limit / MCP_RATE_LIMIT",
            ),
            (
                ServerArgs {
                    tool_timeout: Some("soon".into()),
                    ..Default::default()
                },
                "--tool-timeout / MCP_TOOL_TIMEOUT",
            ),
            (
                ServerArgs {
                    max_concurrent_calls: Some(0),
                    ..Default::default()
                },
                "--max-concurrent-calls / MCP_MAX_CONCURRENT_CALLS",
            ),
            (
                ServerArgs {
                    issuer: Some("https://issuer".into()),
                    ..Default::default()
                },
                "--issuer / MCP_AUTH_ISSUER",
            ),
        ];
        for (args, name) in cases {
            match Settings::from_args(args).await {
                Err(SettingsError::Invalid(invalid)) => assert_eq!(invalid.name, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_config_file_fills_what_flags_leave_and_keeps_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "server-id = \"from-file\"\nrate-limit = \"5/s\"\n[files]\ndata-root = \"/srv/data\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path.clone()),
            rate_limit: Some("9/s".into()),
            ..Default::default()
        };
        let settings = Settings::from_args(args).await.unwrap();
        assert_eq!(settings.server_id.as_deref(), Some("from-file"));
        assert_eq!(settings.limits.rate, Some("9/s".parse().unwrap()));
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "kebab-case")]
        struct Files {
            data_root: Option<PathBuf>,
        }
        let files: Files = settings.section("files").unwrap();
        assert_eq!(files.data_root, Some(PathBuf::from("/srv/data")));

        std::fs::write(&path, "server-idd = \"typo\"\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..Default::default()
        };
        let error = Settings::from_args(args).await.unwrap_err().to_string();
        assert!(error.contains("server-idd"), "{error}");
    }

    /// Trial-left gap: a value from the config file that could not be used was named by its flag and variable
    /// (`--rate-limit / MCP_RATE_LIMIT`), which the operator had not used. It is named by its key in the file now;
    /// one from a flag still by the flag.
    /// Operator trial finding: a config file that is not TOML was refused with the TOML parser's message, which
    /// quotes the line it stopped on: a Redis URL's password, say, on stderr and so in the journal. The message
    /// names the line and column, not what is on it.
    #[test]
    fn a_config_file_that_is_not_toml_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "server-id = \"s\"\nrate-limit-redis = \"redis://:hunter2@127.0.0.1:6379/0\n",
        )
        .unwrap();
        let said = ConfigFile::read(&path).err().unwrap().to_string();
        assert!(!said.contains("hunter2"), "{said}");
        assert!(said.contains("line 2"), "{said}");
    }

    #[tokio::test]
    async fn a_bad_value_from_the_config_file_is_named_by_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "rate-limit = \"bogus\"\ntool-timeout = \"soon\"\n").unwrap();
        let from_file = |args: ServerArgs| {
            Settings::from_args(ServerArgs {
                config: Some(path.clone()),
                ..args
            })
        };
        let error = from_file(ServerArgs::default())
            .await
            .unwrap_err()
            .to_string();
        let file = path.display();
        assert!(
            error.starts_with(&format!(
                "rate-limit in the config file {file}: invalid rate `bogus`"
            )),
            "{error}"
        );
        let error = from_file(ServerArgs {
            rate_limit: Some("bogus".into()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("--rate-limit / MCP_RATE_LIMIT: invalid rate"),
            "{error}"
        );
        let error = from_file(ServerArgs {
            rate_limit: Some("5/s".into()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with(&format!("tool-timeout in the config file {file}: ")),
            "{error}"
        );
    }

    /// Operator's trial: `scopes` in the config file was refused as a list (`expected a string`), while the
    /// file's other lists (`allowed-hosts`) are lists. Either is taken now.
    #[tokio::test]
    async fn the_config_files_scopes_may_be_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        for text in [
            "scopes = [\"files.read\", \"files.write\"]\n",
            "scopes = \"files.read, files.write\"\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let settings = Settings::from_args(ServerArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
            assert_eq!(
                settings.auth.unauthenticated_grant(),
                Some(&Grant::parse("files.read files.write").unwrap()),
                "{text}"
            );
        }
        std::fs::write(&path, "scopes = 3\n").unwrap();
        assert!(
            Settings::from_args(ServerArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
            .await
            .is_err()
        );
    }

    /// Trial finding: a Redis URL without its scheme was refused with only the client's `InvalidClientConfig`.
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_redis_url_that_does_not_parse_says_what_one_looks_like() {
        let refused = Settings::from_args(ServerArgs {
            rate_limit: Some("10/min".into()),
            rate_limit_redis: Some("127.0.0.1:6379".into()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            refused.starts_with("--rate-limit-redis / MCP_RATE_LIMIT_REDIS: "),
            "{refused}"
        );
        assert!(refused.contains("expected redis://"), "{refused}");
    }

    /// A table nothing reads is refused at start: a misspelled one, server settings written after a table's
    /// header (TOML puts them in it), or a server setting given as a table. Each once meant nothing, silently:
    /// the server started without the rate limit the file gave.
    #[tokio::test]
    async fn a_table_of_the_config_file_that_nothing_reads_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let settings_of = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::from_args(ServerArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        for text in [
            "[limits]\nrate-limit = \"10/min\"\n",
            "[filez]\ndata-root = \"/srv\"\n",
            "audit-log = { path = \"/var/log/audit.jsonl\" }\n",
        ] {
            let settings = settings_of(text).await.unwrap();
            let error = settings.check_sections_read().unwrap_err().to_string();
            assert!(error.contains("no part of this server reads"), "{error}");
            let served = tokio::time::timeout(
                Duration::from_secs(10),
                settings.serve(crate::ToolSet::builder(())),
            )
            .await
            .expect("served instead of refusing");
            assert!(served.is_err(), "{text}");
        }
        // A table the application reads is fine.
        let settings = settings_of("[files]\ndata-root = \"/srv\"\n")
            .await
            .unwrap();
        let _: toml::Table = settings.section("files").unwrap();
        settings.check_sections_read().unwrap();
    }
}
