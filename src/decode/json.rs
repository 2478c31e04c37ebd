//! JSON body framing: collects one body, up to a limit, to be parsed when it ends.

/// A body being collected.
#[derive(Debug)]
pub(super) struct Body {
    bytes: Vec<u8>,
    /// The body passed the limit: its buffer was dropped and it will not be parsed.
    over_limit: bool,
    limit: usize,
}

impl Body {
    pub(super) fn new(limit: usize) -> Body {
        Body {
            bytes: Vec::new(),
            over_limit: false,
            limit,
        }
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) {
        if self.over_limit {
            return;
        }
        if self.bytes.len().saturating_add(chunk.len()) > self.limit {
            self.over_limit = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }

    /// The whole body, or why it cannot be parsed.
    pub(super) fn finish(&self) -> Result<&[u8], String> {
        if self.over_limit {
            Err(format!(
                "response body over {} bytes, not parsed",
                self.limit
            ))
        } else {
            Ok(&self.bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_within_the_limit_is_kept_whole() {
        let mut body = Body::new(10);
        body.feed(b"{\"a\":");
        body.feed(b"12}");
        assert_eq!(body.finish(), Ok(&b"{\"a\":12}"[..]));
    }

    #[test]
    fn a_body_exactly_at_the_limit_is_kept() {
        let mut body = Body::new(3);
        body.feed(b"{}");
        body.feed(b" ");
        assert_eq!(body.finish(), Ok(&b"{} "[..]));
    }

    #[test]
    fn a_body_over_the_limit_is_dropped_and_reported() {
        let mut body = Body::new(4);
        body.feed(b"{\"a\"");
        body.feed(b":1}");
        body.feed(b"");
        assert_eq!(
            body.finish(),
            Err("response body over 4 bytes, not parsed".to_owned())
        );
        assert_eq!(body.bytes.capacity(), 0);
    }
}
