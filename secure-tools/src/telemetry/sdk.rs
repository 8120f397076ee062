//! The OpenTelemetry SDK as the runners set it up, from the standard `OTEL_*` variables.

use std::env;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::{AuditLogs, Telemetry, scope};

/// Why OpenTelemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// An exporter could not be built (an invalid endpoint, say).
    #[error("OpenTelemetry {signal} exporter: {message}")]
    Exporter {
        /// `traces`, `metrics`, `logs` or `prometheus`.
        signal: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A variable has a value this build does not support.
    #[error("{variable}={value}: {message}")]
    Unsupported {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is supported.
        message: &'static str,
    },
    /// A variable's value the exporter would drop or ignore without a word (a header entry it cannot read, a
    /// timeout that is not a number of milliseconds). The message never quotes a header's value, which may be a
    /// credential.
    #[error("{variable}: {message}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The OpenTelemetry SDK of a server: the providers the runners export through, and the Prometheus registry
/// `/metrics` reads.
///
/// [`Otel::from_env`] reads the standard variables:
///
/// | variable | effect |
/// | --- | --- |
/// | `OTEL_SDK_DISABLED=true` | nothing is set up |
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL (`http://localhost:4318`); each signal goes to `{base}/v1/{signal}`. Plain `http://` only (this build has no TLS) |
/// | `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` | one signal's full URL (the signal is exported even without the base) |
/// | `OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none` | that signal is not exported over OTLP (`otlp`, the default, is the only other value) |
/// | `OTEL_EXPORTER_OTLP_PROTOCOL`, `_{TRACES,METRICS,LOGS}_PROTOCOL` | `http/protobuf` only (this build has no gRPC) |
/// | `OTEL_EXPORTER_OTLP_COMPRESSION`, `_{TRACES,METRICS,LOGS}_COMPRESSION` | `none` only (this build has no gzip) |
/// | `OTEL_EXPORTER_OTLP_HEADERS`, `_{TRACES,METRICS,LOGS}_HEADERS` | `key=value` pairs separated by commas, values percent-decoded; an entry the exporter would drop (no `=`, no key or value, not a header's name or value) is refused |
/// | `OTEL_EXPORTER_OTLP_TIMEOUT`, `_{TRACES,METRICS,LOGS}_TIMEOUT` | each export's timeout in milliseconds (default 10000); anything but a whole number above 0 is refused |
/// | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource (the service name defaults to the server's name; the attributes' values percent-decoded, an entry the SDK would drop refused) |
/// | `OTEL_PROPAGATORS` | `tracecontext` (default, with or without `baggage`, which reads nothing) or `none`: whether calls continue the trace context callers send ([`Telemetry::without_caller_context`]); any other propagator is refused |
/// | `OTEL_SPAN_{ATTRIBUTE,EVENT,LINK}_COUNT_LIMIT` | span limits, whole numbers (attributes from 16) |
/// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampling (default: parent-based, always on) |
/// | `OTEL_BSP_*`, `OTEL_BLRP_*`, `OTEL_METRIC_EXPORT_INTERVAL` | batching and the metric export interval |
///
/// An endpoint, protocol or compression this build cannot honour, for a signal it would export, is refused
/// ([`OtelError::Unsupported`]) rather than overridden or ignored, and so are headers or a timeout the exporter
/// would ignore ([`OtelError::Invalid`]); values such as `none` or `http/protobuf` are
/// read whatever their case.
///
/// Audit records go out as OTLP logs when logs are exported; metrics are kept for Prometheus when `prometheus`
/// is asked for, whether or not they are also exported over OTLP.
pub struct Otel {
    tracers: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    loggers: Option<SdkLoggerProvider>,
    registry: Option<prometheus::Registry>,
    /// `OTEL_PROPAGATORS` names `tracecontext` (as by default).
    caller_context: bool,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel")
            .field("traces", &self.tracers.is_some())
            .field("metrics", &self.meters.is_some())
            .field("logs", &self.loggers.is_some())
            .field("prometheus", &self.registry.is_some())
            .finish()
    }
}

/// What the `OTEL_*` variables ask of this build: which signals go out over OTLP, and whether the resource names
/// the service. Read through `var` (the process's environment, or a test's table).
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    traces: bool,
    metrics: bool,
    logs: bool,
    named: bool,
    /// `OTEL_RESOURCE_ATTRIBUTES` read as the specification says: values percent-decoded (the SDK takes them as
    /// written). Without `service.name` when `OTEL_SERVICE_NAME` names the service, which takes precedence.
    resource: Vec<(String, String)>,
    /// Whether `OTEL_PROPAGATORS` names `tracecontext` (the default): see [`check_propagators`].
    caller_context: bool,
    /// `OTEL_SERVICE_NAME`, which takes precedence over a `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
    service_name: Option<String>,
    /// `OTEL_SDK_DISABLED=true`: nothing is set up, but `OTEL_PROPAGATORS=none` still holds.
    disabled: bool,
}

/// A signal's own variables, which take precedence over the general `OTEL_EXPORTER_OTLP_*` ones.
struct Signal {
    exporter: &'static str,
    endpoint: &'static str,
    protocol: &'static str,
    compression: &'static str,
    headers: &'static str,
    timeout: &'static str,
}

const TRACES: Signal = Signal {
    exporter: "OTEL_TRACES_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
};
const METRICS: Signal = Signal {
    exporter: "OTEL_METRICS_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
};
const LOGS: Signal = Signal {
    exporter: "OTEL_LOGS_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    compression: "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    headers: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
};

pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable's value, trimmed; `None` when unset or blank.
fn value(var: Lookup<'_>, variable: &str) -> Option<String> {
    var(variable)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The setting a signal uses, and the variable it comes from: its own variable, or else the general one (as the
/// exporter resolves them).
fn resolved(
    var: Lookup<'_>,
    own: &'static str,
    general: &'static str,
) -> Option<(&'static str, String)> {
    value(var, own)
        .map(|v| (own, v))
        .or_else(|| value(var, general).map(|v| (general, v)))
}

impl Plan {
    /// `None` when the SDK is disabled. A setting this build cannot honour for a signal it exports is refused,
    /// rather than overridden or ignored with only the SDK's warning: the exporter is built for `http/protobuf`
    /// whatever the protocol variables say, has no TLS (its blocking reqwest client is built without a TLS
    /// feature: an `https` endpoint would fail every export) and no compression (the exporter's `gzip-http`
    /// feature would add flate2, which the tree does not have). Values of enumerations are compared ignoring
    /// ASCII case, as the specification advises.
    fn read(var: Lookup<'_>) -> Result<Option<Plan>, OtelError> {
        let caller_context = check_propagators(var)?;
        if value(var, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            // Calls still ignore their callers' trace context when told to (a second round's: the setting was
            // taken and did nothing without the SDK).
            return Ok((!caller_context).then(|| Plan {
                traces: false,
                metrics: false,
                logs: false,
                named: false,
                resource: Vec::new(),
                caller_context,
                service_name: None,
                disabled: true,
            }));
        }
        let traces = exports(var, &TRACES)?;
        let metrics = exports(var, &METRICS)?;
        let logs = exports(var, &LOGS)?;
        if traces {
            check_sampler(var)?;
        }
        for (exported, variables) in [
            (traces, &BATCHING_TRACES[..]),
            (logs, &BATCHING_LOGS[..]),
            (metrics, &BATCHING_METRICS[..]),
        ] {
            for &variable in variables.iter().filter(|_| exported) {
                // As the SDK reads it: untrimmed (a space around the number made it ignore the setting: red-team
                // finding). Blank is unset, to both.
                let Some(number) = var(variable).filter(|v| !v.trim().is_empty()) else {
                    continue;
                };
                // Sizes from 1 (a queue of none drops every record) to 100,000 (the SDK allocates its queues
                // whole: larger aborted the start), times from 10 ms (less is a busy loop) to a day.
                let (range, what) = if variable.ends_with("_SIZE") {
                    (1..=100_000, "a size from 1 to 100000")
                } else {
                    (10..=86_400_000, "milliseconds from 10 to 86400000 (a day)")
                };
                if !number.parse::<u64>().is_ok_and(|n| range.contains(&n)) {
                    return Err(OtelError::Invalid {
                        variable,
                        message: format!(
                            "`{}` is not {what} (the SDK would ignore what is not a whole number without a word, and \
                             take zero or a huge number as it is)",
                            number.escape_debug()
                        ),
                    });
                }
            }
        }
        if traces {
            check_span_limits(var)?;
        }
        let service_name = value(var, "OTEL_SERVICE_NAME");
        let service_named = service_name.is_some();
        let named = service_named
            || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| names_service(&attributes));
        let mut resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(attributes) => {
                resource_attributes(&attributes).map_err(|message| OtelError::Invalid {
                    variable: "OTEL_RESOURCE_ATTRIBUTES",
                    message,
                })?
            }
            None => Vec::new(),
        };
        if service_named {
            resource.retain(|(key, _)| key != "service.name");
        }
        Ok(Some(Plan {
            traces,
            metrics,
            logs,
            named,
            resource,
            caller_context,
            service_name,
            disabled: false,
        }))
    }
}

/// How long [`Otel::shutdown`] waits for the last exports: the SDK's own bound.
const SDK_SHUTDOWN: Duration = Duration::from_secs(5);

/// The batching variables the SDK reads for each signal, as whole numbers (sizes, or milliseconds): one that does not
/// parse is ignored by it without a word.
const BATCHING_TRACES: [&str; 4] = [
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
];
const BATCHING_LOGS: [&str; 4] = [
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_EXPORT_TIMEOUT",
];
const BATCHING_METRICS: [&str; 2] = ["OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT"];

/// A sampler the SDK knows and has, spelled as it reads it (exactly), with a ratio between 0 and 1 for the ratio
/// samplers (none: the specification's default, 1). The SDK takes anything else with a warning at most and samples
/// every trace: a typo meant to turn tracing off (`always_of`) would export everything.
fn check_sampler(var: Lookup<'_>) -> Result<(), OtelError> {
    // Set blank, as unset: the SDK's default sampler either way.
    let Some(sampler) = var("OTEL_TRACES_SAMPLER").filter(|v| !v.trim().is_empty()) else {
        return Ok(());
    };
    let ratio = match sampler.as_str() {
        "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off" => false,
        "traceidratio" | "parentbased_traceidratio" => true,
        other => {
            return Err(OtelError::Invalid {
                variable: "OTEL_TRACES_SAMPLER",
                message: format!(
                    "`{}` is not a sampler this build has: expected always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio (the SDK would sample \
                     every trace instead)",
                    other.escape_debug()
                ),
            });
        }
    };
    if ratio
        && let Some(arg) = var("OTEL_TRACES_SAMPLER_ARG").filter(|v| !v.trim().is_empty())
        && !arg
            .parse::<f64>()
            .is_ok_and(|ratio| (0.0..=1.0).contains(&ratio))
    {
        return Err(OtelError::Invalid {
            variable: "OTEL_TRACES_SAMPLER_ARG",
            message: format!(
                "`{}` is not a ratio between 0 and 1 (the SDK would sample every trace instead)",
                arg.escape_debug()
            ),
        });
    }
    Ok(())
}

/// Whether a signal is exported over OTLP (an endpoint is set for it, and its exporter is not `none`), once its
/// settings are ones this build can honour.
fn exports(var: Lookup<'_>, signal: &Signal) -> Result<bool, OtelError> {
    let unsupported = |variable, value, message| {
        Err(OtelError::Unsupported {
            variable,
            value,
            message,
        })
    };
    match value(var, signal.exporter) {
        None => {}
        Some(exporter) if exporter.eq_ignore_ascii_case("otlp") => {}
        Some(exporter) if exporter.eq_ignore_ascii_case("none") => return Ok(false),
        Some(other) => return unsupported(signal.exporter, other, "expected `otlp` or `none`"),
    }
    let Some((variable, endpoint)) = resolved(var, signal.endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT")
    else {
        return Ok(false);
    };
    if let Some(scheme) = endpoint.get(..8)
        && scheme.eq_ignore_ascii_case("https://")
    {
        // The scheme only: a URL may carry credentials (`user:password@`, a token in its query).
        return unsupported(
            variable,
            format!("{scheme}..."),
            "this build exports over plain HTTP only (no TLS): use an `http://` endpoint (a local collector or sidecar)",
        );
    }
    // As the exporter reads it, untrimmed: with space around it, it fails to parse it and quotes it whole, a token
    // in its query included (red-team finding).
    if var(variable).is_some_and(|raw| raw.trim() != raw) {
        return Err(OtelError::Invalid {
            variable,
            message: "has space around it, which the exporter does not take (remove it)".to_owned(),
        });
    }
    check_endpoint(variable, &endpoint)
        .map_err(|message| OtelError::Invalid { variable, message })?;
    if let Some((variable, protocol)) =
        resolved(var, signal.protocol, "OTEL_EXPORTER_OTLP_PROTOCOL")
        && !protocol.eq_ignore_ascii_case("http/protobuf")
    {
        return unsupported(
            variable,
            protocol,
            "this build exports over `http/protobuf` only",
        );
    }
    if let Some((variable, compression)) =
        resolved(var, signal.compression, "OTEL_EXPORTER_OTLP_COMPRESSION")
        && !compression.eq_ignore_ascii_case("none")
    {
        return unsupported(
            variable,
            compression,
            "this build exports uncompressed only: expected `none`",
        );
    }
    for variable in [signal.headers, "OTEL_EXPORTER_OTLP_HEADERS"] {
        if let Some(headers) = value(var, variable) {
            check_headers(&headers).map_err(|message| OtelError::Invalid { variable, message })?;
        }
    }
    // The exporter takes a signal's own variable whenever it is set, empty or not (red-team finding: an empty one
    // sent the signal without the headers the general variable names).
    if var(signal.headers).is_some_and(|v| v.trim().is_empty())
        && value(var, "OTEL_EXPORTER_OTLP_HEADERS").is_some()
    {
        return Err(OtelError::Invalid {
            variable: signal.headers,
            message:
                "is set but empty, so this signal would be exported with no headers, not those of \
                      OTEL_EXPORTER_OTLP_HEADERS: unset it, or give this signal's headers"
                    .to_owned(),
        });
    }
    for variable in [signal.timeout, "OTEL_EXPORTER_OTLP_TIMEOUT"] {
        // Read as the exporter reads it, untrimmed: ` 500` would be ignored.
        if let Some(timeout) = var(variable).filter(|v| !v.trim().is_empty())
            && !timeout.parse::<u64>().is_ok_and(|millis| millis > 0)
        {
            return Err(OtelError::Invalid {
                variable,
                message: format!(
                    "`{}` is not a timeout: expected a whole number of milliseconds above 0, such as `10000`",
                    timeout.escape_debug()
                ),
            });
        }
    }
    Ok(true)
}

/// The exporter's HTTP client: the blocking reqwest client the exporter would make itself, with its timeout
/// (`OTEL_EXPORTER_OTLP_{SIGNAL}_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s, read as the exporter reads
/// them), but following no redirect: the exporter's own followed them without a word, so whatever answered on the
/// collector's address could send the audit records, and the headers (a collector's key among them), to any other
/// host (red-team finding). A redirect is a failed export, reported as any other.
fn http_client(
    var: Lookup<'_>,
    signal: &Signal,
    name: &'static str,
) -> Result<reqwest::blocking::Client, OtelError> {
    let millis = |variable: &str| var(variable).and_then(|value| value.parse::<u64>().ok());
    let timeout = millis(signal.timeout)
        .or_else(|| millis("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .map_or(
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT,
            Duration::from_millis,
        );
    // Made on a thread of its own, as the exporter makes its own: a blocking client may not be made or dropped
    // within an async runtime.
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
    })
    .join()
    .map_err(|_| OtelError::Exporter {
        signal: name,
        message: "making the HTTP client panicked".to_owned(),
    })?
    .map_err(|error| OtelError::Exporter {
        signal: name,
        message: format!("the HTTP client could not be made: {error}"),
    })
}

/// Whether an endpoint is one the exporter uses as written: an `http://` URL without credentials (which it would
/// drop without a word: they go in the headers variable) and, for the general variable, to which each signal's path
/// is appended, without a query or fragment (the path would land inside them). The message never quotes the URL,
/// which may hold a credential (red-team finding: an unparsable one was printed whole at start).
fn check_endpoint(variable: &str, endpoint: &str) -> Result<(), String> {
    let Ok(uri) = http::Uri::try_from(endpoint.trim()) else {
        return Err("is not a URL: expected one such as `http://localhost:4318`".to_owned());
    };
    if !uri
        .scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http"))
        || uri.host().is_none_or(str::is_empty)
    {
        return Err(
            "is not an `http://` URL with a host, such as `http://localhost:4318`".to_owned(),
        );
    }
    // A port out of range parses as a URL (its port is then none): every export would fail with a network error
    // that does not say why (red-team finding).
    let authority = uri.authority().map_or("", |authority| authority.as_str());
    let host_end = authority.rfind(']').map_or(0, |end| end + 1);
    if let Some((_, port)) = authority[host_end..].rsplit_once(':')
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return Err("has a port out of range (1 to 65535)".to_owned());
    }
    if uri
        .authority()
        .is_some_and(|authority| authority.as_str().contains('@'))
    {
        return Err(
            "holds credentials (`user:password@`), which the exporter would not send: give them as a header in \
             OTEL_EXPORTER_OTLP_HEADERS"
                .to_owned(),
        );
    }
    if variable == "OTEL_EXPORTER_OTLP_ENDPOINT"
        && (uri.query().is_some() || endpoint.contains('#'))
    {
        return Err(
            "has a query or fragment, while each signal is sent to this URL followed by `/v1/traces`, `/v1/metrics` \
             or `/v1/logs`: give a signal's own endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, ...), used as it is"
                .to_owned(),
        );
    }
    Ok(())
}

/// Whether every entry of a headers variable is one the exporter sends, read as it reads them (`key=value` pairs
/// separated by commas, both trimmed, empty entries skipped, the value percent-decoded when the whole of it
/// decodes): the exporter drops any other entry without a word. The message names an entry by its place only,
/// never its key or value (a pasted credential may end in `=`, its text then read as the key: red-team finding).
fn check_headers(headers: &str) -> Result<(), String> {
    for (place, entry) in headers.split_terminator(',').map(str::trim).enumerate() {
        let place = place + 1;
        if entry.is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!("entry {place} is not `key=value`"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("entry {place} has no key before its `=`"));
        }
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
            return Err(format!("entry {place}'s key is not a header's name"));
        }
        let value = value.trim();
        let decoded = percent_decoded(value).unwrap_or_else(|| value.to_owned());
        if decoded.is_empty() {
            return Err(format!("entry {place} has no value after its `=`"));
        }
        if http::HeaderValue::from_str(&decoded).is_err() {
            return Err(format!(
                "entry {place}'s value is not a header's value (a control character, once percent-decoded?)"
            ));
        }
    }
    Ok(())
}

/// `value` percent-decoded as the exporter decodes it: `None` when a `%` is not followed by two hex digits or the
/// bytes are not UTF-8 (the exporter then sends the value as written).
fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// `OTEL_PROPAGATORS`, as the specification lists it (default `tracecontext,baggage`): whether calls continue the
/// W3C trace context their callers send (`tracecontext` named). `none` alone turns that off, for a server at the
/// edge whose callers should not choose the trace of its spans and records. `baggage` is taken and does nothing (no
/// baggage is read); any other propagator (`b3`, `jaeger`, `xray`, ...) is refused, this build having only W3C trace
/// context (an OTel round's `b3` and `none` were ignored without a word).
fn check_propagators(var: Lookup<'_>) -> Result<bool, OtelError> {
    let Some(list) = var("OTEL_PROPAGATORS").filter(|v| !v.trim().is_empty()) else {
        return Ok(true);
    };
    let names: Vec<String> = list
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let invalid = |message: String| OtelError::Invalid {
        variable: "OTEL_PROPAGATORS",
        message,
    };
    if names.iter().any(|name| name == "none") {
        return if names.len() == 1 {
            Ok(false)
        } else {
            Err(invalid("`none` is given with other propagators".into()))
        };
    }
    for name in &names {
        if !matches!(name.as_str(), "tracecontext" | "baggage") {
            return Err(invalid(format!(
                "`{}` is not a propagator this build has: `tracecontext` (W3C trace context), `baggage` (taken, and \
                 nothing read) or `none`",
                name.escape_debug()
            )));
        }
    }
    Ok(names.iter().any(|name| name == "tracecontext"))
}

/// The resource a plan describes: the SDK's own attributes (`telemetry.sdk.*`), the service named `service_name`
/// unless the variables name it, `OTEL_RESOURCE_ATTRIBUTES` decoded, and `OTEL_SERVICE_NAME` over all (a second
/// round's: the SDK's detectors let the attributes' `service.name` win over it, and undecoded). Read through the
/// plan's variables only, not the SDK's detectors of the process environment.
fn resource_of(plan: &Plan, service_name: &str) -> Resource {
    let mut resource = Resource::builder_empty().with_detector(Box::new(
        opentelemetry_sdk::resource::TelemetryResourceDetector,
    ));
    if !plan.named {
        resource = resource.with_service_name(service_name.to_owned());
    }
    resource = resource.with_attributes(
        plan.resource
            .iter()
            .map(|(key, value)| opentelemetry::KeyValue::new(key.clone(), value.clone())),
    );
    if let Some(name) = &plan.service_name {
        resource = resource.with_service_name(name.clone());
    }
    resource.build()
}

/// The span limits the SDK reads, each a whole number it would otherwise ignore without a word; the attributes' from
/// 16, the most a call's span carries (fewer would drop the conventions' own, `error.type` among them: an OTel
/// round's `0` exported spans with no attribute at all).
fn check_span_limits(var: Lookup<'_>) -> Result<(), OtelError> {
    for (variable, least) in [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", 16),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", 0),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", 0),
    ] {
        let Some(number) = var(variable).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if !number
            .parse::<u32>()
            .is_ok_and(|n| (least..=100_000).contains(&n))
        {
            return Err(OtelError::Invalid {
                variable,
                message: format!(
                    "`{}` is not a whole number from {least} to 100000 (the SDK would ignore it without a word{})",
                    number.escape_debug(),
                    if least > 0 {
                        ", and fewer would drop the attributes the conventions ask for"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    Ok(())
}

/// `OTEL_RESOURCE_ATTRIBUTES` as the specification writes it: `key=value` pairs separated by commas, both trimmed,
/// values percent-encoded (`,` as `%2C`). An entry the SDK would drop without a word (no `=`, no key) or a `%` not
/// followed by two hex digits is refused, naming the entry by its place (a red team's `service.name=%20` named the
/// service `%20`; the SDK decodes nothing).
fn resource_attributes(attributes: &str) -> Result<Vec<(String, String)>, String> {
    let mut read = Vec::new();
    for (place, entry) in attributes.split_terminator(',').map(str::trim).enumerate() {
        let place = place + 1;
        if entry.is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!(
                "entry {place} is not `key=value` (the SDK would drop it without a word)"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("entry {place} has no key before its `=`"));
        }
        let Some(value) = percent_decoded(value.trim()) else {
            return Err(format!(
                "entry {place}'s value is not percent-encoded text (a `%` not followed by two hex digits, or not \
                 UTF-8 once decoded): write `%` as `%25`"
            ));
        };
        read.push((key.to_owned(), value));
    }
    Ok(read)
}

/// Whether `OTEL_RESOURCE_ATTRIBUTES` names the service, read as the SDK's resource detector reads it: `key=value`
/// pairs separated by commas, each key trimmed.
fn names_service(attributes: &str) -> bool {
    attributes.split_terminator(',').any(|pair| {
        pair.split_once('=')
            .is_some_and(|(key, _)| key.trim() == "service.name")
    })
}

fn exporter_error(
    signal: &'static str,
) -> impl Fn(opentelemetry_otlp::ExporterBuildError) -> OtelError {
    move |error| OtelError::Exporter {
        signal,
        message: error.to_string(),
    }
}

impl Otel {
    /// The SDK as the `OTEL_*` variables describe it (see the table above), with `service_name` as the service's
    /// name unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names it, and a Prometheus registry if
    /// `prometheus`. `None` when there is nothing to export. Sets the global providers and the W3C trace-context
    /// propagator, so that what a tool instruments itself goes the same way, under the call's span.
    ///
    /// Call it inside a Tokio runtime or not: the exporters run on threads of their own.
    pub fn from_env(service_name: &str, prometheus: bool) -> Result<Option<Self>, OtelError> {
        Self::from_vars(&|name| env::var(name).ok(), service_name, prometheus)
    }

    /// As [`from_env`](Self::from_env), with the settings read through `var` (the exporters themselves still read
    /// the process's endpoint and header variables).
    pub(crate) fn from_vars(
        var: Lookup<'_>,
        service_name: &str,
        prometheus: bool,
    ) -> Result<Option<Self>, OtelError> {
        let Some(plan) = Plan::read(var)? else {
            return Ok(None);
        };
        let (traces, metrics, logs, caller_context) =
            (plan.traces, plan.metrics, plan.logs, plan.caller_context);
        if plan.disabled || !(traces || metrics || logs || prometheus) {
            // Nothing to export; still, with `OTEL_PROPAGATORS=none`, calls ignore their callers' trace context
            // (their records name none).
            return Ok((!caller_context).then(|| Otel {
                tracers: None,
                meters: None,
                loggers: None,
                registry: None,
                caller_context,
            }));
        }
        let resource = resource_of(&plan, service_name);

        let tracers = traces
            .then(|| {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(http_client(var, &TRACES, "traces")?)
                    .build()
                    .map_err(exporter_error("traces"))?;
                Ok::<_, OtelError>(
                    SdkTracerProvider::builder()
                        .with_resource(resource.clone())
                        .with_batch_exporter(exporter)
                        .build(),
                )
            })
            .transpose()?;
        let registry = prometheus.then(prometheus::Registry::new);
        let meters = if metrics || registry.is_some() {
            let mut builder = SdkMeterProvider::builder().with_resource(resource.clone());
            if metrics {
                let exporter = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(http_client(var, &METRICS, "metrics")?)
                    .build()
                    .map_err(exporter_error("metrics"))?;
                builder = builder.with_periodic_exporter(exporter);
            }
            if let Some(registry) = &registry {
                let reader = opentelemetry_prometheus::exporter()
                    .with_registry(registry.clone())
                    .build()
                    .map_err(|error| OtelError::Exporter {
                        signal: "prometheus",
                        message: error.to_string(),
                    })?;
                builder = builder.with_reader(reader);
            }
            Some(builder.build())
        } else {
            None
        };
        let loggers = logs
            .then(|| {
                let exporter = opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(http_client(var, &LOGS, "logs")?)
                    .build()
                    .map_err(exporter_error("logs"))?;
                Ok::<_, OtelError>(
                    SdkLoggerProvider::builder()
                        .with_resource(resource)
                        .with_batch_exporter(exporter)
                        .build(),
                )
            })
            .transpose()?;

        global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(tracers) = &tracers {
            global::set_tracer_provider(tracers.clone());
        }
        if let Some(meters) = &meters {
            global::set_meter_provider(meters.clone());
        }
        Ok(Some(Otel {
            tracers,
            meters,
            loggers,
            registry,
            caller_context,
        }))
    }

    /// What a tool set reports through these providers (a signal not exported costs nothing: its provider is the
    /// API's no-op one).
    pub fn telemetry(&self) -> Telemetry {
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry::trace::TracerProvider as _;
        let tracer = match &self.tracers {
            Some(tracers) => global::BoxedTracer::new(Box::new(tracers.tracer_with_scope(scope()))),
            None => global::BoxedTracer::new(Box::new(
                opentelemetry::trace::noop::NoopTracerProvider::new().tracer_with_scope(scope()),
            )),
        };
        let meter = match &self.meters {
            Some(meters) => meters.meter_with_scope(scope()),
            None => {
                opentelemetry::metrics::noop::NoopMeterProvider::new().meter_with_scope(scope())
            }
        };
        let mut telemetry = Telemetry::with(tracer, &meter);
        if !self.caller_context {
            telemetry = telemetry.without_caller_context();
        }
        if self.tracers.is_some() {
            telemetry
        } else {
            telemetry.without_spans()
        }
    }

    /// The audit sink that emits records as OTLP logs, when logs are exported.
    pub fn audit_logs(&self) -> Option<AuditLogs> {
        self.loggers.as_ref().map(AuditLogs::new)
    }

    /// The metrics in the Prometheus text format, when a registry was asked for.
    pub fn prometheus_text(&self) -> Option<String> {
        let registry = self.registry.as_ref()?;
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut text)
            .ok()?;
        Some(text)
    }

    /// Exports what is still batched and stops the exporters (blocking: call it from a blocking context).
    /// The three signals are flushed at once, each on a thread of its own: a collector that takes connections but
    /// never answers holds the stop for one export's timeout (the SDK's 5 s), not one per signal.
    pub fn shutdown(&self) {
        self.shutdown_within(SDK_SHUTDOWN);
    }

    /// [`Otel::shutdown`], waiting `within` at most: a flush still going on then is left to end with the process
    /// (over stdio a host stops a server a second or two after closing its input: an OTel round's stuck collector
    /// held the stop for 5 s). The audit file has every record by then; the collector's copy may lack the last.
    pub fn shutdown_within(&self, within: Duration) {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let mut flushing = 0;
        let mut flush = |name: &'static str, stop: Box<dyn FnOnce() -> OTelSdkResult + Send>| {
            let done = done.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otel-{name}-shutdown"))
                .spawn(move || {
                    if let Err(error) = stop() {
                        tracing::warn!(%error, "OpenTelemetry {name} not all exported at shutdown");
                    }
                    let _ = done.send(());
                });
            if spawned.is_ok() {
                flushing += 1;
            }
        };
        if let Some(tracers) = self.tracers.clone() {
            flush(
                "traces",
                Box::new(move || tracers.shutdown_with_timeout(within)),
            );
        }
        if let Some(meters) = self.meters.clone() {
            flush("metrics", Box::new(move || meters.shutdown()));
        }
        if let Some(loggers) = self.loggers.clone() {
            flush(
                "logs",
                Box::new(move || loggers.shutdown_with_timeout(within)),
            );
        }
        let deadline = std::time::Instant::now() + within;
        for _ in 0..flushing {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if finished.recv_timeout(left).is_err() {
                tracing::warn!(
                    within = ?within,
                    "OpenTelemetry's exports at shutdown did not end in time; the process stops without them"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OtelError, Plan};

    /// An exporter that takes a batch and never answers, as a collector that accepts connections and says nothing.
    #[derive(Debug)]
    struct Stuck;

    impl opentelemetry_sdk::trace::SpanExporter for Stuck {
        async fn export(&self, _: Vec<opentelemetry_sdk::trace::SpanData>) -> super::OTelSdkResult {
            // As long as the test lasts, and then some.
            std::thread::sleep(std::time::Duration::from_secs(30));
            Ok(())
        }
    }

    /// An OTel round's: over stdio a stuck collector held the stop for the SDK's 5 s, where a host stops the server
    /// within a second or two. `shutdown_within` returns at its bound, the flush left to end with the process.
    #[test]
    fn a_stuck_export_holds_the_stop_no_longer_than_its_bound() {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        let tracers = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(Stuck)
            .build();
        drop(tracers.tracer("test").start("a span"));
        let otel = super::Otel {
            tracers: Some(tracers),
            meters: None,
            loggers: None,
            registry: None,
            caller_context: true,
        };
        let started = std::time::Instant::now();
        otel.shutdown_within(std::time::Duration::from_millis(200));
        // A bound, not a speed: ten times the wait, far under the exporter's 30 s and the SDK's 5 s.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    /// The plan for exactly these variables.
    fn plan(vars: &[(&str, &str)]) -> Result<Option<Plan>, OtelError> {
        Plan::read(&|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    fn refused(vars: &[(&str, &str)]) -> &'static str {
        match plan(vars) {
            Err(OtelError::Unsupported { variable, .. }) => variable,
            other => panic!("{vars:?} not refused: {other:?}"),
        }
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318");

    #[test]
    fn https_endpoints_are_refused_the_build_has_no_tls() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTPS://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector/v1/traces",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "https://collector/v1/metrics",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "https://collector/v1/logs",
            ),
        ] {
            assert_eq!(refused(&[(variable, value)]), variable);
        }
        let error = plan(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:secret@collector:4318/?token=secret",
        )])
        .unwrap_err()
        .to_string();
        assert!(!error.contains("secret"), "{error}");
        // A signal's own endpoint is the one it uses; a signal not exported uses none.
        let own = plan(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://localhost:4318/v1/traces",
            ),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ])
        .unwrap()
        .unwrap();
        assert!(own.traces && !own.metrics && !own.logs);
        assert!(plan(&[ENDPOINT]).unwrap().unwrap().traces);
    }

    /// Red-team finding: credentials in the endpoint's URL (`user:password@`) were dropped by the exporter without
    /// a word, a query on the general endpoint was mangled (`/?token=x/v1/logs`), and a URL the exporter could not
    /// parse stopped the start with the whole URL, password and all, in the message. Each is refused, naming the
    /// variable and never its value.
    #[test]
    fn endpoints_with_credentials_a_query_or_no_url_shape_are_refused_unprinted() {
        for (variable, value) in [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://user:secret@127.0.0.1:4318",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://secret@127.0.0.1:4318",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318/?token=secret",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318/#secret",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://user:secret@exa mple/",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "user:secret@127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[user:secret@::1"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://user:secret@127.0.0.1:4318/v1/logs",
            ),
            // Second round: space around it, which the exporter does not trim, and quoted whole in its error.
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://127.0.0.1:4318/v1/logs?token=secret ",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "\thttp://127.0.0.1:4318/v1/logs?token=secret",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318\r"),
            // A red team's: a port out of range was taken, and every export failed with a network error that (never
            // quoting the URL) gave no hint.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:99999"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:0"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:65536/v1/traces",
            ),
        ] {
            let error = plan(&[(variable, value)]).unwrap_err();
            let shown = error.to_string();
            assert!(shown.contains(variable), "{value}: {shown}");
            assert!(!shown.contains("secret"), "{value}: {shown}");
        }
        // A signal's own endpoint is used as it is: its query reaches the collector.
        assert!(
            plan(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4318/v1/traces?tenant=a"
            )])
            .unwrap()
            .unwrap()
            .traces
        );
        assert!(plan(&[ENDPOINT]).unwrap().unwrap().logs);
    }

    /// Red-team finding: a sampler the SDK does not know (`always_of`, a typo meant to turn tracing off) or a ratio
    /// that is not one, and a batching variable that is not a number, were taken with the SDK's warning at most and
    /// its default used: everything exported. They stop the start, naming the variable.
    #[test]
    fn a_sampler_or_batching_setting_the_sdk_would_ignore_is_refused() {
        let invalid = |vars: &[(&str, &str)]| match plan(vars) {
            Err(OtelError::Invalid { variable, .. }) => variable,
            other => panic!("{vars:?} not refused: {other:?}"),
        };
        for sampler in [
            "always_of",
            "ALWAYS_OFF",
            "jaeger_remote",
            "xray",
            "parentbased_jaeger_remote",
        ] {
            assert_eq!(
                invalid(&[ENDPOINT, ("OTEL_TRACES_SAMPLER", sampler)]),
                "OTEL_TRACES_SAMPLER"
            );
        }
        for ratio in ["half", "1.5", "-0.1", "NaN", "inf"] {
            for sampler in ["traceidratio", "parentbased_traceidratio"] {
                assert_eq!(
                    invalid(&[
                        ENDPOINT,
                        ("OTEL_TRACES_SAMPLER", sampler),
                        ("OTEL_TRACES_SAMPLER_ARG", ratio)
                    ]),
                    "OTEL_TRACES_SAMPLER_ARG"
                );
            }
        }
        for variable in [
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "OTEL_BSP_SCHEDULE_DELAY",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            "OTEL_BSP_EXPORT_TIMEOUT",
            "OTEL_BLRP_MAX_QUEUE_SIZE",
            "OTEL_BLRP_SCHEDULE_DELAY",
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
            "OTEL_BLRP_EXPORT_TIMEOUT",
            "OTEL_METRIC_EXPORT_INTERVAL",
            "OTEL_METRIC_EXPORT_TIMEOUT",
        ] {
            assert_eq!(invalid(&[ENDPOINT, (variable, "SECRETQ")]), variable);
            // Second round: zero (a queue that drops every record, a busy loop) and sizes whose allocation aborts
            // the start.
            assert_eq!(invalid(&[ENDPOINT, (variable, "0")]), variable);
            assert_eq!(
                invalid(&[ENDPOINT, (variable, "18446744073709551615")]),
                variable
            );
            assert!(plan(&[ENDPOINT, (variable, "100")]).is_ok(), "{variable}");
            // A red team's (round three): the SDK reads the value as it is, so a space around the number made it
            // ignore the setting without a word, while the check, which trimmed, let it through.
            for spaced in [" 100", "100 ", "\t100"] {
                assert_eq!(
                    invalid(&[ENDPOINT, (variable, spaced)]),
                    variable,
                    "{spaced:?}"
                );
            }
        }
        for (sampler, ratio) in [
            ("always_off", None),
            ("parentbased_always_on", None),
            ("traceidratio", Some("0.25")),
            ("parentbased_traceidratio", Some("1")),
            // The specification's default ratio, 1.
            ("traceidratio", None),
        ] {
            let mut vars = vec![ENDPOINT, ("OTEL_TRACES_SAMPLER", sampler)];
            vars.extend(ratio.map(|ratio| ("OTEL_TRACES_SAMPLER_ARG", ratio)));
            assert!(plan(&vars).is_ok(), "{vars:?}");
        }
        // Traces not exported: no sampler to choose.
        assert!(
            plan(&[
                ENDPOINT,
                ("OTEL_TRACES_EXPORTER", "none"),
                ("OTEL_TRACES_SAMPLER", "x")
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_signals_own_protocol_other_than_http_protobuf_is_refused() {
        for signal in ["TRACES", "METRICS", "LOGS"] {
            let variable = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
            for protocol in ["grpc", "http/json"] {
                assert_eq!(refused(&[ENDPOINT, (&variable, protocol)]), variable);
            }
            assert!(plan(&[ENDPOINT, (&variable, "http/protobuf")]).is_ok());
        }
        assert_eq!(
            refused(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        );
        // A signal's own protocol is the one it uses.
        assert!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://localhost:4318/v1/traces"
                ),
            ])
            .unwrap()
            .unwrap()
            .traces
        );
    }

    #[test]
    fn compression_is_refused_the_build_has_none() {
        for variable in [
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
        ] {
            for compression in ["gzip", "zstd"] {
                assert_eq!(refused(&[ENDPOINT, (variable, compression)]), variable);
            }
            assert!(plan(&[ENDPOINT, (variable, "none")]).is_ok());
            assert!(plan(&[ENDPOINT, (variable, "NONE")]).is_ok());
        }
    }

    #[test]
    fn values_are_read_whatever_their_case() {
        let read = plan(&[
            ENDPOINT,
            ("OTEL_TRACES_EXPORTER", "NONE"),
            ("OTEL_METRICS_EXPORTER", "OTLP"),
            ("OTEL_LOGS_EXPORTER", "None"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "Http/Protobuf"),
        ])
        .unwrap()
        .unwrap();
        assert!(!read.traces && read.metrics && !read.logs);
        assert_eq!(
            refused(&[ENDPOINT, ("OTEL_TRACES_EXPORTER", "zipkin")]),
            "OTEL_TRACES_EXPORTER"
        );
    }

    /// The runner's SDK for exactly these variables, nothing exported to Prometheus.
    fn otel_of(vars: &[(&str, &str)]) -> Option<super::Otel> {
        super::Otel::from_vars(
            &|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            },
            "files",
            false,
        )
        .unwrap()
    }

    /// A second round's: `OTEL_PROPAGATORS=none` did nothing where nothing was exported (no endpoint, or the SDK
    /// disabled), and `OTEL_SERVICE_NAME` lost to the attributes' `service.name`, which was not decoded either.
    #[test]
    fn no_propagation_holds_without_export_and_the_service_name_takes_precedence() {
        for vars in [
            &[("OTEL_PROPAGATORS", "none")][..],
            &[("OTEL_PROPAGATORS", "none"), ("OTEL_SDK_DISABLED", "true")][..],
        ] {
            let otel = otel_of(vars).expect("an SDK that propagates nothing");
            assert!(!otel.caller_context, "{vars:?}");
            assert!(otel.tracers.is_none() && otel.meters.is_none() && otel.loggers.is_none());
        }
        for vars in [&[][..], &[("OTEL_SDK_DISABLED", "true")][..]] {
            assert!(otel_of(vars).is_none(), "{vars:?}");
        }
        let service = |vars: &[(&str, &str)]| {
            let plan = plan(vars).unwrap().unwrap();
            let resource = super::resource_of(&plan, "secure-file-server");
            let name = resource
                .get(&opentelemetry::Key::from_static_str("service.name"))
                .map(|value| value.as_str().into_owned());
            let sdk = resource.get(&opentelemetry::Key::from_static_str("telemetry.sdk.name"));
            assert!(sdk.is_some(), "{resource:?}");
            name
        };
        assert_eq!(service(&[ENDPOINT]).as_deref(), Some("secure-file-server"));
        assert_eq!(
            service(&[ENDPOINT, ("OTEL_RESOURCE_ATTRIBUTES", "service.name=a%2Cb")]).as_deref(),
            Some("a,b")
        );
        assert_eq!(
            service(&[
                ENDPOINT,
                ("OTEL_SERVICE_NAME", "files"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other")
            ])
            .as_deref(),
            Some("files")
        );
    }

    #[test]
    fn propagators_are_w3c_trace_context_or_none() {
        let caller_context = |list: &str| {
            plan(&[ENDPOINT, ("OTEL_PROPAGATORS", list)])
                .unwrap()
                .unwrap()
                .caller_context
        };
        for continued in [
            "",
            "tracecontext",
            "tracecontext,baggage",
            " TraceContext , baggage",
        ] {
            assert!(caller_context(continued), "{continued:?}");
        }
        for not in ["none", "NONE", "baggage"] {
            assert!(!caller_context(not), "{not:?}");
        }
        for refused in [
            "b3",
            "tracecontext,b3multi",
            "jaeger",
            "xray",
            "none,tracecontext",
            "trace context",
        ] {
            assert_eq!(
                invalid(&[ENDPOINT, ("OTEL_PROPAGATORS", refused)]).0,
                "OTEL_PROPAGATORS",
                "{refused:?}"
            );
        }
    }

    /// An OTel round's: span limits that are no number were ignored without a word, and `0` exported spans without
    /// any attribute; resource attributes were not percent-decoded, and an entry without `=` dropped.
    #[test]
    fn span_limits_and_resource_attributes_are_read_as_the_specification_says() {
        for (variable, bad, good) in [
            (
                "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                &["abc", "0", "15", " 64", "100001"][..],
                "16",
            ),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", &["abc", "-1"][..], "0"),
            ("OTEL_SPAN_LINK_COUNT_LIMIT", &["1e3"][..], "128"),
        ] {
            for bad in bad {
                assert_eq!(invalid(&[ENDPOINT, (variable, bad)]).0, variable, "{bad:?}");
            }
            assert!(plan(&[ENDPOINT, (variable, good)]).is_ok(), "{variable}");
            // Not read without traces exported.
            assert!(
                plan(&[
                    ENDPOINT,
                    ("OTEL_TRACES_EXPORTER", "none"),
                    (variable, "abc")
                ])
                .is_ok(),
                "{variable}"
            );
        }
        let resource = |vars: &[(&str, &str)]| plan(vars).unwrap().unwrap().resource;
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            resource(&[
                ENDPOINT,
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=%20files, deployment.environment = a%2Cb,"
                )
            ]),
            [
                pair("service.name", " files"),
                pair("deployment.environment", "a,b")
            ]
        );
        // `OTEL_SERVICE_NAME` takes precedence.
        assert_eq!(
            resource(&[
                ENDPOINT,
                ("OTEL_SERVICE_NAME", "files"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other,team=a")
            ]),
            [pair("team", "a")]
        );
        for bad in ["a", "=x", "service.name=%2", "team=%zz", "a=1,b"] {
            assert_eq!(
                invalid(&[ENDPOINT, ("OTEL_RESOURCE_ATTRIBUTES", bad)]).0,
                "OTEL_RESOURCE_ATTRIBUTES",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_service_is_named_by_the_resource_attributes_key_as_the_sdk_reads_it() {
        let named = |attributes: &str| {
            plan(&[ENDPOINT, ("OTEL_RESOURCE_ATTRIBUTES", attributes)])
                .unwrap()
                .unwrap()
                .named
        };
        for attributes in [
            "service.name=files",
            "service.name = files",
            "deployment.environment=prod, service.name =files",
            "service.name=",
        ] {
            assert!(named(attributes), "{attributes}");
        }
        for attributes in [
            "my.service.name=files",
            "x=service.name=files",
            "service.namespace=shop",
            "",
        ] {
            assert!(!named(attributes), "{attributes}");
        }
        assert!(
            plan(&[ENDPOINT, ("OTEL_SERVICE_NAME", "files")])
                .unwrap()
                .unwrap()
                .named
        );
    }

    /// The variable a start was refused for, with the message (which must not quote a header's value).
    fn invalid(vars: &[(&str, &str)]) -> (&'static str, String) {
        match plan(vars) {
            Err(error @ OtelError::Invalid { variable, .. }) => (variable, error.to_string()),
            other => panic!("{vars:?} not refused: {other:?}"),
        }
    }

    #[test]
    fn headers_the_exporter_would_drop_are_refused_without_quoting_their_values() {
        // Operator trial: the exporter drops an entry it cannot read without a word, so a collector's credential
        // went missing and every export was refused by the collector, with nothing at the server's start.
        for headers in [
            "Bearer s3cret",
            "api-key=s3cret,Bearer s3cret",
            "=s3cret",
            "api-key=",
            "api key=s3cret",
            "api-key=s3cret\u{1}",
            "api-key=s3cret%0A",
        ] {
            for variable in [
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            ] {
                let (refused, message) = invalid(&[ENDPOINT, (variable, headers)]);
                assert_eq!(refused, variable, "{headers}");
                assert!(!message.contains("s3cret"), "{message}");
            }
        }
        // Red-team findings: a pasted token ending in `=` was quoted as a key; a signal's own variable set empty
        // (which the exporter then uses: no headers) was taken though the general one named headers.
        let (_, message) = invalid(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_HEADERS", "dXNlcjpzM2NyZXQ=")]);
        assert!(!message.contains("dXNlcjpzM2NyZXQ"), "{message}");
        let (refused, _) = invalid(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20tok"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", " "),
        ]);
        assert_eq!(refused, "OTEL_EXPORTER_OTLP_LOGS_HEADERS");
        // What the exporter sends is taken: empty entries are skipped, and a value it cannot decode whole (`%zz`)
        // is sent as written.
        for headers in [
            "api-key=s3cret",
            " api-key = s3cret , x-tenant=a%20b ",
            "authorization=Basic%20dXNlcjpwYXNz,",
            "api-key=abc,,x=y",
            "api-key=abc, ,x=y",
            "a=x%0Ay%zz",
            "",
        ] {
            assert!(
                plan(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_HEADERS", headers)]).is_ok(),
                "{headers}"
            );
        }
        // Only a signal exported is read.
        assert!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Bearer s3cret"),
                (
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                    "http://localhost:4318/v1/logs"
                ),
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_timeout_the_exporter_would_ignore_is_refused() {
        for timeout in ["10s", "1.5", "-1", "0", " 500", "ten"] {
            for variable in [
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            ] {
                assert_eq!(
                    invalid(&[ENDPOINT, (variable, timeout)]).0,
                    variable,
                    "{timeout}"
                );
            }
        }
        for timeout in ["500", "10000", ""] {
            assert!(
                plan(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_TIMEOUT", timeout)]).is_ok(),
                "{timeout}"
            );
        }
    }

    #[test]
    fn a_disabled_sdk_reads_nothing_else() {
        assert_eq!(
            plan(&[
                ("OTEL_SDK_DISABLED", "TRUE"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ])
            .unwrap(),
            None
        );
    }
}
