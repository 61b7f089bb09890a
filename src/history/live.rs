//! The test output of a run in flight, kept so that whoever attaches mid-run (`runs watch`, the
//! console's run page) first sees the output so far, then what follows.

use std::collections::VecDeque;

/// Lines kept per run in flight: a chatty test keeps its last lines, memory stays bounded.
const KEPT_LINES: usize = 5000;
/// Bytes of those lines kept per run in flight: lines are cut at 16 KiB (the runners'
/// `MAX_LINE_BYTES`), so 5000 long lines alone would hold 80 MiB.
const KEPT_BYTES: usize = 1024 * 1024;

/// The output so far of one run in flight.
#[derive(Debug, Default)]
pub(super) struct LiveLog {
    lines: VecDeque<String>,
    /// Lines forgotten from the front (the number of the first kept line).
    dropped: usize,
    /// The bytes of the lines kept.
    bytes: usize,
}

impl LiveLog {
    pub(super) fn push(&mut self, line: &str) {
        self.lines.push_back(line.to_string());
        self.bytes += line.len();
        while self.lines.len() > KEPT_LINES || (self.bytes > KEPT_BYTES && self.lines.len() > 1) {
            let first = self.lines.pop_front().expect("more than one line is kept");
            self.bytes -= first.len();
            self.dropped += 1;
        }
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

    #[test]
    fn keeps_long_lines_within_a_byte_bound() {
        let mut log = LiveLog::default();
        let long = "x".repeat(16 * 1024);
        for _ in 0..KEPT_LINES {
            log.push(&long);
        }
        log.push("last");
        let (first, lines) = log.since(0);
        let kept: usize = lines.iter().map(String::len).sum();
        assert!(kept <= KEPT_BYTES, "{kept} bytes kept");
        assert_eq!(first + lines.len(), KEPT_LINES + 1);
        assert_eq!(lines.last().map(String::as_str), Some("last"));
    }
}
