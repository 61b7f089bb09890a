//! The changed lines of a values edit (pure): what the console shows as the edit itself. A
//! promotion changes a scalar's text and nothing else, so lines pair up one to one.

use serde::{Deserialize, Serialize};

/// Lines of context are not kept: the edit of one scalar is one line, and a page shows it whole.
const MAX_CHANGED_LINES: usize = 50; // a multi-key edit changes a few lines; never a whole file

/// One changed line of a file: its number (from 1) and its text before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedLine {
    pub line: usize,
    pub before: String,
    pub after: String,
}

/// The edit a promotion made, as recorded in the run history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edit {
    /// The target values file.
    pub path: String,
    /// The promotion commit's message.
    pub message: String,
    pub lines: Vec<ChangedLine>,
}

/// The lines that differ between `before` and `after`, compared line by line (at most
/// [`MAX_CHANGED_LINES`]). When the line counts differ, the extra lines show as added or
/// removed (empty on the other side).
pub(crate) fn changed_lines(before: &str, after: &str) -> Vec<ChangedLine> {
    let (mut old, mut new) = (before.lines(), after.lines());
    let mut changed = Vec::new();
    for line in 1.. {
        match (old.next(), new.next()) {
            (None, None) => break,
            (a, b) if a != b => changed.push(ChangedLine {
                line,
                before: a.unwrap_or_default().to_string(),
                after: b.unwrap_or_default().to_string(),
            }),
            _ => {}
        }
        if changed.len() == MAX_CHANGED_LINES {
            break;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_the_changed_line_with_its_number() {
        let before = "# prod\nimage:\n  version: \"1.0\"  # bumped\nreplicas: 2\n";
        let after = "# prod\nimage:\n  version: \"2.0\"  # bumped\nreplicas: 2\n";
        assert_eq!(
            changed_lines(before, after),
            [ChangedLine {
                line: 3,
                before: "  version: \"1.0\"  # bumped".into(),
                after: "  version: \"2.0\"  # bumped".into(),
            }]
        );
    }

    #[test]
    fn a_longer_file_shows_the_added_lines() {
        let changed = changed_lines("a\n", "a\nb\n");
        assert_eq!(changed.len(), 1);
        assert_eq!(
            (changed[0].before.as_str(), changed[0].after.as_str()),
            ("", "b")
        );
    }

    #[test]
    fn identical_texts_have_no_changed_lines() {
        assert!(changed_lines("a\nb", "a\nb").is_empty());
    }
}
