//! The promotion commit's message: subject, a line per changed key, and the trailers that make
//! it a record others (and phasegate's promotion index) can read back:
//! `Promoted-Version`, `Source-Phase`, `Source-Commit`, `Target-Phase`, `Promotion-Run`, and
//! since issue 11 `Promoted-Keys` (the keys it changed, comma-separated) and, on a deliberate
//! rollback only, `Promotion-Rollback: true`.
//!
//! Only the message's final paragraph is read back, and only when it is phasegate's own block:
//! every line one of those trailers, each at most once. Lines that look like trailers anywhere
//! else (a subject or body someone wrote, a `---` line that git's trailer parser would stop
//! at) record nothing, so they cannot forge a newer `Source-Commit` or bar a version with
//! `Promotion-Rollback: true`.

use git2::{Commit, Oid};

use super::{GitError, Promotion};
use crate::spec::Vars;

const PROMOTED_VERSION: &str = "Promoted-Version";
const SOURCE_PHASE: &str = "Source-Phase";
const TARGET_PHASE: &str = "Target-Phase";
const SOURCE_COMMIT: &str = "Source-Commit";
const PROMOTED_KEYS: &str = "Promoted-Keys";
const ROLLBACK: &str = "Promotion-Rollback";
const PROMOTION_RUN: &str = "Promotion-Run";

/// Every trailer [`message`] writes: a final paragraph holding anything else is not
/// phasegate's record. (Signatures live in the commit's `gpgsig` header, not the message.)
const WRITTEN: [&str; 7] = [
    PROMOTED_VERSION,
    SOURCE_PHASE,
    SOURCE_COMMIT,
    TARGET_PHASE,
    PROMOTED_KEYS,
    ROLLBACK,
    PROMOTION_RUN,
];

/// What a promotion commit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    /// The phase it promoted into.
    pub target: String,
    /// The tested source commit.
    pub source: Oid,
    /// The keys it changed; `None` for commits made before `Promoted-Keys` existed, which
    /// stand for every key of the files they changed.
    pub keys: Option<Vec<String>>,
    /// A deliberate rollback (`Promotion-Rollback: true`).
    pub rollback: bool,
}

/// What `commit` records, if it is a promotion commit: its message ends with phasegate's own
/// trailer block ([`own_block`]), which has `Target-Phase` and a valid `Source-Commit`.
pub(super) fn recorded(commit: &Commit) -> Option<Recorded> {
    let message = commit.message_raw().unwrap_or_default();
    // Most commits are not promotions: skip them without parsing.
    if !message.contains(TARGET_PHASE) {
        return None;
    }
    let trailers = own_block(message)?;
    let trailer = |name| trailers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let target = trailer(TARGET_PHASE)?.to_string();
    let source = Oid::from_str(trailer(SOURCE_COMMIT)?).ok()?;
    let keys = trailer(PROMOTED_KEYS).map(|keys| {
        keys.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    });
    let rollback = trailer(ROLLBACK).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Some(Recorded {
        target,
        source,
        keys,
        rollback,
    })
}

/// The message's final paragraph as `(name, value)` pairs, when it is phasegate's own trailer
/// block: after the subject's paragraph, every line `Name: value` with a name of [`WRITTEN`],
/// each name at most once. `None` otherwise: the commit records no promotion.
fn own_block(message: &str) -> Option<Vec<(&str, &str)>> {
    let lines: Vec<&str> = message.trim_end().lines().collect();
    let start = lines.iter().rposition(|l| l.trim().is_empty())? + 1;
    let mut block: Vec<(&str, &str)> = Vec::new();
    for line in &lines[start..] {
        let (name, value) = line.split_once(':')?;
        if !WRITTEN.contains(&name) || block.iter().any(|(seen, _)| *seen == name) {
            return None;
        }
        block.push((name, value.trim()));
    }
    Some(block)
}

/// The message of the promotion commit of `p`: subject from the spec's template, the changed
/// keys, the trailers. Refused when a version would break the subject's line (the new one is
/// refused earlier, by the values edit; `{previous}` is read from the target as it is).
pub(super) fn message(
    p: &Promotion,
    versions: &[String],
    previous: &[String],
    source: Oid,
) -> Result<String, GitError> {
    let subject = p
        .message
        .render(&Vars {
            version: &versions[0],
            previous: &previous[0],
            keys: &p.keys,
            source: &p.source,
            target: &p.target,
            commit: &source.to_string(),
        })
        .map_err(|_| GitError::Unsupported {
            path: p.path.for_phase(&p.target),
            reason: "a version in it would put a line break or control character in the \
                     commit subject (`commitMessage`)",
        })?;
    let mut body = String::new();
    let keys = p.target_keys();
    for ((key, new), old) in keys.iter().zip(versions).zip(previous) {
        body.push_str(&format!("{key}: {old} -> {new}\n"));
    }
    let rollback = if p.rollback {
        format!("{ROLLBACK}: true\n")
    } else {
        String::new()
    };
    Ok(format!(
        "{subject}\n\n{body}\n{PROMOTED_VERSION}: {}\n{SOURCE_PHASE}: {}\n{SOURCE_COMMIT}: {source}\n{TARGET_PHASE}: {}\n{PROMOTED_KEYS}: {}\n{rollback}{PROMOTION_RUN}: {}\n",
        versions[0],
        p.source,
        p.target,
        keys.join(","),
        p.run_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::local::commit_files;

    /// What the index reads back from a commit of `message` on `bare`'s main.
    fn read_back(bare: &std::path::Path, message: &str) -> Option<Recorded> {
        let id = commit_files(bare, "main", &[("f", message)], message).expect("commit");
        let repo = git2::Repository::open_bare(bare).expect("open");
        recorded(
            &repo
                .find_commit(Oid::from_str(&id).expect("id"))
                .expect("commit"),
        )
    }

    #[test]
    fn reads_back_the_keys_and_treats_old_commits_as_every_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("r.git");
        let source = "1111111111111111111111111111111111111111";
        let read = |message: &str| read_back(&bare, message);
        let new = read(&format!(
            "Promote\n\nSource-Commit: {source}\nTarget-Phase: prod\nPromoted-Keys: a.tag,b.tag\nPromotion-Rollback: true\n"
        ))
        .expect("a promotion");
        assert_eq!(
            new.keys,
            Some(vec!["a.tag".to_string(), "b.tag".to_string()])
        );
        assert_eq!(new.target, "prod");
        assert!(new.rollback);
        let old = read(&format!(
            "Promote\n\nSource-Commit: {source}\nTarget-Phase: prod\n"
        ))
        .expect("a promotion");
        assert_eq!(old.keys, None);
        assert!(!old.rollback);
        assert_eq!(read("Target-Phase: in the subject only"), None);
        assert_eq!(
            read("Fix\n\nTarget-Phase: prod\nSource-Commit: nope\n"),
            None
        );
    }

    #[test]
    fn reads_only_phasegates_own_final_trailer_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("r.git");
        let (real, forged) = (
            "1111111111111111111111111111111111111111",
            "2222222222222222222222222222222222222222",
        );
        let read = |message: &str| read_back(&bare, message);
        let own = format!(
            "Promoted-Version: 2.0\nSource-Phase: test\nSource-Commit: {real}\nTarget-Phase: prod\nPromoted-Keys: image.version\nPromotion-Run: r1\n"
        );
        let forgery =
            format!("Source-Commit: {forged}\nTarget-Phase: prod\nPromotion-Rollback: true\n---\n");
        // A forged block in the subject's paragraph, then phasegate's own: the own one counts.
        let after = read(&format!(
            "Promote\n\n{forgery}\nimage.version: 1.0 -> 2.0\n\n{own}"
        ))
        .expect("a promotion");
        assert_eq!(
            (after.source.to_string(), after.rollback),
            (real.to_string(), false)
        );
        // Forged lines in the body only, or appended to the own block, record nothing.
        assert_eq!(read(&format!("Promote\n\n{forgery}\nSee above.\n")), None);
        assert_eq!(
            read(&format!(
                "Promote\n\n{own}Promotion-Rollback: true\nX-Other: 1\n"
            )),
            None
        );
        assert_eq!(
            read(&format!("Promote\n\n{own}Source-Commit: {forged}\n")),
            None
        );
        assert_eq!(read(&format!("Promote\n\n{forgery}")), None);
    }
}
