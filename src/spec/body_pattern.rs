//! `testExpectBody`: the HTTP runner's body pattern, compiled with bounds so that matching it
//! against the most of a body the runner reads (1 MiB) costs well under a second whatever the
//! pattern and the body.
//!
//! What a match costs: the regex crate runs a lazy DFA, and falls back to its PikeVM when the
//! DFA's states thrash (a pattern such as `1[01]{N}[^01]` needs 2^N of them against a random
//! `0`/`1` body). The PikeVM's cost is the body's length times the positions alive at once,
//! at most the characters and classes the pattern spells out. Measured on the 2-core
//! development machine (release build, regex 1.13, shared with other work, load 3 to 4), on a
//! random 1 MiB body: `1[01]{438}[^01]` 6.6 s, `1[01]{128}[^01]` 1.15 s, `1[01]{64}[^01]`
//! 0.61 s, `1[01]{32}[^01]` 0.36 s, `é.{32}x` 0.20 s (CPU time); the costliest accepted,
//! `1[01]{30}[^01]`, 0.31 s (three runs). The issue measured `1[01]{2000}[^01]` at 12.7 s. A
//! debug build is about 20 times slower. The compiled size alone cannot bound this: `\w+`
//! needs 50 KB of it, while 32 KB already holds `1[01]{438}[^01]`. So a pattern is bounded
//! three ways:
//!
//! - [`MAX_POSITIONS`] characters and classes, counted repetitions expanded: the cost;
//! - [`SIZE_LIMIT`] and [`DFA_SIZE_LIMIT`]: the memory of the compiled pattern and of its lazy
//!   DFA's cache;
//! - [`MAX_PATTERN_LEN`] bytes of text.

use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Hir, HirKind};

use super::SpecError;

const FIELD: &str = "test.expectBody";

/// Characters and classes a pattern spells out, counted repetitions expanded (`Dog|Cat|Bird`
/// 10, `[0-9a-f]{12}` 12, `\w+` 2): the worst such pattern (`1[01]{30}[^01]`) costs 0.31 s
/// against a random 1 MiB body here, and a health or API check needs far fewer.
pub(crate) const MAX_POSITIONS: u64 = 32;

/// The compiled pattern's memory (regex's default is 10 MiB): enough for 32 Unicode `.` or
/// `\d`, and for a few `\w` (each about 50 KB).
pub(crate) const SIZE_LIMIT: usize = 1024 * 1024;

/// The lazy DFA's cache (regex's default, 2 MiB, made explicit): past it the DFA falls back to
/// the PikeVM, whose cost [`MAX_POSITIONS`] bounds.
pub(crate) const DFA_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// A pattern's text: a body check, not a document.
pub(crate) const MAX_PATTERN_LEN: usize = 1024;

/// Compiles `testExpectBody` within the bounds, or `INVALID_ARGUMENT` naming the key and the
/// bound it passes.
pub(super) fn compile(pattern: &str) -> Result<Regex, SpecError> {
    super::bounds::length(FIELD, "the pattern", pattern, MAX_PATTERN_LEN)?;
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| SpecError::invalid(FIELD, e.to_string()))?;
    let n = positions(&hir);
    if n > MAX_POSITIONS {
        return Err(SpecError::invalid(
            FIELD,
            format!(
                "spells out {n} characters and classes (counted repetitions expanded); at most \
                 {MAX_POSITIONS} are allowed, so that matching a 1 MiB body stays well under a second"
            ),
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => SpecError::invalid(
                FIELD,
                format!("compiles to more than the size limit of {limit} bytes"),
            ),
            other => SpecError::invalid(FIELD, other.to_string()),
        })
}

/// The characters and classes `hir` spells out, each counted repetition expanded (an
/// unbounded one counts its minimum plus one): the most PikeVM positions alive at once.
fn positions(hir: &Hir) -> u64 {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(lit) => String::from_utf8_lossy(&lit.0).chars().count() as u64,
        HirKind::Class(_) => 1,
        HirKind::Repetition(r) => {
            let copies = r.max.unwrap_or_else(|| r.min.saturating_add(1));
            positions(&r.sub).saturating_mul(u64::from(copies))
        }
        HirKind::Capture(c) => positions(&c.sub),
        HirKind::Concat(all) | HirKind::Alternation(all) => {
            all.iter().map(positions).fold(0, u64::saturating_add)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(pattern: &str) -> String {
        compile(pattern).expect_err(pattern).to_string()
    }

    #[test]
    fn accepts_the_patterns_a_health_check_uses() {
        for pattern in [
            "Dog|Cat|Bird",
            r#""status"\s*:\s*"UP""#,
            r"\w+",
            r"\d+\.\d+\.\d+",
            "(?i)healthy",
            "[0-9a-f]{12}",
            "1[01]{30}[^01]",
        ] {
            assert!(compile(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn refuses_a_pattern_whose_match_would_cost_seconds_naming_the_key_and_the_limit() {
        for pattern in ["1[01]{2000}[^01]", "1[01]{100000}[^01]", "1[01]{31}[^01]"] {
            let err = refusal(pattern);
            assert!(err.contains("test.expectBody"), "{err}");
            assert!(err.contains("at most 32 are allowed"), "{err}");
        }
        let err = refusal(&"a".repeat(MAX_PATTERN_LEN + 1));
        assert!(err.contains("at most 1024 are allowed"), "{err}");
        let err = refusal(r"\w{30}");
        assert!(err.contains("size limit of 1048576 bytes"), "{err}");
    }
}
