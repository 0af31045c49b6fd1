//! Text a peer chose (close reasons, request paths, token subjects, a
//! program's output) in log lines: [`esc`] escapes what could end a line or
//! drive a terminal, so that no value can forge or hide log lines.

use std::fmt;

/// `s` for a log line: control characters (CR, LF, ESC, ...), line and
/// paragraph separators and bidirectional overrides escaped as `\n`,
/// `\u{1b}`, ...; a backslash doubled so that escapes stay unambiguous.
pub fn esc(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// See [`esc`].
pub struct Escaped<'a>(&'a str);

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found a char");
            write!(f, "{}", c.escape_default())?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_terminal_escapes_are_escaped() {
        assert_eq!(
            esc("bye\nINFO forged\r\u{1b}[31m\t").to_string(),
            r"bye\nINFO forged\r\u{1b}[31m\t"
        );
        assert_eq!(esc("a\\nb").to_string(), r"a\\nb");
        assert_eq!(
            esc("\u{202e}evil\u{2028}").to_string(),
            r"\u{202e}evil\u{2028}"
        );
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for s in ["", "/chat/lobby", "café ☕ 日本", "going away"] {
            assert_eq!(esc(s).to_string(), s);
        }
    }
}
