//! Small text helpers every part shares: an error with its causes on one line, a value
//! percent-encoded for a URL, and the one set of number formats people read (in
//! recommendation reasons, warnings, the dashboard's tables and the CLI's). Pure; depends
//! on nothing else in the crate.

/// An error and its causes on one line: reqwest's own message ("error sending request")
/// says nothing until its source ("connection refused") is added. A cause already quoted
/// by the text so far is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

/// A panic's message (the payload of `panic!` with a string), or "(no message)".
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Percent-encodes a value for a query string or a path segment (model names carry `:`
/// and `/`; with `keep_slash`, `/` stays as it is, for paths).
pub fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Rounds to 3 decimals: an `f32` sample widened to `f64` keeps its binary error, so
/// 1234.56 comes back as 1234.56005859375 without this; 3 decimals is still finer than
/// anything measured.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// A duration for a sentence: "850 ms" below a second, "1.2 s" from there.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A duration for a table, where columns are compared: "850 ms", "1.23 s", "75.0 s".
pub fn fmt_ms_precise(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// MiB as GB, one decimal ("9.4 GB"), the way Ollama prints sizes.
pub fn fmt_gb(mb: f64) -> String {
    format!("{:.1} GB", mb / 1024.0)
}

/// MiB in the unit that reads best: "812 MB" below a GB, "9.4 GB" from there.
pub fn fmt_mb(mb: f64) -> String {
    if mb >= 1024.0 {
        fmt_gb(mb)
    } else {
        format!("{mb:.0} MB")
    }
}

/// Hours: "24 h", "0.5 h".
pub fn fmt_hours(hours: f64) -> String {
    format!("{} h", round3(hours))
}

/// A share (0 to 1) as a percentage: "98.5%", and "100%" without a needless ".0".
pub fn fmt_percent(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&e), "error sending request: connection refused");
        let plain = std::io::Error::other("boom");
        assert_eq!(error_chain(&plain), "boom");
    }

    #[test]
    fn names_are_encoded_for_urls() {
        assert_eq!(encode("hf.co/org/m:Q4 K", true), "hf.co/org/m:Q4%20K");
        assert_eq!(encode("a,b&c", false), "a%2Cb%26c");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_ms(850.4), "850 ms");
        assert_eq!(fmt_ms(1234.0), "1.2 s");
        assert_eq!(fmt_ms_precise(850.4), "850 ms");
        assert_eq!(fmt_ms_precise(1234.5), "1.23 s");
        assert_eq!(fmt_ms_precise(75_000.0), "75.0 s");
        assert_eq!(fmt_gb(9625.6), "9.4 GB");
        assert_eq!(fmt_mb(812.0), "812 MB");
        assert_eq!(fmt_mb(9625.6), "9.4 GB");
        assert_eq!(fmt_hours(24.0), "24 h");
        assert_eq!(fmt_percent(1.0), "100%");
        assert_eq!(fmt_percent(0.985), "98.5%");
        assert_eq!(fmt_percent(0.75), "75%");
        assert_eq!(round3(f64::from(1234.56_f32)), 1234.56);
    }
}
