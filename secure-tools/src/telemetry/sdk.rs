//! The OpenTelemetry SDK as the runners set it up, from the standard `OTEL_*` variables.

use std::env;

use opentelemetry::global;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
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
}

/// The OpenTelemetry SDK of a server: the providers the runners export through, and the Prometheus registry
/// `/metrics` reads.
///
/// [`Otel::from_env`] reads the standard variables:
///
/// | variable | effect |
/// | --- | --- |
/// | `OTEL_SDK_DISABLED=true` | nothing is set up |
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL (`http://localhost:4318`); each signal goes to `{base}/v1/{signal}` |
/// | `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` | one signal's full URL (the signal is exported even without the base) |
/// | `OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none` | that signal is not exported over OTLP (`otlp`, the default, is the only other value) |
/// | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` only (this build has no gRPC) |
/// | `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION` | as the specification says, read by the exporter |
/// | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource (the service name defaults to the server's name) |
/// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampling (default: parent-based, always on) |
/// | `OTEL_BSP_*`, `OTEL_BLRP_*`, `OTEL_METRIC_EXPORT_INTERVAL` | batching and the metric export interval |
///
/// Audit records go out as OTLP logs when logs are exported; metrics are kept for Prometheus when `prometheus`
/// is asked for, whether or not they are also exported over OTLP.
pub struct Otel {
    tracers: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    loggers: Option<SdkLoggerProvider>,
    registry: Option<prometheus::Registry>,
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

/// Whether a signal is exported over OTLP: an endpoint is set for it, and its exporter is not `none`.
fn exports(signal: &str) -> Result<bool, OtelError> {
    let exporter_variable = match signal {
        "TRACES" => "OTEL_TRACES_EXPORTER",
        "METRICS" => "OTEL_METRICS_EXPORTER",
        _ => "OTEL_LOGS_EXPORTER",
    };
    match env::var(exporter_variable).ok().as_deref().map(str::trim) {
        None | Some("" | "otlp") => {}
        Some("none") => return Ok(false),
        Some(other) => {
            return Err(OtelError::Unsupported {
                variable: exporter_variable,
                value: other.to_owned(),
                message: "expected `otlp` or `none`",
            });
        }
    }
    let set = |name: &str| env::var(name).is_ok_and(|v| !v.trim().is_empty());
    Ok(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
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
        if env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Ok(protocol) = env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && !matches!(protocol.trim(), "" | "http/protobuf")
        {
            return Err(OtelError::Unsupported {
                variable: "OTEL_EXPORTER_OTLP_PROTOCOL",
                value: protocol,
                message: "this build exports over `http/protobuf` only",
            });
        }
        let (traces, metrics, logs) = (exports("TRACES")?, exports("METRICS")?, exports("LOGS")?);
        if !(traces || metrics || logs || prometheus) {
            return Ok(None);
        }
        let named = env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
            || env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
        let mut resource = Resource::builder();
        if !named {
            resource = resource.with_service_name(service_name.to_owned());
        }
        let resource = resource.build();

        let tracers = traces
            .then(|| {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
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
        let telemetry = Telemetry::with(tracer, &meter);
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
    pub fn shutdown(&self) {
        if let Some(tracers) = &self.tracers
            && let Err(error) = tracers.shutdown()
        {
            tracing::warn!(%error, "OpenTelemetry traces not all exported at shutdown");
        }
        if let Some(meters) = &self.meters
            && let Err(error) = meters.shutdown()
        {
            tracing::warn!(%error, "OpenTelemetry metrics not all exported at shutdown");
        }
        if let Some(loggers) = &self.loggers
            && let Err(error) = loggers.shutdown()
        {
            tracing::warn!(%error, "OpenTelemetry logs not all exported at shutdown");
        }
    }
}
