//! The grammars of the values a tool declares: scope names, rates and durations.
//!
//! Both `secure-tools` (the runtime) and `secure-tools-macros` (the `#[secure_tool]` attribute) depend on this crate,
//! so the macro accepts at compile time exactly what the runtime accepts from configuration at run time. It is a
//! crate of its own so that both can be published: a proc-macro crate exports only macros. It depends on `std` only,
//! and nothing here may panic. Not an API of its own: depend on `secure-tools`.
#![warn(missing_docs)]

use std::time::Duration;

/// The longest scope name accepted, in bytes: room for an identity provider's URL-shaped scopes
/// (`api://6e3a9c4f-.../Tickets.Read`, `https://www.googleapis.com/auth/drive.readonly`).
pub const MAX_SCOPE_LEN: usize = 256;

/// Why a text is not a scope name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeGrammarError {
    /// Nothing at all.
    Empty,
    /// Longer than [`MAX_SCOPE_LEN`] bytes.
    TooLong,
    /// A character outside RFC 6749's scope-token set: a space or other control, `"`, `\`, or anything non-ASCII.
    BadCharacter,
    /// A `,`: the separator of scope lists in configuration.
    Comma,
    /// A `*`: scopes match exactly, there is no wildcard.
    Wildcard,
}

impl ScopeGrammarError {
    /// What rule the text broke, as a sentence fragment for error messages.
    pub fn reason(self) -> &'static str {
        match self {
            ScopeGrammarError::Empty => "a scope name cannot be empty",
            ScopeGrammarError::TooLong => "a scope name is at most 256 bytes",
            ScopeGrammarError::BadCharacter => {
                "a scope name is printable ASCII without spaces, `\"` or `\\` (RFC 6749's scope-token)"
            }
            ScopeGrammarError::Comma => {
                "a scope name cannot hold `,`, which separates scopes in lists"
            }
            ScopeGrammarError::Wildcard => {
                "a scope name cannot hold `*`: scopes match exactly, there are no wildcards"
            }
        }
    }
}

/// Checks a scope name: RFC 6749's scope-token (one or more printable ASCII characters other than space, `"` and
/// `\`), without `,` (it separates scopes in lists) or `*` (there are no wildcards); at most [`MAX_SCOPE_LEN`] bytes.
/// So `files.read`, `write:tickets`, `Tickets.Read` and `api://tickets/Tickets.Read` are scope names, each matched
/// exactly and case-sensitively.
pub fn scope(text: &str) -> Result<(), ScopeGrammarError> {
    if text.is_empty() {
        return Err(ScopeGrammarError::Empty);
    }
    if text.len() > MAX_SCOPE_LEN {
        return Err(ScopeGrammarError::TooLong);
    }
    for byte in text.bytes() {
        match byte {
            b'*' => return Err(ScopeGrammarError::Wildcard),
            b',' => return Err(ScopeGrammarError::Comma),
            0x21 | 0x23..=0x5B | 0x5D..=0x7E => {}
            _ => return Err(ScopeGrammarError::BadCharacter),
        }
    }
    Ok(())
}

/// The most calls a rate may allow per period.
pub const MAX_RATE_COUNT: u32 = 1_000_000;
/// The longest period a rate may have: one day.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(86_400);

/// A rate: at most `count` calls per `period`, all of which may come at once (the burst is the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateSpec {
    /// Calls allowed per period, 1 to 1,000,000.
    pub count: u32,
    /// The period, 1 s to one day.
    pub period: Duration,
}

impl RateSpec {
    /// At most `count` calls per `period`, all of which may come at once. `None` if `count` is 0 or over a million,
    /// or the period is under a second, over a day, or not a whole number of seconds (a rate is written in whole
    /// units, so `10/1500ms` would read back as another rate).
    pub fn new(count: u32, period: Duration) -> Option<Self> {
        let valid = (1..=MAX_RATE_COUNT).contains(&count)
            && period >= Duration::from_secs(1)
            && period <= MAX_RATE_PERIOD
            && period.subsec_nanos() == 0;
        valid.then_some(RateSpec { count, period })
    }

    /// At most `count` calls a minute.
    pub fn per_minute(count: u32) -> Option<Self> {
        RateSpec::new(count, Duration::from_secs(60))
    }
}

impl std::str::FromStr for RateSpec {
    type Err = String;
    /// Parses `10/min`, `5/s`, `100/hour`, `30/5min` (see [`rate`]).
    fn from_str(text: &str) -> Result<Self, String> {
        rate(text).map_err(|reason| {
            format!(
                "invalid rate `{}`: {reason}; expected {RATE_EXAMPLE}",
                text.escape_debug(),
            )
        })
    }
}

/// Written as [`rate`] reads it: `10/min`, `30/5min`.
impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.period.as_secs();
        let (amount, unit) = [(86_400, "day"), (3600, "hour"), (60, "min"), (1, "s")]
            .into_iter()
            .find(|(unit, _)| secs.is_multiple_of(*unit))
            .map_or((secs, "s"), |(unit, name)| (secs / unit, name));
        if amount == 1 {
            write!(f, "{}/{unit}", self.count)
        } else {
            write!(f, "{}/{amount}{unit}", self.count)
        }
    }
}

/// The units of time, with their length in seconds: a rate's period and a duration take the same ones (a duration
/// `ms` too).
const UNITS: [(&str, u64); 10] = [
    ("s", 1),
    ("sec", 1),
    ("second", 1),
    ("m", 60),
    ("min", 60),
    ("minute", 60),
    ("h", 3600),
    ("hour", 3600),
    ("d", 86_400),
    ("day", 86_400),
];

/// The length of a unit of [`UNITS`], in seconds.
fn unit_secs(unit: &str) -> Option<u64> {
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, secs)| *secs)
}

/// A whole number written in ASCII digits only (`u64::from_str` also takes a leading `+`); `Err(true)` for one
/// that is too large, `Err(false)` for something else.
fn whole_number(text: &str) -> Result<u64, bool> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(false);
    }
    text.parse().map_err(|_| true)
}

/// What a rate looks like, for error messages.
pub const RATE_EXAMPLE: &str = "`10/min`, `5/s`, `100/hour` or `30/5min`";

/// Parses a rate: `COUNT/UNIT` or `COUNT/NUNIT`, such as `10/min`, `5/s`, `1000/hour`, `30/5min`; units `s`, `sec`,
/// `second`, `m`, `min`, `minute`, `h`, `hour`, `d`, `day`. White space around the parts is ignored.
pub fn rate(text: &str) -> Result<RateSpec, &'static str> {
    let (count, per) = text
        .split_once('/')
        .ok_or("a rate is a count, `/` and a unit")?;
    const COUNT_RANGE: &str = "the count must be between 1 and 1000000";
    let count = match whole_number(count.trim()) {
        Ok(count) => u32::try_from(count).map_err(|_| COUNT_RANGE)?,
        Err(true) => return Err(COUNT_RANGE),
        Err(false) => return Err("the count before `/` must be a whole number"),
    };
    if count == 0 || count > MAX_RATE_COUNT {
        return Err(COUNT_RANGE);
    }
    let per = per.trim();
    let digits = per.bytes().take_while(u8::is_ascii_digit).count();
    let (multiplier, unit) = per.split_at(digits);
    let multiplier: u64 = if multiplier.is_empty() {
        1
    } else {
        multiplier
            .parse()
            .map_err(|_| "the period's multiplier is too large")?
    };
    let unit_secs = unit_secs(unit.trim())
        .ok_or("the unit after `/` must be one of `s` (or `sec`, `second`), `min` (or `m`, `minute`), `hour` (or `h`), `day` (or `d`)")?;
    let secs = multiplier
        .checked_mul(unit_secs)
        .filter(|secs| (1..=MAX_RATE_PERIOD.as_secs()).contains(secs))
        .ok_or("the period must be between 1 s and one day")?;
    Ok(RateSpec {
        count,
        period: Duration::from_secs(secs),
    })
}

/// The longest duration accepted (a timeout, say): one day.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// What a duration looks like, for error messages.
pub const DURATION_EXAMPLE: &str = "`500ms`, `30s`, `5min` or `1h`";

/// Parses a duration: a whole number and a unit, `ms` or one of a rate's (`s`, `sec`, `second`, `m`, `min`,
/// `minute`, `h`, `hour`, `d`, `day`), such as `500ms`, `30s`, `5min`, `1h`; between 1 ms and one day.
pub fn duration(text: &str) -> Result<Duration, &'static str> {
    const RANGE: &str = "the duration must be between 1 ms and one day";
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number = match whole_number(number) {
        Ok(number) => number,
        Err(true) => return Err(RANGE),
        Err(false) => return Err("expected a whole number followed by a unit, such as `30s`"),
    };
    let millis_per_unit = match unit.trim() {
        "ms" => 1,
        unit => unit_secs(unit)
            .map(|secs| secs * 1_000)
            .ok_or("the unit must be one of `ms`, `s` (or `sec`, `second`), `min` (or `m`, `minute`), `hour` (or `h`), `day` (or `d`)")?,
    };
    let millis = number
        .checked_mul(millis_per_unit)
        .filter(|ms| (1..=MAX_DURATION.as_millis() as u64).contains(ms))
        .ok_or(RANGE)?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        for ok in [
            "files.read",
            "admin.users-write_2",
            "write:tickets",
            "Tickets.Read",
            "api://6e3a9c4f-2b1d-4f5e-9a7b-0c1d2e3f4a5b/Tickets.Read",
            "https://www.googleapis.com/auth/drive.readonly",
            "openid",
            "!#$%&'()+-./:;<=>?@[]^_`{|}~",
        ] {
            assert_eq!(scope(ok), Ok(()), "{ok}");
        }
        assert_eq!(scope(""), Err(ScopeGrammarError::Empty));
        assert_eq!(scope("files read"), Err(ScopeGrammarError::BadCharacter));
        assert_eq!(scope("files\tread"), Err(ScopeGrammarError::BadCharacter));
        assert_eq!(scope("say\"hi\""), Err(ScopeGrammarError::BadCharacter));
        assert_eq!(scope("back\\slash"), Err(ScopeGrammarError::BadCharacter));
        assert_eq!(scope("fïles"), Err(ScopeGrammarError::BadCharacter));
        assert_eq!(scope("files.*"), Err(ScopeGrammarError::Wildcard));
        assert_eq!(scope("*"), Err(ScopeGrammarError::Wildcard));
        assert_eq!(scope("a,b"), Err(ScopeGrammarError::Comma));
        assert_eq!(scope(&"a".repeat(257)), Err(ScopeGrammarError::TooLong));
        assert_eq!(scope(&"a".repeat(256)), Ok(()));
    }

    #[test]
    fn rates() {
        let per = |count, secs| {
            Ok(RateSpec {
                count,
                period: Duration::from_secs(secs),
            })
        };
        assert_eq!(rate("10/min"), per(10, 60));
        assert_eq!(rate(" 5 / s "), per(5, 1));
        assert_eq!(rate("100/hour"), per(100, 3600));
        assert_eq!(rate("30/5min"), per(30, 300));
        assert_eq!(rate("1/day"), per(1, 86_400));
        for bad in [
            "",
            "10",
            "0/min",
            "-1/min",
            "10/",
            "10/fortnight",
            "10/0s",
            "10/2day",
            "1.5/min",
            "10/min/s",
            "99999999999999999999/s",
            "1/99999999999999999999s",
            "+5/min",
            "5/+1min",
            "5_0/min",
        ] {
            assert!(rate(bad).is_err(), "{bad:?} parsed");
        }
        // A count that is a number, only too large, is told so (a `u32` parse said it was not a whole number).
        for too_large in ["5000000000/s", "99999999999999999999/s", "1000001/min"] {
            assert_eq!(
                rate(too_large),
                Err("the count must be between 1 and 1000000"),
                "{too_large}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        // The units of a rate's period, all of them.
        assert_eq!(duration("2sec"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("2second"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("2minute"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("2hour"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("1day"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "+5s",
            "2days",
            "",
            "s",
            "30",
            "0s",
            "25h",
            "1.5s",
            "-1s",
            "30 seconds",
            "99999999999999999999ms",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_rate_made_in_code_reads_back_as_itself() {
        assert_eq!(
            RateSpec::new(10, Duration::from_millis(1500)),
            None,
            "not a whole number of seconds: it would be written 10/s"
        );
        assert_eq!(RateSpec::new(0, Duration::from_secs(60)), None);
        assert_eq!(RateSpec::new(10, Duration::from_secs(86_401)), None);
        for (count, secs, text) in [
            (10, 60, "10/min"),
            (30, 300, "30/5min"),
            (5, 1, "5/s"),
            (7, 90, "7/90s"),
            (1, 86_400, "1/day"),
        ] {
            let made = RateSpec::new(count, Duration::from_secs(secs)).expect("a valid rate");
            assert_eq!(made.to_string(), text);
            assert_eq!(text.parse::<RateSpec>(), Ok(made));
        }
        let refused = "0/min".parse::<RateSpec>().unwrap_err();
        assert!(refused.starts_with("invalid rate `0/min`: "), "{refused}");
    }
}
