//! Text phasegate did not write (a test's output, a remote's or forge's message, an error
//! quoting either), made safe to show on a terminal, in a log line or in a gRPC status: every
//! control character but the tab is written as an escape (`\x1b`, `\n`, `\u{9b}`), so a test
//! printing `ESC]0;…BEL` or `ESC[2J` cannot retitle or clear the operator's terminal, and a
//! newline cannot forge a line of `phasegate runs`, the text log or the Sensor's message.

use std::{borrow::Cow, fmt::Write};

/// `text` with its control characters (C0, DEL, C1; not the tab) escaped.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(shown, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", c as u32);
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// The text log's field formatter: the message and each `name=value` with its control
/// characters escaped, so a field quoting a remote, a forge or a test cannot forge a line of
/// the log (tracing-subscriber escapes ESC and C1 itself, but not newlines). The JSON log
/// escapes them itself.
pub fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = escape_controls(&text);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

fn needs_escape(c: char) -> bool {
    c.is_control() && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_would_drive_a_terminal_and_keeps_the_rest() {
        assert_eq!(
            escape_controls("\u{1b}]0;pwned\u{7}\u{1b}[2Jall tests passed"),
            "\\x1b]0;pwned\\x07\\x1b[2Jall tests passed"
        );
        assert_eq!(escape_controls("a\nb\r\u{9b}31m"), "a\\nb\\r\\u{9b}31m");
        assert!(matches!(
            escape_controls("ok 1 - Dog\tcaf\u{e9}"),
            Cow::Borrowed("ok 1 - Dog\tcaf\u{e9}")
        ));
    }

    #[test]
    fn a_logged_field_cannot_forge_a_line_of_the_text_log() {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(log_fields())
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let hostile = "refused\n2026-12-05T00:00:00Z  INFO forged: all tests passed\u{1b}[2J";
            tracing::warn!(error = %hostile, "run failed: {hostile}");
        });
        let log = String::from_utf8(buffer.lock().expect("log").clone()).expect("utf-8");
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("error=refused\\n2026"), "{log}");
        assert!(log.contains("\\x1b[2J"), "{log}");
        assert!(!log.contains('\u{1b}'), "{log}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
