//! Prometheus metrics (`/metrics` on the metrics listener, with `/healthz` and `/readyz`).
//! Label sets are bounded: outcomes, runners, stages and error kinds — never commit ids or URLs.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    outcome: String,
    runner: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JoinLabels {
    /// `in-flight` (waited for a running run) or `recorded` (answered from the ledger).
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TestLabels {
    runner: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    /// `delivered` or `failed` (after every retry).
    result: &'static str,
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    stage_seconds: Family<StageLabels, Histogram>,
    in_flight: Gauge,
    push_attempts: Counter,
    push_rejections: Counter,
    duplicate_joins: Family<JoinLabels, Counter>,
    runs_refused: Counter,
    tests: Family<TestLabels, Counter>,
    notifications: Family<NotifyLabels, Counter>,
    notification_retries: Counter,
    policy_permissive: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every phasegate metric.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("phasegate");
        let runs = Family::<RunLabels, Counter>::default();
        // Seconds: from a 10 ms promotion to a 30 min test Job.
        let stage_seconds = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
            ])
        });
        let in_flight = Gauge::default();
        let push_attempts = Counter::default();
        let push_rejections = Counter::default();
        let duplicate_joins = Family::<JoinLabels, Counter>::default();
        let tests = Family::<TestLabels, Counter>::default();
        registry.register(
            "runs",
            "Runs finished, by outcome (or error kind) and runner",
            runs.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "Duration of run stages: queue, test, promote, total",
            stage_seconds.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs queued or running",
            in_flight.clone(),
        );
        registry.register(
            "push_attempts",
            "Pushes of promotion commits tried",
            push_attempts.clone(),
        );
        registry.register(
            "push_rejections",
            "Pushes rejected because the branch moved",
            push_rejections.clone(),
        );
        registry.register(
            "duplicate_joins",
            "Duplicate events answered without a new run",
            duplicate_joins.clone(),
        );
        let runs_refused = Counter::default();
        registry.register(
            "runs_refused",
            "Runs refused because maxQueuedRuns runs already waited for a slot",
            runs_refused.clone(),
        );
        registry.register("tests", "Test runs by runner and result", tests.clone());
        let notifications = Family::<NotifyLabels, Counter>::default();
        let notification_retries = Counter::default();
        registry.register(
            "notifications",
            "Run-end webhooks delivered, failed after every retry, or dropped (too many in flight)",
            notifications.clone(),
        );
        registry.register(
            "notification_retries",
            "Run-end webhook posts tried again after a failure",
            notification_retries.clone(),
        );
        let policy_permissive = Gauge::default();
        registry.register(
            "policy_permissive",
            "1 while the server runs with policy.permissive (empty lists allow everything)",
            policy_permissive.clone(),
        );
        Metrics {
            registry,
            runs,
            stage_seconds,
            in_flight,
            push_attempts,
            push_rejections,
            duplicate_joins,
            runs_refused,
            tests,
            notifications,
            notification_retries,
            policy_permissive,
            ready: AtomicBool::new(false),
        }
    }

    /// A run finished with `outcome` (an outcome name, or `error-<kind>`).
    pub(crate) fn run_finished(&self, outcome: String, runner: &'static str) {
        self.runs
            .get_or_create(&RunLabels { outcome, runner })
            .inc();
    }

    /// A stage took `seconds`.
    pub(crate) fn stage(&self, stage: &'static str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabels { stage })
            .observe(seconds);
    }

    /// A run was queued (`+1`) or ended (`-1`).
    pub(crate) fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// A promotion needed `attempts` pushes.
    pub(crate) fn pushed(&self, attempts: u32) {
        self.push_attempts.inc_by(u64::from(attempts));
        self.push_rejections
            .inc_by(u64::from(attempts.saturating_sub(1)));
    }

    /// A duplicate was answered without a new run.
    pub(crate) fn duplicate(&self, in_flight: bool) {
        let kind = if in_flight { "in-flight" } else { "recorded" };
        self.duplicate_joins
            .get_or_create(&JoinLabels { kind })
            .inc();
    }

    /// A run was refused: the queue was full.
    pub(crate) fn refused(&self) {
        self.runs_refused.inc();
    }

    /// A test ran.
    pub(crate) fn tested(&self, runner: &'static str, passed: bool) {
        let result = if passed { "passed" } else { "failed" };
        self.tests
            .get_or_create(&TestLabels { runner, result })
            .inc();
    }

    /// A run-end webhook was delivered, or failed after every retry.
    pub(crate) fn notified(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "failed" };
        self.notifications
            .get_or_create(&NotifyLabels { result })
            .inc();
    }

    /// A run-end webhook post is not made: too many are in flight.
    pub(crate) fn notification_dropped(&self) {
        self.notifications
            .get_or_create(&NotifyLabels { result: "dropped" })
            .inc();
    }

    /// A run-end webhook post is tried again.
    pub(crate) fn notification_retried(&self) {
        self.notification_retries.inc();
    }

    /// Records whether the server runs with `policy.permissive`, so alerts can catch it.
    pub(crate) fn set_permissive(&self, permissive: bool) {
        self.policy_permissive.set(i64::from(permissive));
    }

    /// Marks the server ready (serving gRPC) or not.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The metrics in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .with_state(metrics);
    crate::http::serve(listener, router, shutdown).await
}
