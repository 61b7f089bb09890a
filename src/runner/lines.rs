//! Test output cut into lines of bounded length, decoded lossily: a test that prints a huge
//! line without a newline, or bytes that are not UTF-8, neither grows the server's memory nor
//! loses its output. Both the command runner and the Job runner's log follower read through
//! [`LineCutter`] (docs/contract.md §5).

/// The longest output line kept; the rest of a longer line is counted, not kept. Long enough
/// for any line a human reads (a stack frame, a JSON record), short enough that the 5000 lines
/// a run in flight keeps stay small.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`] bytes (plus the cut mark),
/// whatever the chunks it arrives in. Holds at most one line.
#[derive(Default)]
pub(crate) struct LineCutter {
    line: Vec<u8>,
    /// Bytes of the current line beyond [`MAX_LINE_BYTES`], dropped.
    cut: usize,
}

impl LineCutter {
    /// Feeds the next bytes of the stream, calling `emit` with each line they complete.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(String)) {
        while !bytes.is_empty() {
            let (part, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) => (&bytes[..nl], Some(nl + 1)),
                None => (bytes, None),
            };
            let room = MAX_LINE_BYTES - self.line.len();
            let kept = part.len().min(room);
            self.line.extend_from_slice(&part[..kept]);
            self.cut += part.len() - kept;
            match ended {
                Some(next) => {
                    emit(self.take());
                    bytes = &bytes[next..];
                }
                None => bytes = &[],
            }
        }
    }

    /// Ends the stream: the last line, when it had no newline.
    pub(crate) fn finish(mut self, emit: &mut impl FnMut(String)) {
        if !self.line.is_empty() || self.cut > 0 {
            emit(self.take());
        }
    }

    /// The current line as text, marked when cut; the cutter is ready for the next line.
    fn take(&mut self) -> String {
        let mut line = std::mem::take(&mut self.line);
        let mut cut = std::mem::take(&mut self.cut);
        if cut == 0 {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        } else if let Err(e) = std::str::from_utf8(&line)
            && e.error_len().is_none()
        {
            // The bound fell inside a character: cut before it rather than show U+FFFD.
            cut += line.len() - e.valid_up_to();
            line.truncate(e.valid_up_to());
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if cut > 0 {
            text.push_str(&format!(" … [cut: {cut} bytes]"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut cutter = LineCutter::default();
        for chunk in chunks {
            cutter.feed(chunk, &mut |l| lines.push(l));
        }
        cutter.finish(&mut |l| lines.push(l));
        lines
    }

    #[test]
    fn splits_lines_across_chunks_and_keeps_a_last_line_without_newline() {
        assert_eq!(
            cut(&[b"one\ntw", b"o\r\n", b"\nthree"]),
            ["one", "two", "", "three"]
        );
    }

    #[test]
    fn cuts_a_long_line_and_says_how_much_was_cut() {
        let long = vec![b'x'; MAX_LINE_BYTES + 100];
        let lines = cut(&[&long[..5000], &long[5000..], b"\nnext\n"]);
        assert_eq!(
            lines[0],
            format!("{} … [cut: 100 bytes]", "x".repeat(MAX_LINE_BYTES))
        );
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn replaces_bytes_that_are_not_utf8() {
        assert_eq!(cut(&[b"ok \xff\xfe done\n"]), ["ok \u{FFFD}\u{FFFD} done"]);
    }

    #[test]
    fn never_cuts_inside_a_character() {
        let mut long = vec![b'x'; MAX_LINE_BYTES - 1];
        long.extend("é and more".as_bytes());
        let lines = cut(&[&long]);
        let expected = format!("{} … [cut: 11 bytes]", "x".repeat(MAX_LINE_BYTES - 1));
        assert_eq!(lines, [expected]);
    }
}
