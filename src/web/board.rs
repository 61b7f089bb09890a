//! The phase board: per pipeline seen in the run history (repo, branch, values path template),
//! the version in each phase at the branch head (read from the git cache, at most every few
//! seconds), and between two phases the last run of that transition.

use std::{
    collections::HashMap,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::view;
use crate::history::RunRecord;

/// The git cache is read at most this often per phase: a board reloaded by many people costs
/// nothing, and a promotion shows within seconds.
const VERSION_TTL: Duration = Duration::from_secs(3);

/// One pipeline's row.
pub(super) struct Row {
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub phases: Vec<PhaseCell>,
}

/// A phase with its version, and the transition that leads into it (none for the first).
pub(super) struct PhaseCell {
    pub name: String,
    pub version: String,
    pub before: Option<Transition>,
}

/// The last run of a transition.
pub(super) struct Transition {
    pub run: String,
    pub outcome: String,
    pub class: &'static str,
    pub when: String,
    pub took: String,
    /// The source phase holds a version the target does not: it waits or failed.
    pub pending: bool,
}

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

/// Pipelines of `runs` (newest first), in the order their latest run happened.
struct Pipeline<'a> {
    repo: &'a str,
    branch: &'a str,
    path: &'a str,
    key: Option<&'a str>,
    phases: Vec<&'a str>,
    /// The newest run of each (source, target).
    last: HashMap<(&'a str, &'a str), &'a RunRecord>,
}

fn pipelines(runs: &[RunRecord]) -> Vec<Pipeline<'_>> {
    let mut found: Vec<Pipeline> = Vec::new();
    for r in runs {
        let same = |p: &&mut Pipeline| p.repo == r.repo && p.branch == r.branch && p.path == r.path;
        let p = match found.iter_mut().position(|p| same(&p)) {
            Some(i) => &mut found[i],
            None => {
                found.push(Pipeline {
                    repo: &r.repo,
                    branch: &r.branch,
                    path: &r.path,
                    key: None,
                    phases: Vec::new(),
                    last: HashMap::new(),
                });
                found.last_mut().expect("just pushed")
            }
        };
        if p.key.is_none() {
            p.key = r.keys.first().map(String::as_str);
        }
        p.last
            .entry((&r.source_phase, &r.target_phase))
            .or_insert(r);
    }
    for p in &mut found {
        p.phases = order(p.last.keys().copied().collect());
    }
    found
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

/// The board's rows for `runs` (newest first), reading versions through `versions`.
pub(super) fn rows(runs: &[RunRecord], cache_dir: &Path, versions: &Versions) -> Vec<Row> {
    let pipelines = pipelines(runs);
    let mut places = Vec::new();
    for p in &pipelines {
        for phase in &p.phases {
            if let Some(key) = p.key {
                places.push(place(p, phase, key));
            }
        }
    }
    let read = versions.get(cache_dir, places);
    pipelines
        .iter()
        .map(|p| {
            let version = |phase: &str| {
                p.key
                    .and_then(|key| read.get(&place(p, phase, key)).cloned().flatten())
            };
            let mut previous: Option<(&str, Option<String>)> = None;
            let phases = p
                .phases
                .iter()
                .map(|&phase| {
                    let here = version(phase);
                    let before = previous.as_ref().and_then(|(from, there)| {
                        let run = p.last.get(&(*from, phase))?;
                        Some(Transition {
                            run: run.id.clone(),
                            outcome: view::status(run),
                            class: view::class(run),
                            when: view::when(run.started_unix_ms),
                            took: view::duration(run),
                            pending: there.is_some() && *there != here,
                        })
                    });
                    previous = Some((phase, here.clone()));
                    PhaseCell {
                        name: phase.to_string(),
                        version: here.unwrap_or_else(|| "—".into()),
                        before,
                    }
                })
                .collect();
            Row {
                repo: view::shown_repo(p.repo),
                branch: p.branch.to_string(),
                path: p.path.to_string(),
                phases,
            }
        })
        .collect()
}

/// Where the board reads a phase's version: `path`'s file at the key written there (the target
/// side of a `source->target` key).
fn place(p: &Pipeline, phase: &str, key: &str) -> Place {
    (
        p.repo.to_string(),
        p.branch.to_string(),
        p.path.replace("{phase}", phase),
        crate::values::split_key(key).1.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_phases_version_at_the_target_side_of_a_key_pair() {
        let p = Pipeline {
            repo: "https://git.example.com/gitops.git",
            branch: "main",
            path: "overlays/{phase}/kustomization.yaml",
            key: None,
            phases: Vec::new(),
            last: HashMap::new(),
        };
        let (_, _, file, key) = place(&p, "prod", "image.tag->images[name=app].newTag");
        assert_eq!(file, "overlays/prod/kustomization.yaml");
        assert_eq!(key, "images[name=app].newTag");
        assert_eq!(place(&p, "prod", "image.version").3, "image.version");
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
