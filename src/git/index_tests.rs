//! The promotion index on hand-made histories: per key, old trailers, merges, rewrites and the
//! bound by the source commit's age.

use git2::{Oid, Repository, Signature, Time, build::TreeUpdateBuilder};

use super::{Latest, PromotionIndex};

const FILE: &str = "apps/shop/prod/values-prod.yaml";
const NOW: i64 = 1_800_000_000;

fn source(n: u8) -> Oid {
    Oid::from_bytes(&[n; 20]).expect("oid")
}

fn promotion(source: Oid, keys: Option<&str>) -> String {
    let keys = keys.map_or(String::new(), |k| format!("Promoted-Keys: {k}\n"));
    format!("Promote\n\nSource-Commit: {source}\nTarget-Phase: prod\n{keys}")
}

/// A repository whose commits are made with explicit times and parents.
struct History {
    _dir: tempfile::TempDir,
    repo: Repository,
    edits: u32,
}

impl History {
    fn new() -> History {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path().join("r.git")).expect("init");
        History {
            _dir: dir,
            repo,
            edits: 0,
        }
    }

    /// A commit changing `FILE` on top of `parents`, made at `time`.
    fn commit(&mut self, parents: &[Oid], message: &str, time: i64) -> Oid {
        self.edits += 1;
        let repo = &self.repo;
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| repo.find_commit(*p).expect("parent"))
            .collect();
        let base = match parents.first() {
            Some(p) => p.tree().expect("tree"),
            None => repo
                .find_tree(
                    repo.treebuilder(None)
                        .and_then(|b| b.write())
                        .expect("empty"),
                )
                .expect("tree"),
        };
        let blob = repo
            .blob(format!("edit {}\n", self.edits).as_bytes())
            .expect("blob");
        let tree = TreeUpdateBuilder::new()
            .upsert(FILE, blob, git2::FileMode::Blob)
            .create_updated(repo, &base)
            .expect("tree");
        let sig = Signature::new("t", "t@example.com", &Time::new(time, 0)).expect("sig");
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(
            None,
            &sig,
            &sig,
            message,
            &repo.find_tree(tree).expect("tree"),
            &refs,
        )
        .expect("commit")
    }

    fn latest(&self, index: &mut PromotionIndex, key: &str, since: i64) -> Option<Oid> {
        self.lookup(index, key, since).map(|l| l.source)
    }

    fn lookup(&self, index: &mut PromotionIndex, key: &str, since: i64) -> Option<Latest> {
        index
            .latest(&self.repo, (FILE, "prod", key), since)
            .expect("lookup")
    }
}

#[test]
fn decides_per_key_and_reads_old_promotions_as_every_key() {
    let mut h = History::new();
    let old = h.commit(&[], &promotion(source(1), None), NOW);
    let backend = h.commit(&[old], &promotion(source(2), Some("backend.tag")), NOW + 10);
    let head = h.commit(
        &[backend],
        &promotion(source(3), Some("frontend.tag,x.y")),
        NOW + 20,
    );
    let mut index = PromotionIndex::default();
    index.update(&h.repo, head).expect("index");

    assert_eq!(h.latest(&mut index, "backend.tag", NOW), Some(source(2)));
    assert_eq!(h.latest(&mut index, "frontend.tag", NOW), Some(source(3)));
    assert_eq!(
        h.latest(&mut index, "image.version", NOW),
        Some(source(1)),
        "a promotion without Promoted-Keys stands for every key"
    );

    // A new head: a keyless promotion overrides every key, a keyed one only its own.
    let head = h.commit(
        &[head],
        &promotion(source(4), Some("backend.tag")),
        NOW + 30,
    );
    index.update(&h.repo, head).expect("index");
    assert_eq!(h.latest(&mut index, "backend.tag", NOW), Some(source(4)));
    assert_eq!(h.latest(&mut index, "frontend.tag", NOW), Some(source(3)));
    let head = h.commit(&[head], &promotion(source(5), None), NOW + 40);
    index.update(&h.repo, head).expect("index");
    assert_eq!(h.latest(&mut index, "frontend.tag", NOW), Some(source(5)));
}

#[test]
fn counts_a_promotion_reached_only_through_a_merges_second_parent() {
    let mut h = History::new();
    let base = h.commit(&[], "initial", NOW);
    let ours = h.commit(&[base], "someone's commit", NOW + 10);
    let theirs = h.commit(
        &[base],
        &promotion(source(7), Some("image.version")),
        NOW + 20,
    );
    let merge = h.commit(&[ours, theirs], "Merge branch 'main'", NOW + 30);
    let mut index = PromotionIndex::default();
    index.update(&h.repo, merge).expect("index");

    assert_eq!(h.latest(&mut index, "image.version", NOW), Some(source(7)));

    // Also when the merge arrives as a new head of an index already built.
    let mut h = History::new();
    let base = h.commit(&[], "initial", NOW);
    let ours = h.commit(&[base], "someone's commit", NOW + 10);
    let mut index = PromotionIndex::default();
    index.update(&h.repo, ours).expect("index");
    assert_eq!(h.latest(&mut index, "image.version", NOW), None);
    let theirs = h.commit(
        &[base],
        &promotion(source(8), Some("image.version")),
        NOW + 20,
    );
    let merge = h.commit(&[ours, theirs], "Merge", NOW + 30);
    index.update(&h.repo, merge).expect("index");
    assert_eq!(h.latest(&mut index, "image.version", NOW), Some(source(8)));
}

#[test]
fn stops_at_commits_older_than_the_source_and_reads_again_after_a_rewrite() {
    let mut h = History::new();
    let day = 24 * 3600;
    let ancient = h.commit(&[], &promotion(source(1), None), NOW - 10 * day);
    let recent = h.commit(&[ancient], "unrelated", NOW);
    let mut index = PromotionIndex::default();
    index.update(&h.repo, recent).expect("index");

    assert_eq!(
        h.latest(&mut index, "image.version", NOW),
        None,
        "a promotion made days before the source commit cannot be newer than it"
    );
    assert_eq!(
        h.latest(&mut index, "image.version", NOW - 11 * day),
        Some(source(1)),
        "an older source commit reads further"
    );

    // The branch is rewritten to a history without that promotion.
    let rewritten = h.commit(&[], "rewritten", NOW);
    index.update(&h.repo, rewritten).expect("index");
    assert_eq!(h.latest(&mut index, "image.version", NOW - 11 * day), None);
}
