//! Settings every runner reads the same way.

use std::time::Duration;

use crate::call::{Rate, parse_duration};
use crate::toolset::ToolSetBuilder;

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
}

/// A setting that cannot be used: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct InvalidSetting {
    /// The variable or flag.
    pub name: &'static str,
    /// What is wrong.
    pub message: String,
}

impl CallLimits {
    /// Reads `MCP_RATE_LIMIT`, `MCP_TOOL_TIMEOUT` and `MCP_MAX_CONCURRENT_CALLS`; unset or empty leaves a field
    /// unset.
    pub fn from_env() -> Result<Self, InvalidSetting> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        CallLimits::parse(
            var("MCP_RATE_LIMIT").as_deref(),
            var("MCP_TOOL_TIMEOUT").as_deref(),
            var("MCP_MAX_CONCURRENT_CALLS").as_deref(),
        )
    }

    /// Parses the three settings as text (`10/min`, `30s`, `16`), as flags or variables give them.
    pub fn parse(
        rate: Option<&str>,
        timeout: Option<&str>,
        max_concurrent_calls: Option<&str>,
    ) -> Result<Self, InvalidSetting> {
        let invalid = |name, message| InvalidSetting { name, message };
        Ok(CallLimits {
            rate: rate
                .map(str::parse)
                .transpose()
                .map_err(|message| invalid("MCP_RATE_LIMIT", message))?,
            timeout: timeout
                .map(parse_duration)
                .transpose()
                .map_err(|message| invalid("MCP_TOOL_TIMEOUT", message))?,
            max_concurrent_calls: max_concurrent_calls
                .map(|text| {
                    text.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            format!(
                                "expected a number of calls, at least 1; got `{}`",
                                text.escape_debug()
                            )
                        })
                })
                .transpose()
                .map_err(|message| invalid("MCP_MAX_CONCURRENT_CALLS", message))?,
        })
    }

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
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_or_say_which_setting_is_wrong() {
        let limits = CallLimits::parse(Some("60/min"), Some("30s"), Some("16")).unwrap();
        assert_eq!(limits.rate, Some("60/min".parse().unwrap()));
        assert_eq!(limits.timeout, Some(Duration::from_secs(30)));
        assert_eq!(limits.max_concurrent_calls, Some(16));
        assert_eq!(
            CallLimits::parse(None, None, None).unwrap(),
            CallLimits::default()
        );
        assert_eq!(
            CallLimits::parse(Some("lots"), None, None)
                .unwrap_err()
                .name,
            "MCP_RATE_LIMIT"
        );
        assert_eq!(
            CallLimits::parse(None, Some("soon"), None)
                .unwrap_err()
                .name,
            "MCP_TOOL_TIMEOUT"
        );
        assert_eq!(
            CallLimits::parse(None, None, Some("0")).unwrap_err().name,
            "MCP_MAX_CONCURRENT_CALLS"
        );
    }
}
