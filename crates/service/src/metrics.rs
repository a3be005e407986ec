//! The engine's figures: the Prometheus exposition of `GET /metrics` and the samples the
//! dashboard charts (`GET /api/live`).
//!
//! What happens once and is timed (requests, model batches, jobs) is observed here as it
//! happens, into histograms. What the engine counts anyway (its deployment's records, its
//! streams', its jobs', its environment cache's) is read from where it is counted when
//! scraped, so no count is kept twice. Process CPU and memory come from `/proc`
//! (`worker::usage`). Every metric is named and described in docs/observability.md; a test
//! there checks the two agree.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::Engine;

/// How many samples the dashboard's charts hold: 15 minutes, one a second.
pub const HISTORY: usize = 900;

/// Seconds between samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job_type: String,
    status: String,
}

type Labels = Vec<(String, String)>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 0.1 ms to about 60 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.5, 15,
    ))
}

fn records_histogram() -> Histogram {
    // 1 to 4096 records.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 13,
    ))
}

fn job_seconds_histogram() -> Histogram {
    // 0.1 s to about 3.6 hours.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.1, 2.0, 18,
    ))
}

/// Records of the jobs that finished, summed (a running job's are added when read).
#[derive(Default)]
struct JobTotals {
    read: AtomicU64,
    scored: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
}

/// The engine's metrics. One per engine ([`Engine::metrics`]); nothing global.
pub struct Metrics {
    http: HistogramFamily<HttpLabels>,
    batch_seconds: HistogramFamily<SourceLabels>,
    batch_records: HistogramFamily<SourceLabels>,
    job_seconds: HistogramFamily<JobLabels>,
    jobs_done: JobTotals,
    /// Scoring requests' latencies in the current second, for the live sample.
    scoring: LatencyWindow,
    live: Mutex<LiveState>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            http: Family::new_with_constructor(seconds_histogram),
            batch_seconds: Family::new_with_constructor(seconds_histogram),
            batch_records: Family::new_with_constructor(records_histogram),
            job_seconds: Family::new_with_constructor(job_seconds_histogram),
            jobs_done: JobTotals::default(),
            scoring: LatencyWindow::default(),
            live: Mutex::new(LiveState::default()),
        }
    }
}

/// Tells the metrics of the batches of one source (`deployment`, `job`).
pub struct BatchMetrics {
    seconds: Histogram,
    records: Histogram,
}

impl runtime_core::BatchObserver for BatchMetrics {
    fn scored(&self, records: usize, took: Duration) {
        self.seconds.observe(took.as_secs_f64());
        self.records.observe(records as f64);
    }
}

impl Metrics {
    /// A request answered: `route` is the route's pattern (`/api/jobs/{id}`), never the
    /// path asked, so the labels stay few.
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration, scoring: bool) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .observe(took.as_secs_f64());
        if scoring {
            self.scoring.observe(took);
        }
    }

    /// The observer of `source`'s model batches.
    pub fn batches(&self, source: &'static str) -> Arc<BatchMetrics> {
        let labels = SourceLabels { source };
        Arc::new(BatchMetrics {
            seconds: self.batch_seconds.get_or_create_owned(&labels),
            records: self.batch_records.get_or_create_owned(&labels),
        })
    }

    /// A job ended after `took`, with these final counts.
    pub fn job_finished(
        &self,
        job_type: &str,
        status: &str,
        took: Duration,
        progress: Option<jobs::JobProgress>,
    ) {
        self.job_seconds
            .get_or_create(&JobLabels {
                job_type: job_type.to_ascii_lowercase(),
                status: status.to_ascii_lowercase(),
            })
            .observe(took.as_secs_f64());
        if let Some(p) = progress {
            let t = &self.jobs_done;
            t.read.fetch_add(p.records_read, Ordering::Relaxed);
            t.scored.fetch_add(p.records_scored, Ordering::Relaxed);
            t.failed.fetch_add(p.records_failed, Ordering::Relaxed);
            t.rejected.fetch_add(p.records_rejected, Ordering::Relaxed);
        }
    }

    /// Records of every job so far: the finished ones' and the running one's.
    pub(crate) fn job_records(&self, running: Option<jobs::JobProgress>) -> jobs::JobProgress {
        let t = &self.jobs_done;
        let r = running.unwrap_or_default();
        jobs::JobProgress {
            records_read: t.read.load(Ordering::Relaxed) + r.records_read,
            records_scored: t.scored.load(Ordering::Relaxed) + r.records_scored,
            records_failed: t.failed.load(Ordering::Relaxed) + r.records_failed,
            records_rejected: t.rejected.load(Ordering::Relaxed) + r.records_rejected,
            fraction: None,
        }
    }

    /// The samples of the last 15 minutes, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.live
            .lock()
            .map(|l| l.samples.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest sample and the processes' usage it saw.
    pub fn latest(&self) -> (Option<Sample>, Resources) {
        self.live
            .lock()
            .map(|l| (l.samples.back().cloned(), l.resources.clone()))
            .unwrap_or_default()
    }

    /// Takes a sample: rates since the last one, the processes' usage now.
    pub fn sample(&self, e: &Engine) {
        let now_ms = crate::time::now_ms();
        let (deployment_id, scored, failed) = match e.deployment() {
            Some(d) => {
                let s = d.stats();
                (Some(d.id.clone()), s.records_scored, s.records_failed)
            }
            None => (None, 0, 0),
        };
        let jobs = e.queue.job_records();
        let (requests, p50, p99) = self.scoring.take();
        let usage = ProcessUsage::now();
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        let live = &mut *live;
        let seconds = live
            .last
            .as_ref()
            .map(|l| ((now_ms - l.at_ms) as f64 / 1000.0).max(0.001));
        let sample = match (&live.last, seconds) {
            (Some(last), Some(secs)) => {
                // A new deployment starts its counts from zero.
                let same = last.deployment_id == deployment_id;
                let (ls, lf) = if same {
                    (last.scored, last.failed)
                } else {
                    (0, 0)
                };
                let records = scored.saturating_sub(ls)
                    + jobs.records_scored.saturating_sub(last.jobs.records_scored);
                let failures = failed.saturating_sub(lf)
                    + jobs.records_failed.saturating_sub(last.jobs.records_failed);
                let resources = usage.against(&last.usage, secs);
                let sample = Sample {
                    at: now_ms,
                    records_per_second: round2((records + failures) as f64 / secs),
                    failures_per_second: round2(failures as f64 / secs),
                    requests_per_second: round2(requests as f64 / secs),
                    latency_p50_ms: p50,
                    latency_p99_ms: p99,
                    cpu_percent: resources.engine.cpu_percent,
                    resident_bytes: resources.engine.resident_bytes,
                };
                live.resources = resources;
                Some(sample)
            }
            _ => None,
        };
        if let Some(s) = sample {
            if live.samples.len() == HISTORY {
                live.samples.pop_front();
            }
            live.samples.push_back(s);
        }
        live.last = Some(Counted {
            at_ms: now_ms,
            deployment_id,
            scored,
            failed,
            jobs,
            usage,
        });
    }

    /// The exposition: the histograms as observed, and what the engine counts, read now.
    pub async fn render(&self, e: &Engine) -> String {
        let mut r = Registry::default();
        r.register(
            "engine_http_request_duration_seconds",
            "Requests answered by the engine's HTTP routes: time to the response's head, by route pattern, method and status (the histogram's count is the request count)",
            self.http.clone(),
        );
        r.register(
            "engine_model_batch_duration_seconds",
            "Time the model took over each batch it scored, by source (deployment, job)",
            self.batch_seconds.clone(),
        );
        r.register(
            "engine_model_batch_records",
            "Records in each batch the model scored, by source (deployment, job)",
            self.batch_records.clone(),
        );
        r.register(
            "engine_job_duration_seconds",
            "Batch jobs that ended: run time by job type and final status",
            self.job_seconds.clone(),
        );
        self.register_deployment(&mut r, e);
        self.register_jobs(&mut r, e).await;
        register_environments(&mut r, e);
        register_processes(&mut r, e);
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &r) {
            tracing::warn!("metrics could not be encoded: {err}");
        }
        out
    }

    fn register_deployment(&self, r: &mut Registry, e: &Engine) {
        let scored = counters();
        let failed = counters();
        let restarts = counters();
        let kills = counters();
        let queued = gauges();
        let workers = gauges();
        let ready = gauges();
        let records_in = counters();
        let records_out = counters();
        let rejected = counters();
        let stream_failed = counters();
        let lag = gauges();
        if let Some(d) = e.deployment() {
            let s = d.stats();
            let model = vec![("model".to_owned(), d.name.clone())];
            scored.get_or_create(&model).inc_by(s.records_scored);
            failed.get_or_create(&model).inc_by(s.records_failed);
            restarts.get_or_create(&model).inc_by(s.restarts);
            for (limit, n) in [("time", s.timeouts), ("memory", s.memory_kills)] {
                kills.get_or_create(&with(&model, "limit", limit)).inc_by(n);
            }
            queued.get_or_create(&model).set(s.queued as i64);
            workers.get_or_create(&model).set(d.workers as i64);
            ready.get_or_create(&model).set(i64::from(matches!(
                s.state,
                crate::deploy::WorkerState::Ready
            )));
            for (direction, tallies, family) in [
                ("in", &s.slots.inputs, &records_in),
                ("out", &s.slots.outputs, &records_out),
            ] {
                for (slot, c) in tallies {
                    let labels = stream_labels("rest", direction, &slot.to_string());
                    family.get_or_create(&labels).inc_by(c.records);
                    for (reason, n) in [
                        ("encoding", c.rejected_by_encoding),
                        ("schema", c.rejected_by_schema),
                        ("size", c.rejected_by_size),
                    ] {
                        rejected
                            .get_or_create(&with(&labels, "reason", reason))
                            .inc_by(n);
                    }
                }
            }
            for st in d.streams.list() {
                let slot = runtime_core::Slot(st.slot);
                let input = slot != runtime_core::Slot::ERRORS && slot.is_input();
                let slot = if slot == runtime_core::Slot::ERRORS {
                    "errors".to_owned()
                } else {
                    st.slot.to_string()
                };
                let direction = if input { "in" } else { "out" };
                let labels = stream_labels(&st.endpoint, direction, &slot);
                let v = st;
                // An input stream's records read; an output stream's records written.
                if input {
                    records_in.get_or_create(&labels).inc_by(v.records_in);
                } else {
                    records_out.get_or_create(&labels).inc_by(v.records_out);
                }
                rejected
                    .get_or_create(&with(&labels, "reason", "encoding_or_schema"))
                    .inc_by(v.records_rejected);
                stream_failed
                    .get_or_create(&labels)
                    .inc_by(v.records_failed);
                if let Some(n) = v.lag {
                    lag.get_or_create(&labels)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
        }
        r.register(
            "engine_model_records_scored",
            "Records the deployed model scored without an error (every source), since it was deployed",
            scored,
        );
        r.register(
            "engine_model_records_failed",
            "Records the deployed model failed on (it raised, or its worker broke a limit), since it was deployed",
            failed,
        );
        r.register(
            "engine_worker_restarts",
            "Workers of the deployed model replaced (died or killed), since it was deployed",
            restarts,
        );
        r.register(
            "engine_worker_limit_kills",
            "Workers of the deployed model killed for a record past a limit (time, memory)",
            kills,
        );
        r.register(
            "engine_deployment_queue_depth",
            "Requests waiting for a worker of the deployed model",
            queued,
        );
        r.register(
            "engine_deployment_workers",
            "Warm workers of the deployed model",
            workers,
        );
        r.register(
            "engine_deployment_ready",
            "1 while the deployed model's workers are ready, else 0",
            ready,
        );
        r.register(
            "engine_records_in",
            "Records taken by the deployed model's input slots, by source (rest, or a stream's endpoint) and slot",
            records_in,
        );
        r.register(
            "engine_records_out",
            "Records delivered by the deployed model's output slots (answered over REST, or written by a stream), by source and slot",
            records_out,
        );
        r.register(
            "engine_records_rejected",
            "Records rejected on the deployed model's slots, by source, slot, direction and reason (encoding, schema, size)",
            rejected,
        );
        r.register(
            "engine_stream_records_failed",
            "Records of an attached stream the model failed on (input), or lost with a sink that failed (output)",
            stream_failed,
        );
        r.register(
            "engine_stream_lag_records",
            "Records an attached input stream holds not acknowledged yet (a Kafka consumer group's lag over its partitions)",
            lag,
        );
    }

    async fn register_jobs(&self, r: &mut Registry, e: &Engine) {
        let jobs = gauges();
        match e.store().counts().await {
            Ok(counts) => {
                let mut by: BTreeMap<String, i64> = [
                    "created",
                    "waiting",
                    "running",
                    "complete",
                    "error",
                    "cancelled",
                ]
                .iter()
                .map(|s| ((*s).to_owned(), 0))
                .collect();
                for (status, n) in counts {
                    *by.entry(status.to_ascii_lowercase()).or_default() += n;
                }
                for (status, n) in by {
                    jobs.get_or_create(&vec![("status".to_owned(), status)])
                        .set(n);
                }
            }
            Err(err) => tracing::warn!("metrics: job counts could not be read: {err}"),
        }
        r.register(
            "engine_jobs",
            "Batch jobs in the engine's history, by status (waiting is the job queue's depth)",
            jobs,
        );
        let p = e.queue.job_records();
        for (name, help, n) in [
            (
                "engine_job_records_read",
                "Records batch jobs read from their inputs",
                p.records_read,
            ),
            (
                "engine_job_records_scored",
                "Records batch jobs' models took without an error",
                p.records_scored,
            ),
            (
                "engine_job_records_failed",
                "Records batch jobs' models failed on",
                p.records_failed,
            ),
            (
                "engine_job_records_rejected",
                "Records of batch jobs rejected by encoding, schema or size",
                p.records_rejected,
            ),
        ] {
            let c: Counter = Counter::default();
            c.inc_by(n);
            r.register(name, help, c);
        }
    }
}

fn counters() -> Family<Labels, Counter> {
    Family::default()
}

fn gauges() -> Family<Labels, Gauge> {
    Family::default()
}

fn with(labels: &Labels, key: &str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((key.to_owned(), value.to_owned()));
    l
}

fn stream_labels(source: &str, direction: &str, slot: &str) -> Labels {
    vec![
        ("source".to_owned(), source.to_owned()),
        ("direction".to_owned(), direction.to_owned()),
        ("slot".to_owned(), slot.to_owned()),
    ]
}

fn register_environments(r: &mut Registry, e: &Engine) {
    let c = e
        .deps
        .environments
        .as_ref()
        .map(|env| env.counts())
        .unwrap_or_default();
    for (name, help, n) in [
        (
            "engine_environment_builds",
            "Model environments built from requirements.txt",
            c.builds,
        ),
        (
            "engine_environment_build_failures",
            "Model environment builds that failed",
            c.build_failures,
        ),
        (
            "engine_environment_cache_hits",
            "Model environments found built in the cache",
            c.cache_hits,
        ),
    ] {
        let counter: Counter = Counter::default();
        counter.inc_by(n);
        r.register(name, help, counter);
    }
}

fn register_processes(r: &mut Registry, e: &Engine) {
    let usage = ProcessUsage::now();
    let cpu: Counter<f64, AtomicU64> = Counter::default();
    cpu.inc_by(usage.engine.cpu_seconds);
    r.register(
        "process_cpu_seconds",
        "User and system CPU time of the engine's process, in seconds",
        cpu,
    );
    let rss: Gauge = Gauge::default();
    rss.set(i64::try_from(usage.engine.resident_bytes).unwrap_or(i64::MAX));
    r.register(
        "process_resident_memory_bytes",
        "Resident memory of the engine's process, in bytes",
        rss,
    );
    let start: Gauge = Gauge::default();
    start.set(e.started_ms / 1000);
    r.register(
        "process_start_time_seconds",
        "When the engine opened, in seconds since the Unix epoch",
        start,
    );
    let worker_cpu: Family<Labels, Counter<f64, AtomicU64>> = Family::default();
    let worker_rss = gauges();
    for (child, u) in &usage.children {
        let labels = vec![
            ("pid".to_owned(), child.pid.to_string()),
            ("command".to_owned(), child.command.clone()),
        ];
        worker_cpu.get_or_create(&labels).inc_by(u.cpu_seconds);
        worker_rss
            .get_or_create(&labels)
            .set(i64::try_from(u.resident_bytes).unwrap_or(i64::MAX));
    }
    r.register(
        "engine_worker_cpu_seconds",
        "CPU time of each process the engine runs (model workers, environment builds, spark-submit), by pid and command",
        worker_cpu,
    );
    r.register(
        "engine_worker_resident_memory_bytes",
        "Resident memory of each process the engine runs, by pid and command",
        worker_rss,
    );
    let info = gauges();
    info.get_or_create(&vec![
        ("name".to_owned(), e.config.name.clone()),
        ("release".to_owned(), e.deps.release.clone()),
        ("state".to_owned(), e.state().as_str().to_owned()),
    ])
    .set(1);
    r.register(
        "engine_info",
        "Always 1: the engine's name, release and state as labels",
        info,
    );
}

/// One point of the dashboard's charts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When, in ms since the Unix epoch.
    pub at: i64,
    /// Records scored or failed per second, by the deployed model and by jobs.
    pub records_per_second: f64,
    /// Of them, records failed per second.
    pub failures_per_second: f64,
    /// Scoring requests answered per second (the roundtrip routes).
    pub requests_per_second: f64,
    /// The median and 99th percentile of those requests' latency, when there were any.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// The engine process's CPU use (100 is one core) and resident memory.
    pub cpu_percent: f64,
    pub resident_bytes: u64,
}

/// A process's CPU use over the last sample and its memory now.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessView {
    /// Absent for the engine itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `python worker`, `R worker`, or the program's name; absent for the engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// 100 is one core.
    pub cpu_percent: f64,
    pub resident_bytes: u64,
}

/// The engine's process and those it runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub engine: ProcessView,
    pub workers: Vec<ProcessView>,
}

/// The processes' CPU time and memory at one instant.
#[derive(Clone, Debug, Default)]
struct ProcessUsage {
    engine: worker::usage::Usage,
    children: Vec<(worker::usage::Child, worker::usage::Usage)>,
}

impl ProcessUsage {
    fn now() -> ProcessUsage {
        let me = std::process::id();
        ProcessUsage {
            engine: worker::usage::usage(me).unwrap_or_default(),
            children: worker::usage::children(me)
                .into_iter()
                .filter_map(|c| Some((worker::usage::usage(c.pid)?, c)))
                .map(|(u, c)| (c, u))
                .collect(),
        }
    }

    /// CPU use since `before`, `secs` ago.
    fn against(&self, before: &ProcessUsage, secs: f64) -> Resources {
        let percent = |now: f64, then: f64| round2(((now - then).max(0.0) / secs) * 100.0);
        Resources {
            engine: ProcessView {
                pid: None,
                command: None,
                cpu_percent: percent(self.engine.cpu_seconds, before.engine.cpu_seconds),
                resident_bytes: self.engine.resident_bytes,
            },
            workers: self
                .children
                .iter()
                .map(|(c, u)| {
                    let then = before
                        .children
                        .iter()
                        .find(|(b, _)| b.pid == c.pid)
                        .map_or(u.cpu_seconds, |(_, b)| b.cpu_seconds);
                    ProcessView {
                        pid: Some(c.pid),
                        command: Some(c.command.clone()),
                        cpu_percent: percent(u.cpu_seconds, then),
                        resident_bytes: u.resident_bytes,
                    }
                })
                .collect(),
        }
    }
}

/// What the previous sample counted, to take rates against.
struct Counted {
    at_ms: i64,
    deployment_id: Option<String>,
    scored: u64,
    failed: u64,
    jobs: jobs::JobProgress,
    usage: ProcessUsage,
}

#[derive(Default)]
struct LiveState {
    samples: VecDeque<Sample>,
    resources: Resources,
    last: Option<Counted>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Latencies of one second, counted in buckets 10% apart from 10 us to about 3 minutes:
/// percentiles within 10%, for the live chart.
struct LatencyWindow {
    buckets: Vec<AtomicU64>,
}

const LATENCY_BUCKETS: usize = 176;
const LATENCY_FIRST_US: f64 = 10.0;
const LATENCY_FACTOR: f64 = 1.1;

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            buckets: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyWindow {
    fn observe(&self, took: Duration) {
        let us = took.as_secs_f64() * 1e6;
        let i = if us <= LATENCY_FIRST_US {
            0
        } else {
            ((us / LATENCY_FIRST_US).ln() / LATENCY_FACTOR.ln()).ceil() as usize
        };
        self.buckets[i.min(LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The count since the last call, and its median and 99th percentile in ms.
    fn take(&self) -> (u64, Option<f64>, Option<f64>) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return (0, None, None);
        }
        let quantile = |q: f64| {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    let upper_us = LATENCY_FIRST_US * LATENCY_FACTOR.powi(i as i32);
                    return Some((upper_us / 10.0).round() / 100.0);
                }
            }
            None
        };
        (total, quantile(0.5), quantile(0.99))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_within_a_bucket() {
        let w = LatencyWindow::default();
        for i in 1..=100u64 {
            w.observe(Duration::from_micros(i * 100));
        }
        let (n, p50, p99) = w.take();
        assert_eq!(n, 100);
        let (p50, p99) = (p50.unwrap(), p99.unwrap());
        assert!((5.0..=5.6).contains(&p50), "{p50}");
        assert!((9.9..=10.9).contains(&p99), "{p99}");
        assert_eq!(w.take(), (0, None, None));
        w.observe(Duration::from_secs(10_000));
        assert_eq!(w.take().0, 1);
    }

    #[test]
    fn batches_and_jobs_are_observed() {
        let m = Metrics::default();
        use runtime_core::BatchObserver;
        m.batches("job").scored(10, Duration::from_millis(3));
        m.job_finished(
            "BATCH_JOB",
            "COMPLETE",
            Duration::from_secs(2),
            Some(jobs::JobProgress {
                records_read: 10,
                records_scored: 9,
                records_failed: 1,
                ..Default::default()
            }),
        );
        let p = m.job_records(Some(jobs::JobProgress {
            records_scored: 5,
            ..Default::default()
        }));
        assert_eq!(
            (p.records_read, p.records_scored, p.records_failed),
            (10, 14, 1)
        );
        let mut r = Registry::default();
        r.register("b", "b", m.batch_records.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(out.contains("b_count{source=\"job\"} 1"), "{out}");
        assert!(out.contains("b_sum{source=\"job\"} 10.0"), "{out}");
    }
}
