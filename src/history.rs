//! Run history: every run's stages, test output and result, kept bounded in memory and
//! appended to `history.jsonl` in the cache directory, so a restarted server still lists past
//! runs and answers duplicates of past successes. Watchers follow a run as it happens, starting
//! with the output so far ([`live`]); whoever wants every ending (notifications) subscribes with
//! [`History::ended`].

mod live;
mod record;
mod store;

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::Mutex,
};

use tokio::sync::broadcast;
use tracing::warn;

use crate::{
    diff::Edit,
    outcome::{RunReport, Shared},
};
use live::LiveLog;
pub(crate) use record::StageMark;
pub use record::{RunRecord, Stage, now_unix_ms};

/// Runs kept in memory and on disk; older ones are forgotten first.
const KEPT_RUNS: usize = 1000;
/// Events buffered per watcher: a watcher slower than this skips log lines, never the end.
const WATCH_BUFFER: usize = 1024;
/// Endings buffered for the subscribers of [`History::ended`] (notifications).
const ENDED_BUFFER: usize = 256;

/// A change of a run, for watchers.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Stage(Stage),
    Log(String),
    Finished(Box<RunRecord>),
}

/// Filters of [`History::list`]; empty fields match everything.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub repo: String,
    pub phase: String,
    pub outcome: String,
    /// Text in the values path (so in the app's name), any case.
    pub text: String,
    /// The version under test, exactly.
    pub version: String,
    /// The start of the tested commit or of the promotion commit.
    pub commit: String,
    /// The start of the run id.
    pub run: String,
    /// Matching runs to skip (paging).
    pub offset: usize,
    pub limit: usize,
}

impl RunFilter {
    /// True when `r` passes every filter that is set.
    fn keeps(&self, r: &RunRecord) -> bool {
        let starts = |have: &str, want: &str| {
            have.get(..want.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(want))
        };
        (self.repo.is_empty() || r.repo == self.repo)
            && (self.phase.is_empty()
                || r.source_phase == self.phase
                || r.target_phase == self.phase)
            && (self.outcome.is_empty() || r.outcome() == self.outcome)
            && (self.text.is_empty() || r.path.to_lowercase().contains(&self.text.to_lowercase()))
            && (self.version.is_empty() || r.version() == Some(self.version.as_str()))
            && (self.commit.is_empty()
                || starts(&r.source_commit, &self.commit)
                || r.report
                    .as_ref()
                    .and_then(|x| x.commit.as_deref())
                    .is_some_and(|c| starts(c, &self.commit)))
            && (self.run.is_empty() || starts(&r.id, &self.run))
    }
}

/// A run as a watcher first sees it: its record, the output so far (numbered from `first`), and
/// while it is not finished, a receiver of what follows.
pub struct Watch {
    pub run: RunRecord,
    pub first: usize,
    pub lines: Vec<String>,
    pub events: Option<broadcast::Receiver<RunEvent>>,
}

#[derive(Default)]
struct Inner {
    order: VecDeque<String>,
    runs: HashMap<String, RunRecord>,
    watchers: HashMap<String, broadcast::Sender<RunEvent>>,
    live: HashMap<String, LiveLog>,
}

/// The run history.
pub struct History {
    inner: Mutex<Inner>,
    file: Option<PathBuf>,
    /// Lines in the file; its lock serialises appending and compacting, so no line is lost
    /// to a rename.
    file_lines: Mutex<usize>,
    ended: broadcast::Sender<RunRecord>,
}

impl Default for History {
    fn default() -> Self {
        History {
            inner: Mutex::default(),
            file: None,
            file_lines: Mutex::new(0),
            ended: broadcast::channel(ENDED_BUFFER).0,
        }
    }
}

impl History {
    /// A history persisted in `dir/history.jsonl` (or only in memory without a directory).
    /// A truncated or corrupt file is recovered from: bad lines are skipped with a warning.
    pub fn open(dir: Option<&Path>) -> History {
        let file = dir.map(|d| d.join("history.jsonl"));
        let mut history = History {
            file: file.clone(),
            ..History::default()
        };
        if let Some(file) = &file {
            let lines = history.load(file);
            *history
                .file_lines
                .get_mut()
                .unwrap_or_else(|p| p.into_inner()) = lines;
        }
        history
    }

    /// Loads the runs of `file`, rewriting it if it holds more or other lines than those
    /// kept; returns the lines it holds then.
    fn load(&self, file: &Path) -> usize {
        let mut inner = self.lock();
        let Some(found) = store::read(file, |record| insert(&mut inner, record)) else {
            return 0;
        };
        if found.skipped > 0 {
            warn!(file = %file.display(), skipped = found.skipped, "ignored corrupt lines of the run history");
        }
        // Rewrite what was kept, so the file stays bounded and loses its bad lines (a file
        // with one good line per kept run, ending in a newline, is left as it is).
        let kept = kept(&inner);
        if kept.len() == found.lines && !found.partial {
            return found.lines;
        }
        match store::rewrite(file, &kept) {
            Ok(()) => kept.len(),
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot rewrite the run history");
                found.lines
            }
        }
    }

    /// Records a new run.
    pub fn start(&self, record: RunRecord) {
        let mut inner = self.lock();
        let (tx, _) = broadcast::channel(WATCH_BUFFER);
        inner.watchers.insert(record.id.clone(), tx);
        inner.live.insert(record.id.clone(), LiveLog::default());
        insert(&mut inner, record);
    }

    /// A run entered `stage`.
    pub fn stage(&self, id: &str, stage: Stage) {
        let mut inner = self.lock();
        if let Some(run) = inner.runs.get_mut(id) {
            run.stage = stage;
            run.timeline.push(StageMark {
                stage,
                at_unix_ms: now_unix_ms(),
            });
        }
        if let Some(tx) = inner.watchers.get(id) {
            let _ = tx.send(RunEvent::Stage(stage));
        }
    }

    /// The version a run tests, and the target's before it.
    pub fn under_test(&self, id: &str, version: &str, previous: &str) {
        if let Some(run) = self.lock().runs.get_mut(id) {
            run.version = Some(version.to_string());
            run.previous = Some(previous.to_string());
        }
    }

    /// What the Argo CD gate decided of a run's source phase (`Healthy`, or why not).
    pub fn gated(&self, id: &str, health: &str) {
        if let Some(run) = self.lock().runs.get_mut(id) {
            run.health = Some(health.to_string());
        }
    }

    /// A line of a run's test output.
    pub fn log(&self, id: &str, line: &str) {
        let mut inner = self.lock();
        // Kept and sent under one lock: a watcher attaching now sees each line exactly once.
        if let Some(live) = inner.live.get_mut(id) {
            live.push(line);
        }
        if let Some(tx) = inner.watchers.get(id) {
            let _ = tx.send(RunEvent::Log(line.to_string()));
        }
    }

    /// The changed lines of a run's promotion commit.
    pub fn edited(&self, id: &str, edit: Edit) {
        if let Some(run) = self.lock().runs.get_mut(id) {
            run.edit = Some(edit);
        }
    }

    /// Every run that ends from now on (a slow subscriber misses the oldest, with a gap
    /// reported as `Lagged`).
    pub fn ended(&self) -> broadcast::Receiver<RunRecord> {
        self.ended.subscribe()
    }

    /// A run ended: record, persist, and tell the watchers.
    pub fn finish(&self, id: &str, result: &Shared) {
        let mut inner = self.lock();
        let Some(run) = inner.runs.get_mut(id) else {
            return;
        };
        run.stage = Stage::Done;
        run.timeline.push(StageMark {
            stage: Stage::Done,
            at_unix_ms: now_unix_ms(),
        });
        match result {
            Ok(report) => run.report = Some((**report).clone()),
            Err(e) => run.error = Some(e.to_string()),
        }
        let record = run.clone();
        if let Some(tx) = inner.watchers.remove(id) {
            let _ = tx.send(RunEvent::Finished(Box::new(record.clone())));
        }
        inner.live.remove(id);
        drop(inner);
        let _ = self.ended.send(record.clone());
        if let Some(file) = &self.file {
            self.persist(file, &record);
        }
    }

    /// Appends a finished run to the file; once the file holds twice the runs kept, rewrites
    /// it with those kept (about once per [`KEPT_RUNS`] runs, a write of the size the file
    /// has after start-up), so it never grows far beyond its record limit while serving.
    fn persist(&self, file: &Path, record: &RunRecord) {
        let mut lines = self.file_lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = store::append(file, record) {
            warn!(file = %file.display(), error = %e, "cannot persist the run history");
            return;
        }
        *lines += 1;
        if *lines < 2 * KEPT_RUNS {
            return;
        }
        // A copy, so the history's lock (the console, the live logs) is not held while the
        // file is written.
        let kept: Vec<RunRecord> = kept(&self.lock()).into_iter().cloned().collect();
        match store::rewrite(file, &kept.iter().collect::<Vec<_>>()) {
            Ok(()) => *lines = kept.len(),
            Err(e) => warn!(file = %file.display(), error = %e, "cannot compact the run history"),
        }
    }

    /// Recent runs, newest first.
    pub fn list(&self, filter: &RunFilter) -> Vec<RunRecord> {
        self.find(filter).1
    }

    /// How many runs match `filter`, and its page of them (newest first).
    pub fn find(&self, filter: &RunFilter) -> (usize, Vec<RunRecord>) {
        let inner = self.lock();
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let mut total = 0;
        let mut page = Vec::new();
        for r in inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.runs.get(id))
            .filter(|r| filter.keeps(r))
        {
            if total >= filter.offset && page.len() < limit {
                page.push(r.clone());
            }
            total += 1;
        }
        (total, page)
    }

    /// One run.
    pub fn get(&self, id: &str) -> Option<RunRecord> {
        self.lock().runs.get(id).cloned()
    }

    /// A run with its output from line `from` on and, while it is not finished, a receiver of
    /// its next events (taken under the same lock: no line is missed or seen twice).
    pub fn watch(&self, id: &str, from: usize) -> Option<Watch> {
        let inner = self.lock();
        let run = inner.runs.get(id)?.clone();
        let events = inner.watchers.get(id).map(broadcast::Sender::subscribe);
        let (first, lines) = inner
            .live
            .get(id)
            .map_or((from, Vec::new()), |l| l.since(from));
        Some(Watch {
            run,
            first,
            lines,
            events,
        })
    }

    /// Runs `f` over every run kept, newest first, under the history's lock: for the console's
    /// pages that need a few fields of every run, without copying 1,000 records and their test
    /// output (runs wait for the lock meanwhile: `f` must be quick and must not block).
    pub fn scan<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &RunRecord>) -> T) -> T {
        let inner = self.lock();
        let mut runs = inner.order.iter().rev().filter_map(|id| inner.runs.get(id));
        f(&mut runs)
    }

    /// Every run kept, newest first.
    pub fn all(&self) -> Vec<RunRecord> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.runs.get(id))
            .cloned()
            .collect()
    }

    /// Past successes with their idempotency keys, oldest first (to seed the run ledger).
    pub fn successes(&self) -> Vec<(String, RunReport)> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|id| inner.runs.get(id))
            .filter_map(|r| {
                r.report
                    .clone()
                    .filter(RunReport::succeeded)
                    .map(|rep| (r.key.clone(), rep))
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The finished runs kept, oldest first: what the file holds after a rewrite.
fn kept(inner: &Inner) -> Vec<&RunRecord> {
    inner
        .order
        .iter()
        .filter_map(|id| inner.runs.get(id))
        .filter(|r| r.stage == Stage::Done)
        .collect()
}

fn insert(inner: &mut Inner, record: RunRecord) {
    if inner
        .runs
        .insert(record.id.clone(), record.clone())
        .is_none()
    {
        inner.order.push_back(record.id);
    }
    while inner.order.len() > KEPT_RUNS {
        if let Some(old) = inner.order.pop_front() {
            inner.runs.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests;
