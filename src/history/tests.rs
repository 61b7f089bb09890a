use std::sync::Arc;

use super::*;
use crate::Error;

fn record(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        key: format!("key-{id}"),
        repo: "file:///r".into(),
        branch: "main".into(),
        path: "a/{phase}.yaml".into(),
        keys: vec!["image.version".into()],
        source_phase: "test".into(),
        target_phase: "prod".into(),
        source_commit: "abcdef1".into(),
        stage: Stage::Queued,
        version: None,
        previous: None,
        report: None,
        error: None,
        started_unix_ms: 0,
        edit: None,
        timeline: Vec::new(),
        health: None,
    }
}

/// Runs `ids` through `history`, each ending with an error.
fn run(history: &History, ids: impl Iterator<Item = String>) {
    for id in ids {
        history.start(record(&id));
        history.finish(&id, &Err(Arc::new(Error::Internal("boom".into()))));
    }
}

fn lines(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .expect("history file")
        .lines()
        .count()
}

#[test]
fn the_file_is_compacted_while_serving_and_keeps_the_newest_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("history.jsonl");
    let history = History::open(Some(dir.path()));
    let mut most = 0;
    for round in 0..5 {
        run(&history, (0..KEPT_RUNS).map(|i| format!("r{round}-{i:04}")));
        most = most.max(lines(&file));
    }
    assert!(most < 2 * KEPT_RUNS, "{most} lines after 5000 runs");
    let size = std::fs::metadata(&file).expect("file").len();
    assert!(size < 2 * KEPT_RUNS as u64 * 1024, "{size} bytes");

    let reopened = History::open(Some(dir.path()));
    let all = reopened.all();
    assert_eq!(all.len(), KEPT_RUNS);
    assert_eq!(
        all[0].id,
        format!("r4-{:04}", KEPT_RUNS - 1),
        "the newest first"
    );
}

#[test]
fn a_huge_line_and_a_huge_file_are_skipped_not_read_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("history.jsonl");
    let good = |id: &str| {
        let mut r = record(id);
        r.stage = Stage::Done;
        let mut line = serde_json::to_vec(&r).expect("json");
        line.push(b'\n');
        line
    };
    // An old record, then more than the bound read of garbage with one endless line, then
    // the newest record.
    let mut text = good("old");
    text.extend(vec![b'x'; store::MAX_READ_BYTES as usize / 2]);
    text.push(b'\n');
    let mut garbage = vec![b'g'; 1023];
    garbage.push(b'\n');
    text.extend(garbage.repeat(store::MAX_READ_BYTES as usize / 1024));
    text.extend(vec![b'{'; store::MAX_LINE_BYTES * 2]);
    text.push(b'\n');
    text.extend(good("newest"));
    std::fs::write(&file, &text).expect("write");

    let mut seen = Vec::new();
    let found = store::read(&file, |r| seen.push(r.id)).expect("read");
    assert_eq!(seen, ["newest"], "only the file's end is read");
    assert!(found.partial);
    assert!(found.skipped > 0);

    let history = History::open(Some(dir.path()));
    assert_eq!(history.all().len(), 1);
    assert_eq!(lines(&file), 1, "rewritten with what was kept");
}

#[test]
fn finds_runs_by_path_text_version_commit_and_id_with_their_total() {
    let history = History::default();
    for (id, path, version, commit) in [
        ("r1-aa", "apps/petstore/{phase}/v.yaml", "2.0", "abc123"),
        ("r2-bb", "apps/billing/{phase}/v.yaml", "2.0", "def456"),
        ("r3-cc", "apps/petstore/{phase}/v.yaml", "2.1", "abd789"),
    ] {
        let mut r = record(id);
        r.path = path.into();
        r.source_commit = commit.into();
        history.start(r);
        history.under_test(id, version, "1.0");
    }
    let ids = |filter: RunFilter| {
        let (total, runs) = history.find(&RunFilter { limit: 1, ..filter });
        (total, runs.into_iter().map(|r| r.id).collect::<Vec<_>>())
    };
    let text = RunFilter {
        text: "PETSTORE".into(),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(text),
        (2, vec!["r3-cc".to_string()]),
        "a total beyond the page"
    );
    let version = RunFilter {
        version: "2.0".into(),
        ..RunFilter::default()
    };
    assert_eq!(ids(version).0, 2);
    let commit = RunFilter {
        commit: "AB".into(),
        ..RunFilter::default()
    };
    assert_eq!(ids(commit).0, 2, "a prefix of the tested commit, any case");
    let run = RunFilter {
        run: "r2".into(),
        ..RunFilter::default()
    };
    assert_eq!(ids(run), (1, vec!["r2-bb".to_string()]));
}
