//! Whether the log carries ANSI colours: only a person at a terminal gets them. A log
//! written to a file, a pipe, journald or `docker logs` stays plain text, and so does
//! every JSON log line.

use serde::Serialize;

/// `log.color`: when the text log may use ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogColor {
    /// Colours when the log goes to a terminal, `NO_COLOR` is unset and `TERM` is not `dumb`.
    Auto,
    /// Colours wherever the log goes (text format only); wins over `NO_COLOR`.
    Always,
    /// Never colours.
    Never,
}

impl LogColor {
    /// Reads `auto`, `always` or `never`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "always" => Some(Self::Always),
            "never" => Some(Self::Never),
            _ => None,
        }
    }
}

/// What the colour decision looks at, gathered by the caller so the rule stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    /// Whether the stream the log is written to (stderr) is a terminal.
    pub is_terminal: bool,
    /// `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub no_color: bool,
    /// `TERM=dumb`: a terminal that cannot show escape codes.
    pub dumb: bool,
}

impl Terminal {
    /// Reads the process's stderr and environment.
    pub fn of_stderr() -> Self {
        use std::io::IsTerminal;
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        Self {
            is_terminal: std::io::stderr().is_terminal(),
            no_color: set("NO_COLOR"),
            dumb: std::env::var_os("TERM").is_some_and(|v| v == "dumb"),
        }
    }
}

/// Whether the log is written with ANSI colours. A JSON log never is: escape codes
/// would end up inside the shipped strings.
pub fn use_ansi(color: LogColor, json: bool, terminal: Terminal) -> bool {
    if json {
        return false;
    }
    match color {
        LogColor::Never => false,
        LogColor::Always => true,
        LogColor::Auto => terminal.is_terminal && !terminal.no_color && !terminal.dumb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Terminal = Terminal {
        is_terminal: true,
        no_color: false,
        dumb: false,
    };

    #[test]
    fn auto_colours_only_a_terminal_that_wants_them() {
        assert!(use_ansi(LogColor::Auto, false, TTY));
        let file = Terminal {
            is_terminal: false,
            ..TTY
        };
        assert!(!use_ansi(LogColor::Auto, false, file));
        let no_color = Terminal {
            no_color: true,
            ..TTY
        };
        assert!(!use_ansi(LogColor::Auto, false, no_color));
        let dumb = Terminal { dumb: true, ..TTY };
        assert!(!use_ansi(LogColor::Auto, false, dumb));
    }

    #[test]
    fn the_setting_wins_over_the_terminal_and_json_is_always_plain() {
        let file_no_color = Terminal {
            is_terminal: false,
            no_color: true,
            dumb: false,
        };
        assert!(use_ansi(LogColor::Always, false, file_no_color));
        assert!(!use_ansi(LogColor::Never, false, TTY));
        for color in [LogColor::Auto, LogColor::Always, LogColor::Never] {
            assert!(!use_ansi(color, true, TTY), "{color:?} with json");
        }
    }

    #[test]
    fn parses_the_three_words_only() {
        assert_eq!(LogColor::parse("auto"), Some(LogColor::Auto));
        assert_eq!(LogColor::parse("always"), Some(LogColor::Always));
        assert_eq!(LogColor::parse("never"), Some(LogColor::Never));
        assert_eq!(LogColor::parse("yes"), None);
        assert_eq!(LogColor::parse("Auto"), None);
    }
}
