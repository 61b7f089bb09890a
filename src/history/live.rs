//! The test output of a run in flight, kept so that whoever attaches mid-run (`runs watch`, the
//! console's run page) first sees the output so far, then what follows.

use std::collections::VecDeque;

/// Lines kept per run in flight: a chatty test keeps its last lines, memory stays bounded.
const KEPT_LINES: usize = 5000;

/// The output so far of one run in flight.
#[derive(Debug, Default)]
pub(super) struct LiveLog {
    lines: VecDeque<String>,
    /// Lines forgotten from the front (the number of the first kept line).
    dropped: usize,
}

impl LiveLog {
    pub(super) fn push(&mut self, line: &str) {
        if self.lines.len() == KEPT_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line.to_string());
    }

    /// Every line seen so far (numbered from 0 over the whole run) starting at `from`.
    pub(super) fn since(&self, from: usize) -> (usize, Vec<String>) {
        let start = from.max(self.dropped);
        let lines = self
            .lines
            .iter()
            .skip(start - self.dropped)
            .cloned()
            .collect();
        (start, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_and_numbers_them_over_the_whole_run() {
        let mut log = LiveLog::default();
        for i in 0..KEPT_LINES + 2 {
            log.push(&format!("line {i}"));
        }
        let (first, lines) = log.since(0);
        assert_eq!(first, 2);
        assert_eq!(lines.len(), KEPT_LINES);
        assert_eq!(lines[0], "line 2");
        let (first, lines) = log.since(KEPT_LINES + 1);
        assert_eq!(
            (first, lines),
            (KEPT_LINES + 1, vec![format!("line {}", KEPT_LINES + 1)])
        );
    }
}
