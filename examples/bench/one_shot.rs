//! The one-shot CLI (issue 11 point 10): `phasegate promote` as the classic container step runs
//! it, a fresh process per promotion, cold (an empty cache each time) against `git clone
//! --bare`, and warm (the previous run's cache) against the git CLI floor on a warm clone. Each
//! is timed alternately with what it is compared to, in turns (which one goes first alternates
//! too), so a load spike from the other users of a shared machine hits both sides alike; the
//! rows give both medians and the median of the per-turn ratios.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::{BenchResult, PASSWORD, PATH, USER, path, sh, summary, timed};

/// Cold turns: each clones the whole repository twice.
const COLD_TURNS: usize = 5;

/// What the one-shot rows need.
pub(crate) struct OneShot<'a> {
    pub bin: &'a Path,
    pub root: &'a Path,
    pub url: &'a str,
    /// `Authorization: Basic …`, for the git CLI.
    pub auth: &'a str,
}

impl OneShot<'_> {
    fn promote(&self, cache: &Path, app: &str, commit: &str) -> BenchResult<()> {
        sh(Command::new(self.bin)
            .args(["promote", "--git-repo", self.url, "--source-commit", commit])
            .args(["--source-phase", "test", "--target-phase", "prod"])
            .args(["--test", "none", "--path", &PATH.replace("{app}", app)])
            .arg("--cache-dir")
            .arg(cache)
            .env("GIT_USER", USER)
            .env("GIT_PASSWORD", PASSWORD)
            // The bench's git server speaks plain http on 127.0.0.1.
            .env("PHASEGATE_GIT_ALLOW_INSECURE_HTTP", "1")
            .env("RUST_LOG", "warn"))
    }

    fn git(&self) -> Command {
        let mut git = Command::new("git");
        git.args(["-c", &format!("http.extraHeader={}", self.auth)]);
        git
    }

    fn clone_bare(&self, target: &Path) -> BenchResult<()> {
        sh(self
            .git()
            .args(["clone", "-q", "--bare", self.url])
            .arg(target))
    }

    /// The cold row: one-shot promotions with an empty cache against `git clone --bare`.
    pub(crate) fn cold(
        &self,
        bump: &mut dyn FnMut(&str) -> BenchResult<(String, String)>,
    ) -> BenchResult<(String, String, String)> {
        let (shot, clone, ratio) = self.cold_turns(bump, "app005", 0)?;
        Ok((
            format!(
                "One-shot `phasegate promote`, cold (p50 of {COLD_TURNS}, alternating with the clone)"
            ),
            format!("{shot:.0} ms vs git clone --bare {clone:.0} ms"),
            format!(
                "{ratio:.2}× (median of per-turn ratios; goal ≤ 0.5× at 100,000 commits, ≤ 0.7× at 10,000)"
            ),
        ))
    }

    /// What a shallow clone costs when a check must deepen: the cold row for a source commit
    /// with 100 commits above it (deeper than the first fetch's 64).
    pub(crate) fn cold_deep(
        &self,
        bump: &mut dyn FnMut(&str) -> BenchResult<(String, String)>,
    ) -> BenchResult<(String, String, String)> {
        let (shot, clone, ratio) = self.cold_turns(bump, "app008", 100)?;
        Ok((
            format!(
                "One-shot `phasegate promote`, cold, source 100 commits below the head (one deepening; p50 of {COLD_TURNS})"
            ),
            format!("{shot:.0} ms vs git clone --bare {clone:.0} ms"),
            format!("{ratio:.2}× (median of per-turn ratios)"),
        ))
    }

    /// Cold one-shot promotions of `app`, each of a new source commit with `above` commits of
    /// another app on top, timed alternately with `git clone --bare`: the medians of the
    /// promotions, the clones and the per-turn ratios.
    fn cold_turns(
        &self,
        bump: &mut dyn FnMut(&str) -> BenchResult<(String, String)>,
        app: &str,
        above: usize,
    ) -> BenchResult<(f64, f64, f64)> {
        let (mut shots, mut clones, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for turn in 0..COLD_TURNS {
            let (commit, _) = bump(app)?;
            for _ in 0..above {
                bump("app009")?;
            }
            let cache = self.root.join(format!("one-shot-cold-{app}-{turn}"));
            let target = self.root.join(format!("one-shot-clone-{app}-{turn}.git"));
            let (s, c) = alternately(
                turn,
                || timed(|| self.promote(&cache, app, &commit)),
                || timed(|| self.clone_bare(&target)),
            )?;
            shots.push(s);
            clones.push(c);
            ratios.push(s / c);
        }
        let ((shot, _), (clone, _), (ratio, _)) =
            (summary(shots), summary(clones), summary(ratios));
        Ok((shot, clone, ratio))
    }

    /// The warm row: one-shot promotions on the previous run's cache against the git CLI on a
    /// warm clone (fetch, edit, commit, push).
    pub(crate) fn warm(
        &self,
        bump: &mut dyn FnMut(&str) -> BenchResult<(String, String)>,
        turns: usize,
    ) -> BenchResult<(String, String, String)> {
        let cache = self.root.join("one-shot-warm");
        let (commit, _) = bump("app006")?;
        self.promote(&cache, "app006", &commit)?;
        let clone: PathBuf = self.root.join("one-shot-floor");
        sh(self.git().args(["clone", "-q", self.url]).arg(&clone))?;
        let floor = |version: &str| {
            sh(Command::new("bash")
                .arg("bench/floor_promote.sh")
                .arg(&clone)
                .args([self.auth, &path("app007", "prod"), version]))
        };
        let (mut shots, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for turn in 0..turns {
            let (commit, _) = bump("app006")?;
            let (_, version) = bump("app007")?;
            let (s, f) = alternately(
                turn,
                || timed(|| self.promote(&cache, "app006", &commit)),
                || timed(|| floor(&version)),
            )?;
            shots.push(s);
            floors.push(f);
            ratios.push(s / f);
        }
        let ((shot, shot_p95), (floor, floor_p95), (ratio, _)) =
            (summary(shots), summary(floors), summary(ratios));
        Ok((
            format!(
                "One-shot `phasegate promote`, warm cache (p50 / p95 of {turns}, alternating with the floor)"
            ),
            format!("{shot:.0} / {shot_p95:.0} ms vs floor {floor:.0} / {floor_p95:.0} ms"),
            format!("{ratio:.2}× the floor (median of per-turn ratios; goal ≤ 0.6×)"),
        ))
    }
}

/// Times `a` and `b`, `a` first on even turns and `b` first on odd ones.
fn alternately(
    turn: usize,
    a: impl FnOnce() -> BenchResult<f64>,
    b: impl FnOnce() -> BenchResult<f64>,
) -> BenchResult<(f64, f64)> {
    if turn.is_multiple_of(2) {
        let a = a()?;
        Ok((a, b()?))
    } else {
        let b = b()?;
        Ok((a()?, b))
    }
}
