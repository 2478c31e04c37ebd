//! NDJSON framing: cuts a byte stream into `\n`-terminated lines, whatever the chunk
//! boundaries. A chunk may hold several lines or a fraction of one; only the unfinished
//! tail is copied, and that copy is capped.

/// Above this, a line buffer's memory is handed back after use rather than kept for the
/// next line: Ollama's lines are small, and one huge final line should not pin its size.
const KEEP_CAPACITY_BYTES: usize = 64 * 1024;

/// One framed line.
#[derive(Debug, PartialEq)]
pub(super) enum Line<'a> {
    /// A line that is not blank, without its `\n`.
    Complete(&'a [u8]),
    /// A line longer than the limit (given) was dropped, reported once per line.
    Oversize(usize),
}

/// Line splitter state carried between chunks.
#[derive(Debug)]
pub(super) struct Lines {
    /// The start of a line whose `\n` has not arrived yet.
    partial: Vec<u8>,
    /// The current line passed the limit: skip to the next `\n`.
    skipping: bool,
    limit: usize,
}

impl Lines {
    pub(super) fn new(limit: usize) -> Lines {
        Lines {
            partial: Vec::new(),
            skipping: false,
            limit,
        }
    }

    pub(super) fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Line<'_>)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let head = &bytes[..end];
            bytes = &bytes[end + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                self.emit(head, out);
            } else if self.partial.len() + head.len() > self.limit {
                self.release();
                out(Line::Oversize(self.limit));
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                self.emit(&line, out);
                self.partial = line;
                self.partial.clear();
                if self.partial.capacity() > KEEP_CAPACITY_BYTES {
                    self.release();
                }
            }
        }
        if self.skipping || bytes.is_empty() {
            return;
        }
        if self.partial.len() + bytes.len() > self.limit {
            self.release();
            self.skipping = true;
            out(Line::Oversize(self.limit));
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// Emits a last line that had no `\n`.
    pub(super) fn finish(&mut self, out: &mut impl FnMut(Line<'_>)) {
        if !self.skipping && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line, out);
        }
    }

    /// The same test whether the line came whole in one chunk or was pieced together, so
    /// that the split of the chunks never changes the outcome.
    fn emit(&self, line: &[u8], out: &mut impl FnMut(Line<'_>)) {
        if line.len() > self.limit {
            out(Line::Oversize(self.limit));
        } else if !line.iter().all(u8::is_ascii_whitespace) {
            out(Line::Complete(line));
        }
    }

    /// Bytes held for an unfinished line, for tests of the cap.
    #[cfg(test)]
    pub(super) fn buffered_bytes(&self) -> usize {
        self.partial.capacity()
    }

    fn release(&mut self) {
        self.partial = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(limit: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut framer = Lines::new(limit);
        let mut seen = Vec::new();
        let mut out = |line: Line<'_>| {
            seen.push(match line {
                Line::Complete(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Line::Oversize(n) => format!("oversize {n}"),
            });
        };
        for chunk in chunks {
            framer.feed(chunk, &mut out);
        }
        framer.finish(&mut out);
        seen
    }

    #[test]
    fn lines_are_cut_at_newlines_whatever_the_chunks() {
        let expected = ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"];
        assert_eq!(
            lines(100, &[b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"]),
            expected
        );
        assert_eq!(
            lines(100, &[b"{\"a\":", b"1}\n{\"b\":2}\n{", b"\"c\":3}"]),
            expected
        );
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert_eq!(lines(100, &[b"\n\n  \r\n{}\n\n"]), ["{}"]);
    }

    #[test]
    fn a_last_line_without_newline_is_flushed() {
        assert_eq!(lines(100, &[b"{}\n{\"x\"", b":1}"]), ["{}", "{\"x\":1}"]);
    }

    #[test]
    fn an_oversize_line_is_reported_once_and_skipped() {
        let long = [b'x'; 25];
        for chunks in [
            vec![&long[..], b"\n{}\n"],
            vec![&long[..10], &long[10..], b"\n{}\n"],
            vec![&long[..10], &long[10..20], &long[20..], b"\n", b"{}\n"],
        ] {
            assert_eq!(lines(20, &chunks), ["oversize 20", "{}"]);
        }
        assert_eq!(lines(20, &[&long[..]]), ["oversize 20"]);
        assert_eq!(lines(25, &[&long[..]]).len(), 1);
        assert_eq!(lines(25, &[&long[..]])[0].len(), 25);
    }
}
