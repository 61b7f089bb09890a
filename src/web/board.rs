//! The phase board: per pipeline seen in the run history (repo, branch, values path template),
//! named by its app and grouped by repository, the version in each phase at the branch head
//! (read from the git cache, at most every few seconds, with the keys of the last run of each
//! transition that read a version: one run with a mistyped key blanks nothing), and between
//! two phases the last run of that transition.

use std::{
    collections::HashMap,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{naming::app_name, view};
use crate::{history::RunRecord, outcome::RunReport, runner::TestReport, spec::SourceRef};

/// The git cache is read at most this often per phase: a board reloaded by many people costs
/// nothing, and a promotion shows within seconds.
const VERSION_TTL: Duration = Duration::from_secs(3);

/// Where a version is read: (repo, branch, values file, key).
type Place = (String, String, String, String);

/// Versions read from the git cache, each kept for [`VERSION_TTL`].
#[derive(Default)]
pub(super) struct Versions {
    read: Mutex<HashMap<Place, (Instant, Option<String>)>>,
}

impl Versions {
    /// The values of `places` at their cached branch heads (blocking: git2): those read less
    /// than [`VERSION_TTL`] ago from memory, the others with one opening of each clone.
    fn get(&self, cache_dir: &Path, places: Vec<Place>) -> HashMap<Place, Option<String>> {
        let mut found = HashMap::new();
        let mut stale: HashMap<(&str, &str), Vec<&Place>> = HashMap::new();
        {
            let read = self.lock();
            for place in &places {
                match read.get(place).filter(|(at, _)| at.elapsed() < VERSION_TTL) {
                    Some((_, v)) => {
                        found.insert(place.clone(), v.clone());
                    }
                    None => stale.entry((&place.0, &place.1)).or_default().push(place),
                }
            }
        }
        for ((repo, branch), places) in stale {
            let wanted: Vec<(&str, &str)> = places
                .iter()
                .map(|(_, _, file, key)| (file.as_str(), key.as_str()))
                .collect();
            let values = crate::git::values_at_branch(cache_dir, repo, branch, &wanted)
                .unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "cannot read versions for the console");
                    vec![None; wanted.len()]
                });
            let now = Instant::now();
            let mut read = self.lock();
            for (place, value) in places.into_iter().zip(values) {
                read.insert(place.clone(), (now, value.clone()));
                found.insert(place.clone(), value);
            }
        }
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Place, (Instant, Option<String>)>> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A repository's pipelines, shown under one heading.
pub(super) struct Group {
    pub repo: String,
    pub rows: Vec<Row>,
}

/// One pipeline's row.
pub(super) struct Row {
    pub app: String,
    pub branch: String,
    pub path: String,
    pub phases: Vec<PhaseCell>,
}

/// A phase with its version (or why there is none), and the transition that leads into it
/// (none for the first).
pub(super) struct PhaseCell {
    pub name: String,
    pub version: Option<String>,
    /// Why no version is shown: a few words, and the whole reason.
    pub missing: Option<(&'static str, String)>,
    /// Argo CD's health of the phase as the last gated run out of it saw it: `Healthy`, or
    /// `not ready` with why.
    pub health: Option<Health>,
    pub before: Option<Transition>,
}

/// A phase's health as the Argo CD gate decided it.
pub(super) struct Health {
    pub healthy: bool,
    pub shown: &'static str,
    pub why: String,
}

impl Health {
    fn of(decided: &str) -> Health {
        let healthy = decided == "Healthy";
        Health {
            healthy,
            shown: if healthy { "Healthy" } else { "not ready" },
            why: decided.to_string(),
        }
    }
}

/// The last run of a transition.
pub(super) struct Transition {
    pub run: String,
    pub outcome: String,
    pub class: &'static str,
    /// `previous → version` of that run (the version that failed, for a failed run).
    pub versions: String,
    pub ago: String,
    pub when: String,
    /// Why it failed, in one line.
    pub reason: Option<String>,
    /// The source phase holds a version the target does not: it waits or failed.
    pub pending: bool,
}

/// A pipeline of the history.
struct Pipeline<'a> {
    repo: &'a str,
    branch: &'a str,
    path: &'a str,
    app: String,
    phases: Vec<&'a str>,
    /// The newest run of each (source, target).
    last: HashMap<(&'a str, &'a str), &'a RunRecord>,
    /// The newest run of each (source, target) that read a version: its keys and files work.
    good: HashMap<(&'a str, &'a str), &'a RunRecord>,
    /// Per phase, the newest run out of it that the Argo CD gate decided.
    gated: HashMap<&'a str, &'a RunRecord>,
}

/// The pipelines of `runs` (newest first), by repository, app, branch and path: a pipeline's
/// place on the board never depends on how its last run went.
fn pipelines(runs: &[RunRecord]) -> Vec<Pipeline<'_>> {
    let mut found: HashMap<(&str, &str, &str), Pipeline> = HashMap::new();
    for r in runs {
        let p = found
            .entry((&r.repo, &r.branch, &r.path))
            .or_insert_with(|| Pipeline {
                repo: &r.repo,
                branch: &r.branch,
                path: &r.path,
                app: app_name(&r.path),
                phases: Vec::new(),
                last: HashMap::new(),
                good: HashMap::new(),
                gated: HashMap::new(),
            });
        let transition = (r.source_phase.as_str(), r.target_phase.as_str());
        p.last.entry(transition).or_insert(r);
        if read_a_version(r) {
            p.good.entry(transition).or_insert(r);
        }
        if r.health.is_some() {
            p.gated.entry(&r.source_phase).or_insert(r);
        }
    }
    let mut found: Vec<Pipeline> = found.into_values().collect();
    for p in &mut found {
        p.phases = order(p.last.keys().copied().collect());
    }
    found.sort_by(|a, b| {
        (a.repo, &a.app, a.branch, a.path).cmp(&(b.repo, &b.app, b.branch, b.path))
    });
    found
}

/// What the board needs of a run: the record without its edit, timeline and test output but
/// the output's last line (the failing reason's): copied under the history's lock, 1,000 of
/// them, so no 4 KiB log is copied for nothing.
pub(super) fn slim(r: &RunRecord) -> RunRecord {
    RunRecord {
        id: r.id.clone(),
        key: String::new(),
        repo: r.repo.clone(),
        branch: r.branch.clone(),
        path: r.path.clone(),
        keys: r.keys.iter().take(1).cloned().collect(),
        source_phase: r.source_phase.clone(),
        target_phase: r.target_phase.clone(),
        source_commit: String::new(),
        stage: r.stage,
        version: r.version.clone(),
        previous: r.previous.clone(),
        report: r.report.as_ref().map(|x| RunReport {
            run: String::new(),
            outcome: x.outcome,
            version: x.version.clone(),
            previous: x.previous.clone(),
            commit: None,
            signature: None,
            source: SourceRef {
                phase: x.source.phase.clone(),
                commit: String::new(),
                path: x.source.path.clone(),
            },
            target: x.target.clone(),
            test: x.test.as_ref().map(|t| TestReport {
                runner: String::new(),
                passed: t.passed,
                attempts: t.attempts,
                duration_ms: t.duration_ms,
                log: t
                    .log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .to_string(),
            }),
            pull_request: None,
            duration_ms: x.duration_ms,
        }),
        error: r
            .error
            .as_ref()
            .map(|e| e.lines().next().unwrap_or_default().to_string()),
        started_unix_ms: r.started_unix_ms,
        edit: None,
        timeline: Vec::new(),
        health: r.health.clone(),
    }
}

/// True when the run read the version under test with its keys (so they name a scalar).
fn read_a_version(run: &RunRecord) -> bool {
    run.version().is_some() && !run.keys.is_empty()
}

/// Phases in promotion order: each transition's source before its target (ties by name).
fn order<'a>(mut edges: Vec<(&'a str, &'a str)>) -> Vec<&'a str> {
    edges.sort_unstable();
    let mut phases: Vec<&str> = edges.iter().flat_map(|&(a, b)| [a, b]).collect();
    phases.sort_unstable();
    phases.dedup();
    let mut ordered = Vec::new();
    while !phases.is_empty() {
        // A phase no remaining transition leads into; any one if the transitions loop.
        let next = phases
            .iter()
            .position(|p| {
                !edges
                    .iter()
                    .any(|&(a, b)| b == *p && phases.contains(&a) && a != *p)
            })
            .unwrap_or(0);
        ordered.push(phases.remove(next));
    }
    ordered
}

/// The board's filter: a repository (exact) and text found in the app or the path.
#[derive(Debug, Default)]
pub(super) struct Filter {
    pub repo: String,
    pub text: String,
}

impl Filter {
    fn keeps(&self, p: &Pipeline) -> bool {
        let text = self.text.to_lowercase();
        (self.repo.is_empty() || p.repo == self.repo)
            && (text.is_empty()
                || p.app.to_lowercase().contains(&text)
                || p.path.to_lowercase().contains(&text))
    }
}

/// One page of the board.
pub(super) struct Board {
    pub groups: Vec<Group>,
    /// Every repository with a pipeline, as (value, shown), for the filter.
    pub repos: Vec<(String, String)>,
    /// Pipelines in the history, and those the filter keeps.
    pub total: usize,
    pub matching: usize,
    /// The first and last pipeline shown (1-based), 0 when none.
    pub from: usize,
    pub to: usize,
    pub more: bool,
}

/// Pipelines per page: a page of the board stays small for a phone and a first paint.
pub(super) const PAGE_SIZE: usize = 50;

/// Page `page` (1-based) of the board for `runs` (newest first) under `filter`, reading
/// versions through `versions` (blocking: git2), with times relative to `now_ms`.
pub(super) fn board(
    runs: &[RunRecord],
    filter: &Filter,
    page: usize,
    cache_dir: &Path,
    versions: &Versions,
    now_ms: i64,
) -> Board {
    let all = pipelines(runs);
    let mut repos: Vec<(String, String)> = all
        .iter()
        .map(|p| (p.repo.to_string(), view::shown_repo(p.repo)))
        .collect();
    repos.dedup();
    let kept: Vec<&Pipeline> = all.iter().filter(|p| filter.keeps(p)).collect();
    let skip = page.saturating_sub(1).saturating_mul(PAGE_SIZE);
    let shown: Vec<&Pipeline> = kept.iter().skip(skip).take(PAGE_SIZE).copied().collect();
    let places: Vec<Place> = shown
        .iter()
        .flat_map(|p| p.phases.iter().filter_map(|phase| place(p, phase).ok()))
        .collect();
    let read = versions.get(cache_dir, places);
    let mut groups: Vec<Group> = Vec::new();
    for p in &shown {
        let row = row(p, &read, now_ms);
        match groups.last_mut() {
            Some(g) if g.repo == view::shown_repo(p.repo) => g.rows.push(row),
            _ => groups.push(Group {
                repo: view::shown_repo(p.repo),
                rows: vec![row],
            }),
        }
    }
    Board {
        groups,
        repos,
        total: all.len(),
        matching: kept.len(),
        from: if shown.is_empty() { 0 } else { skip + 1 },
        to: skip + shown.len(),
        more: kept.len() > skip + shown.len(),
    }
}

fn row(p: &Pipeline, read: &HashMap<Place, Option<String>>, now_ms: i64) -> Row {
    let mut previous: Option<(&str, Option<String>)> = None;
    let phases = p
        .phases
        .iter()
        .map(|&phase| {
            let (version, missing) = match place(p, phase) {
                Ok(at) => match read.get(&at).cloned().flatten() {
                    Some(v) => (Some(v), None),
                    None => (
                        None,
                        Some((
                            "not found",
                            format!(
                                "`{}` is not in {} on {}, as phasegate last fetched it",
                                at.3, at.2, at.1
                            ),
                        )),
                    ),
                },
                Err(why) => (None, Some(("not read yet", why))),
            };
            let before = previous.as_ref().and_then(|(from, there)| {
                let run = p.last.get(&(*from, phase))?;
                Some(Transition {
                    run: run.id.clone(),
                    outcome: view::status(run),
                    class: view::class(run),
                    versions: view::versions(run),
                    ago: view::ago(run.started_unix_ms, now_ms),
                    when: view::when(run.started_unix_ms),
                    reason: view::reason(run),
                    pending: there.is_some() && *there != version,
                })
            });
            previous = Some((phase, version.clone()));
            PhaseCell {
                name: phase.to_string(),
                version,
                missing,
                health: p
                    .gated
                    .get(phase)
                    .and_then(|r| r.health.as_deref())
                    .map(Health::of),
                before,
            }
        })
        .collect();
    Row {
        app: p.app.clone(),
        branch: p.branch.to_string(),
        path: p.path.to_string(),
        phases,
    }
}

/// Where the board reads `phase`'s version: with the keys of the last run into it that read a
/// version (the target side of a `source->target` key), else of the last such run out of it
/// (the source side, in its `sourcePath` file when set); else why it cannot.
fn place(p: &Pipeline, phase: &str) -> Result<Place, String> {
    let newest = |wanted: &dyn Fn(&(&str, &str)) -> bool| {
        p.good
            .iter()
            .filter(|(t, _)| wanted(t))
            .max_by_key(|(_, r)| r.started_unix_ms)
            .map(|(_, r)| *r)
    };
    let into = newest(&|(_, t)| *t == phase);
    if let Some(run) = into {
        let key = crate::values::split_key(&run.keys[0]).1;
        return Ok(place_of(p, &p.path.replace("{phase}", phase), key));
    }
    let out = newest(&|(s, _)| *s == phase);
    if let Some(run) = out {
        let key = crate::values::split_key(&run.keys[0]).0;
        let template = run
            .report
            .as_ref()
            .map(|r| r.source.path.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(p.path);
        return Ok(place_of(p, &template.replace("{phase}", phase), key));
    }
    let last = p
        .last
        .iter()
        .filter(|((s, t), _)| *s == phase || *t == phase)
        .max_by_key(|(_, r)| r.started_unix_ms)
        .and_then(|(_, r)| view::reason(r));
    Err(match last {
        Some(why) => format!("no run has read a version here yet; the last one: {why}"),
        None => "no run has read a version here yet".to_string(),
    })
}

fn place_of(p: &Pipeline, file: &str, key: &str) -> Place {
    (
        p.repo.to_string(),
        p.branch.to_string(),
        file.to_string(),
        key.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{history::Stage, outcome::Outcome, spec::TargetRef};

    /// A finished run of `path` from `source` to `target` at `at`: promoted `version` with
    /// `key`, or (no version) an error before reading one.
    fn run(
        path: &str,
        (source, target): (&str, &str),
        key: &str,
        version: Option<&str>,
        at: i64,
    ) -> RunRecord {
        RunRecord {
            id: format!("r{at}"),
            key: String::new(),
            repo: "https://git.example.com/gitops.git".into(),
            branch: "main".into(),
            path: path.into(),
            keys: vec![key.into()],
            source_phase: source.into(),
            target_phase: target.into(),
            source_commit: "a".repeat(40),
            stage: Stage::Done,
            version: version.map(Into::into),
            previous: None,
            report: version.map(|v| RunReport {
                run: format!("r{at}"),
                outcome: Outcome::Promoted,
                version: Some(v.into()),
                previous: None,
                commit: None,
                signature: None,
                source: SourceRef {
                    phase: source.into(),
                    commit: "a".repeat(40),
                    path: String::new(),
                },
                target: TargetRef {
                    phase: target.into(),
                },
                test: None,
                pull_request: None,
                duration_ms: 1,
            }),
            error: version
                .is_none()
                .then(|| format!("key `{key}` not found in the source\nmore")),
            started_unix_ms: at,
            edit: None,
            timeline: Vec::new(),
            health: None,
        }
    }

    const PATH: &str = "apps/petstore/{phase}/kustomization.yaml";

    #[test]
    fn a_bad_run_keeps_the_last_good_keys_of_its_transition() {
        // Newest first: a run with a mistyped key after a good one.
        let runs = [
            run(PATH, ("test", "prod"), "image.verison", None, 3),
            run(
                PATH,
                ("test", "prod"),
                "image.tag->images[name=app].newTag",
                Some("2.0"),
                2,
            ),
            run(PATH, ("dev", "test"), "image.tag", Some("2.1"), 1),
        ];
        let p = &pipelines(&runs)[0];
        assert_eq!(p.phases, ["dev", "test", "prod"]);
        let prod = place(p, "prod").expect("read with the good run's keys");
        assert_eq!(prod.2, "apps/petstore/prod/kustomization.yaml");
        assert_eq!(
            prod.3, "images[name=app].newTag",
            "the target side of the pair"
        );
        assert_eq!(place(p, "test").expect("into test").3, "image.tag");
        // The first phase: the source side of the keys of the run out of it.
        assert_eq!(
            place(p, "dev").expect("out of dev").2,
            "apps/petstore/dev/kustomization.yaml"
        );
        // The transition still shows its last run, the bad one.
        assert_eq!(p.last[&("test", "prod")].id, "r3");
    }

    #[test]
    fn a_phase_no_run_read_a_version_of_says_why() {
        let runs = [run(PATH, ("test", "prod"), "image.verison", None, 1)];
        let p = &pipelines(&runs)[0];
        let why = place(p, "prod").expect_err("no version was ever read");
        assert!(why.contains("key `image.verison` not found"), "{why}");
        assert!(!why.contains("more"), "one line: {why}");
    }

    #[test]
    fn pipelines_sort_by_repository_and_app_never_by_their_last_run() {
        let runs = [
            run("apps/zoo/{phase}/v.yaml", ("test", "prod"), "k", None, 3),
            run(
                "apps/ant/{phase}/v.yaml",
                ("test", "prod"),
                "k",
                Some("1"),
                2,
            ),
            run(
                "apps/cat/{phase}/v.yaml",
                ("test", "prod"),
                "k",
                Some("1"),
                1,
            ),
        ];
        let apps: Vec<String> = pipelines(&runs).into_iter().map(|p| p.app).collect();
        assert_eq!(apps, ["ant", "cat", "zoo"]);
    }

    #[test]
    fn the_filter_keeps_the_repository_and_text_of_the_app_or_path() {
        let runs = [
            run(
                "apps/petstore/{phase}/v.yaml",
                ("test", "prod"),
                "k",
                Some("1"),
                2,
            ),
            run(
                "apps/billing/{phase}/v.yaml",
                ("test", "prod"),
                "k",
                Some("1"),
                1,
            ),
        ];
        let all = pipelines(&runs);
        let keeps = |repo: &str, text: &str| {
            let f = Filter {
                repo: repo.into(),
                text: text.into(),
            };
            all.iter()
                .filter(|p| f.keeps(p))
                .map(|p| p.app.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(keeps("", "PET"), ["petstore"]);
        assert_eq!(keeps("", "apps/b"), ["billing"]);
        assert_eq!(keeps("https://other.example/x.git", ""), Vec::<&str>::new());
        assert_eq!(keeps("https://git.example.com/gitops.git", "").len(), 2);
    }

    #[test]
    fn a_phase_shows_the_health_the_last_gate_out_of_it_decided() {
        let mut refused = run(PATH, ("test", "prod"), "k", Some("2.1"), 2);
        refused.health = Some("not ready: Degraded".into());
        let mut passed = run(PATH, ("test", "prod"), "k", Some("2.0"), 1);
        passed.health = Some("Healthy".into());
        let runs = [refused, passed];
        let p = &pipelines(&runs)[0];
        let health = p.gated.get("test").and_then(|r| r.health.as_deref());
        assert_eq!(
            health,
            Some("not ready: Degraded"),
            "the newest, not the last good one"
        );
        assert!(!p.gated.contains_key("prod"), "no gate watched prod");
        let shown = Health::of("not ready: Degraded");
        assert_eq!((shown.healthy, shown.shown), (false, "not ready"));
    }

    #[test]
    fn a_slim_run_keeps_what_the_board_shows() {
        let mut r = run(PATH, ("test", "prod"), "k", Some("2.0"), 1);
        if let Some(report) = r.report.as_mut() {
            report.outcome = Outcome::TestsFailed;
            report.test = Some(TestReport {
                runner: "command".into(),
                passed: false,
                attempts: 1,
                duration_ms: 5,
                log: "ok 1\nnot ok 2 - POST /pet\n\n".into(),
            });
        }
        let slim = slim(&r);
        assert_eq!(view::reason(&slim), view::reason(&r));
        assert_eq!(
            (view::status(&slim), view::versions(&slim), slim.version()),
            (view::status(&r), view::versions(&r), r.version())
        );
    }

    #[test]
    fn phases_follow_the_transitions() {
        assert_eq!(
            order(vec![("test", "prod"), ("dev", "test")]),
            ["dev", "test", "prod"]
        );
        assert_eq!(
            order(vec![("a", "b"), ("b", "a")]).len(),
            2,
            "a loop still shows both"
        );
    }
}
