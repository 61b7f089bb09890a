//! The console benchmark's fleet (issue 27): 200 pipelines, four repositories of fifty apps
//! each, phases dev → test → staging → prod, and 1,000 runs over them written through
//! phasegate's own history store, with the outcomes a busy team has (tests failed, runs that
//! ended in an error before reading a version, already promoted, superseded).

use std::{path::Path, sync::Arc};

use phasegate::{
    ChangedLine, Edit, Error, History, Outcome, RunRecord, RunReport, Stage, TestReport,
    git::local,
    spec::{SourceRef, TargetRef},
};

use super::{BenchResult, PATH, repo::values};

/// Runs in the history: what the server keeps.
pub(crate) const RUNS: usize = 1000;
pub(crate) const REPOS: usize = 4;
pub(crate) const APPS_PER_REPO: usize = 50;
pub(crate) const PHASES: [&str; 4] = ["dev", "test", "staging", "prod"];

/// The `a`th app of a repository.
pub(crate) fn app(a: usize) -> String {
    format!("svc{a:02}")
}

/// The repositories' names, served by the bench's git server beside `gitops`.
pub(crate) fn repo_names() -> Vec<String> {
    (0..REPOS).map(|r| format!("team-{r}")).collect()
}

/// Creates the bare repository `dir` with every app's values file in every phase.
pub(crate) fn generate(dir: &Path) -> BenchResult<String> {
    let files: Vec<(String, String)> = (0..APPS_PER_REPO)
        .flat_map(|a| {
            PHASES.iter().map(move |phase| {
                let path = PATH.replace("{app}", &app(a)).replace("{phase}", phase);
                (path, values(&app(a), "1.0"))
            })
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    Ok(local::commit_files(dir, "main", &refs, "initial")?)
}

fn hex(n: usize, len: usize) -> String {
    let mut s = String::new();
    let mut x = n as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while s.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        s.push_str(&format!("{x:016x}"));
    }
    s.truncate(len);
    s
}

/// A test campaign's output as the report keeps it: its last 4 KiB.
fn test_log(app: &str, passed: bool) -> String {
    let mut log = format!(
        "{rule}\n{app} :: API campaign\n{rule}\n",
        rule = "=".repeat(78)
    );
    for case in 0..45 {
        let verdict = if !passed && case == 31 {
            "FAIL"
        } else {
            "PASS"
        };
        log.push_str(&format!(
            "GET /items/{case} answers the item of the fixture{:>24}| {verdict} |\n",
            ""
        ));
    }
    log.push_str("45 tests, 45 passed, 0 failed\nOutput:  /work/output.xml\n");
    let cut = log.len().saturating_sub(4096);
    log[log.ceil_char_boundary(cut)..].to_string()
}

/// What the `i`th run is: a mix of outcomes as a busy team has them; `None` for a run that
/// ended in an error before reading a version (a mistyped key).
fn outcome(i: usize) -> Option<Outcome> {
    match i % 20 {
        0 | 10 => Some(Outcome::TestsFailed),
        1 => Some(Outcome::AlreadyPromoted),
        2 => Some(Outcome::Superseded),
        3 => None,
        _ => Some(Outcome::Promoted),
    }
}

/// Writes [`RUNS`] finished runs over the fleet through the history store into `cache`'s
/// history file, as a server that ran them would have: run `i` is about repository `i % 4`,
/// app `(i / 4) % 50` and transition `(i / 200) % 3`, so every pipeline has runs.
pub(crate) fn fill(cache: &Path, repos: &[String]) {
    let history = History::open(Some(cache));
    let now = phasegate::now_unix_ms();
    for i in 0..RUNS {
        let started = now - i64::try_from((RUNS - i) * 300_000).unwrap_or(0);
        let repo = &repos[i % REPOS];
        let app = app((i / REPOS) % APPS_PER_REPO);
        let step = (i / (REPOS * APPS_PER_REPO)) % (PHASES.len() - 1);
        let (source, target) = (PHASES[step], PHASES[step + 1]);
        let id = format!("{started:x}-{i:04x}");
        let source_commit = hex(i, 40);
        let outcome = outcome(i);
        let record = RunRecord {
            id: id.clone(),
            key: hex(i + RUNS, 64),
            repo: repo.clone(),
            branch: "main".into(),
            path: PATH.replace("{app}", &app),
            keys: vec![
                if outcome.is_some() {
                    "image.version"
                } else {
                    "image.verison"
                }
                .into(),
            ],
            source_phase: source.into(),
            target_phase: target.into(),
            source_commit: source_commit.clone(),
            stage: Stage::Queued,
            version: None,
            previous: None,
            report: None,
            error: None,
            started_unix_ms: started,
            edit: None,
            timeline: Vec::new(),
            health: None,
        };
        history.start(record);
        let Some(outcome) = outcome else {
            let error = format!(
                "apps/{app}/{source}/values-{source}.yaml: key `image.verison` not found in values file"
            );
            history.finish(&id, &Err(Arc::new(Error::Internal(error))));
            continue;
        };
        let (version, previous) = (format!("2.{i}"), format!("2.{}", i.saturating_sub(REPOS)));
        history.under_test(&id, &version, &previous);
        history.stage(&id, Stage::Testing);
        let passed = outcome != Outcome::TestsFailed;
        let log = test_log(&app, passed);
        for line in log.lines() {
            history.log(&id, line);
        }
        let commit = (outcome == Outcome::Promoted).then(|| hex(i + 2 * RUNS, 40));
        if let Some(commit) = &commit {
            history.stage(&id, Stage::Promoting);
            history.edited(
                &id,
                Edit {
                    path: PATH.replace("{app}", &app).replace("{phase}", target),
                    message: format!(
                        "Promote image.version {version} from {source} to {target}\n\n\
                         Promoted-Version: {version}\nSource-Phase: {source}\n\
                         Source-Commit: {source_commit}\nTarget-Phase: {target}\n\
                         Promotion-Run: {id}\nPromoted-Keys: image.version\n"
                    ),
                    lines: vec![ChangedLine {
                        line: 5,
                        before: format!("  version: \"{previous}\"  # bumped by CD"),
                        after: format!("  version: \"{version}\"  # bumped by CD ({commit})"),
                    }],
                },
            );
        }
        let report = RunReport {
            run: id.clone(),
            outcome,
            version: Some(version),
            previous: Some(previous),
            commit,
            signature: None,
            source: SourceRef {
                phase: source.into(),
                commit: source_commit,
                path: String::new(),
            },
            target: TargetRef {
                phase: target.into(),
            },
            test: Some(TestReport {
                runner: "job".into(),
                passed,
                attempts: 1,
                duration_ms: 40_000 + (i as u64 % 7) * 3_000,
                log,
            }),
            pull_request: None,
            duration_ms: 41_000 + (i as u64 % 7) * 3_000,
        };
        history.finish(&id, &Ok(Arc::new(report)));
    }
}
