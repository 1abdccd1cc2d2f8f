//! Logs, traces and metrics, set up once per process.
//!
//! Logs go to standard error, pretty or JSON by setting. When `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, spans are also exported over OTLP/HTTP (the exporter reads the standard `OTEL_*`
//! variables itself). Metrics are recorded with the `metrics` facade into one Prometheus
//! recorder that every process renders at `GET /metrics` (the api on its listen address, a
//! worker or scheduler on its ops address). The gauges that are sampled rather than counted
//! (queue depth, connections per pool) are set here, by whichever role samples them.

use std::collections::HashSet;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};

/// Keeps the OTLP exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {error}");
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` wins over the `log` setting when it is set.
pub fn init(config: &Config) -> Result<TelemetryGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::try_new(filter).context("RUST_LOG is not a log filter")?,
        _ => EnvFilter::try_new(&config.log).context("HERALD_LOG is not a log filter")?,
    };
    let fmt = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let tracer_provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .context("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter")?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("herald").build())
                    .build(),
            )
        }
        _ => None,
    };
    // W3C trace context: what a job stores so that its run, later and in another process,
    // continues the trace of the request that queued it.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otel =
        tracer_provider.as_ref().map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("herald")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(TelemetryGuard { tracer_provider })
}

/// The process's Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test process that embeds herald);
        // then this handle renders an empty page rather than failing the process.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The current span's trace context as a W3C `traceparent` (with `tracestate` after a newline
/// when there is one), or `None` when no trace is being recorded (no OTLP exporter): what
/// [`crate::queue`] stores with each job it enqueues.
pub fn current_trace_context() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut carrier));
    let parent = carrier.remove("traceparent")?;
    Some(match carrier.remove("tracestate").filter(|state| !state.is_empty()) {
        Some(state) => format!("{parent}\n{state}"),
        None => parent,
    })
}

/// Makes `span` a child of the trace context [`current_trace_context`] stored, if any: how a
/// job's run links back to the request that queued it.
pub fn continue_trace(span: &tracing::Span, stored: Option<&str>) {
    let Some(stored) = stored else { return };
    let (parent, state) = stored.split_once('\n').unwrap_or((stored, ""));
    let carrier = std::collections::HashMap::from([
        ("traceparent".to_owned(), parent.to_owned()),
        ("tracestate".to_owned(), state.to_owned()),
    ]);
    let context = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The page `/metrics` serves: every metric this process recorded, in Prometheus text format.
pub fn render() -> String {
    let handle = metrics();
    handle.run_upkeep();
    handle.render()
}

/// Sets `herald_db_connections{pool, state}` (`in_use`, `idle`) and
/// `herald_db_max_connections{pool}` for `pool`, named `name` (`main`, `claims`, ...).
pub fn record_pool(name: &'static str, pool: &sqlx::PgPool) {
    let open = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    metrics::gauge!("herald_db_connections", "pool" => name, "state" => "in_use").set((open - idle).max(0.0));
    metrics::gauge!("herald_db_connections", "pool" => name, "state" => "idle").set(idle);
    metrics::gauge!("herald_db_max_connections", "pool" => name).set(f64::from(pool.options().get_max_connections()));
}

/// The queue's depth gauges by queue and kind (`herald_queue_due_jobs`,
/// `herald_queue_scheduled_jobs`, `herald_queue_running_jobs`,
/// `herald_queue_oldest_due_seconds`), measured by workers and schedulers alike so the depth
/// is visible when the workers are scaled to zero. Remembers what it reported, so a queue and
/// kind that emptied drops to zero instead of keeping its last value.
#[derive(Debug, Default)]
pub struct QueueGauges {
    reported: HashSet<(String, String)>,
}

impl QueueGauges {
    const GAUGES: [&str; 4] = [
        "herald_queue_due_jobs",
        "herald_queue_scheduled_jobs",
        "herald_queue_running_jobs",
        "herald_queue_oldest_due_seconds",
    ];

    /// Measures the queue on `pool` and sets the gauges.
    pub async fn report(&mut self, pool: &sqlx::PgPool) {
        let depths = match crate::queue::maintenance::depth(pool).await {
            Ok(depths) => depths,
            Err(error) => {
                tracing::warn!(%error, "cannot measure queue depth");
                return;
            }
        };
        let now: HashSet<(String, String)> =
            depths.iter().map(|depth| (depth.queue.clone(), depth.kind.clone())).collect();
        for (queue, kind) in self.reported.difference(&now) {
            let labels = [("queue", queue.clone()), ("kind", kind.clone())];
            for gauge in Self::GAUGES {
                metrics::gauge!(gauge, &labels).set(0.0);
            }
        }
        self.reported = now;
        for depth in depths {
            let labels = [("queue", depth.queue), ("kind", depth.kind)];
            let values = [depth.due as f64, depth.scheduled as f64, depth.running as f64, depth.oldest_due_secs];
            for (gauge, value) in Self::GAUGES.into_iter().zip(values) {
                metrics::gauge!(gauge, &labels).set(value);
            }
        }
    }
}
