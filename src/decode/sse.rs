//! Server-sent events framing, after the WHATWG "event stream interpretation" rules:
//! lines end with `\n`, `\r\n` or `\r` (a `\r` that ends one chunk may meet its `\n` at the
//! start of the next); `data:` lines, with one optional space after the colon, join with
//! `\n`; `event:` sets the type; lines starting with `:` are comments; a blank line
//! dispatches. Unlike a browser, a pending event is dispatched at the end of the body: a
//! proxy measuring a call wants the last event even when the final blank line is missing.

/// Once a line or an event's buffers grow past this they are freed after use, not kept.
const KEEP_CAPACITY_BYTES: usize = 64 * 1024;

/// The byte order mark a stream may start with, which the rules say to drop.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, PartialEq)]
pub(super) enum Event<'a> {
    /// An event with data; `name` is its `event:` type, if one was given and is UTF-8.
    Complete {
        name: Option<&'a str>,
        data: &'a [u8],
    },
    /// An event was dropped for holding a line or data longer than the limit (given).
    Oversize(usize),
}

/// Event parser state carried between chunks.
#[derive(Debug)]
pub(super) struct Events {
    /// The start of a line whose terminator has not arrived yet.
    line: Vec<u8>,
    /// The current line passed the limit: skip to its end.
    skipping_line: bool,
    /// The last chunk ended in `\r`, so a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// No line has ended yet, so a leading byte order mark is still to be dropped.
    first_line: bool,
    /// `data:` values seen so far for this event, each followed by `\n`.
    data: Vec<u8>,
    event_type: Vec<u8>,
    /// A line of this event passed the limit: drop the event when it is dispatched.
    oversize: bool,
    limit: usize,
}

impl Events {
    pub(super) fn new(limit: usize) -> Events {
        Events {
            line: Vec::new(),
            skipping_line: false,
            after_cr: false,
            first_line: true,
            data: Vec::new(),
            event_type: Vec::new(),
            oversize: false,
            limit,
        }
    }

    pub(super) fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Event<'_>)) {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let head = &bytes[..end];
            if bytes[end] == b'\r' {
                match bytes.get(end + 1) {
                    Some(&b'\n') => bytes = &bytes[end + 2..],
                    Some(_) => bytes = &bytes[end + 1..],
                    None => {
                        self.after_cr = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[end + 1..];
            }
            if self.skipping_line {
                self.skipping_line = false;
                self.first_line = false;
            } else if self.line.is_empty() {
                self.end_line(head, out);
            } else if self.line.len() + head.len() > self.limit {
                self.line = Vec::new();
                self.first_line = false;
                self.oversize = true;
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.end_line(&line, out);
                self.line = line;
                self.line.clear();
                if self.line.capacity() > KEEP_CAPACITY_BYTES {
                    self.line = Vec::new();
                }
            }
        }
        if self.skipping_line || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > self.limit {
            self.line = Vec::new();
            self.skipping_line = true;
            self.oversize = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// Ends an unterminated last line, then dispatches the event it belonged to.
    pub(super) fn finish(&mut self, out: &mut impl FnMut(Event<'_>)) {
        if !self.skipping_line && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, out);
        }
        self.dispatch(out);
    }

    /// Interprets one complete line. The length test is the same whether the line came
    /// whole or in pieces, so the chunk split never changes the outcome.
    fn end_line(&mut self, mut line: &[u8], out: &mut impl FnMut(Event<'_>)) {
        if line.len() > self.limit {
            self.oversize = true;
            self.first_line = false;
            return;
        }
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' || self.oversize {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    self.oversize = true;
                    self.data = Vec::new();
                } else {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                }
            }
            // `id` and `retry` steer a browser's reconnection; nothing to measure.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut impl FnMut(Event<'_>)) {
        if std::mem::take(&mut self.oversize) {
            out(Event::Oversize(self.limit));
        } else if !self.data.is_empty() {
            let data = &self.data[..self.data.len() - 1];
            let name = Some(self.event_type.as_slice())
                .filter(|name| !name.is_empty())
                .and_then(|name| std::str::from_utf8(name).ok());
            out(Event::Complete { name, data });
        }
        self.data.clear();
        self.event_type.clear();
        if self.data.capacity() > KEEP_CAPACITY_BYTES {
            self.data = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(limit: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut framer = Events::new(limit);
        let mut seen = Vec::new();
        let mut out = |event: Event<'_>| {
            seen.push(match event {
                Event::Complete { name, data } => {
                    format!("{}|{}", name.unwrap_or("-"), String::from_utf8_lossy(data))
                }
                Event::Oversize(n) => format!("oversize {n}"),
            });
        };
        for chunk in chunks {
            framer.feed(chunk, &mut out);
        }
        framer.finish(&mut out);
        seen
    }

    /// Every split of `input` into two chunks, and byte by byte, gives `expected`.
    fn check_all_splits(limit: usize, input: &[u8], expected: &[&str]) {
        assert_eq!(events(limit, &[input]), expected, "whole");
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(events(limit, &[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(events(limit, &bytes), expected, "byte by byte");
    }

    #[test]
    fn all_three_line_endings_are_recognised() {
        let expected = ["-|a", "-|b", "-|c"];
        check_all_splits(100, b"data: a\n\ndata: b\r\n\r\ndata: c\r\r", &expected);
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_meets_its_lf_in_the_next() {
        assert_eq!(
            events(100, &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            ["-|a\nb"]
        );
    }

    #[test]
    fn cr_then_cr_is_a_blank_line() {
        assert_eq!(
            events(100, &[b"data: a\r", b"\r", b"data: b"]),
            ["-|a", "-|b"]
        );
    }

    #[test]
    fn data_lines_join_with_newlines_and_lose_one_leading_space() {
        check_all_splits(
            100,
            b"data:a\ndata:  b\ndata\ndata: c\n\n",
            &["-|a\n b\n\nc"],
        );
    }

    #[test]
    fn event_sets_the_type_and_comments_are_ignored() {
        let input =
            b": keep-alive\nevent: message_start\ndata: {\"type\":\"x\"}\nid: 7\nretry: 10\n\n\
            event: ping\n\ndata: after\n\n";
        check_all_splits(100, input, &["message_start|{\"type\":\"x\"}", "-|after"]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(
            events(100, &[b"event: x\n\n\n\nid: 1\n\n"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_pending_event_is_flushed_at_the_end() {
        check_all_splits(100, b"data: [DONE]", &["-|[DONE]"]);
        check_all_splits(100, b"event: e\ndata: x\n", &["e|x"]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped_only_at_the_start() {
        check_all_splits(100, b"\xEF\xBB\xBFdata: a\n\n", &["-|a"]);
        assert_eq!(
            events(100, &[b"\xEF\xBB\xBF\n\xEF\xBB\xBFdata: a\n\n"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_field_name_is_matched_exactly() {
        assert_eq!(events(100, &[b"Data: a\ndata : b\ndata: c\n\n"]), ["-|c"]);
    }

    #[test]
    fn an_oversize_line_drops_its_event_only() {
        let mut input = b"data: ".to_vec();
        input.extend_from_slice(&[b'x'; 30]);
        input.extend_from_slice(b"\ndata: more\n\ndata: next\n\n");
        check_all_splits(20, &input, &["oversize 20", "-|next"]);
    }

    #[test]
    fn oversize_data_across_lines_drops_the_event() {
        check_all_splits(
            20,
            b"data: 0123456789\ndata: 0123456789\n\ndata: ok\n\n",
            &["oversize 20", "-|ok"],
        );
    }

    #[test]
    fn an_oversize_last_line_is_reported_at_the_end() {
        let mut input = b"data: ok\n\ndata: ".to_vec();
        input.extend_from_slice(&[b'y'; 30]);
        check_all_splits(20, &input, &["-|ok", "oversize 20"]);
    }

    #[test]
    fn a_non_utf8_event_name_reads_as_none() {
        assert_eq!(events(100, &[b"event: \xff\ndata: x\n\n"]), ["-|x"]);
    }
}
