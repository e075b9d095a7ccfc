//! Text for a terminal: the one escape every human-readable output of duet goes through
//! (diagnostics, summaries, `explain`, and the runtime's console), so text from a plan, an
//! inventory, a file name or an action's output is shown, never obeyed (docs/decisions.md D48).

use std::borrow::Cow;
use std::fmt::Write as _;

/// A character a terminal would obey rather than show: a control character other than newline
/// and tab (C0, DEL, C1 such as the 8-bit CSI), or a bidirectional override or isolate.
pub fn hostile(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every hostile character ([`hostile`]) written as `\x{..}`: what a terminal
/// shows, never an instruction to it (escape sequences, C1 controls, carriage returns, bells),
/// nor text that reads other than it is. A carriage return ending a line (CRLF) is kept: it
/// moves nothing a newline would not. Escaping twice changes nothing.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            out.push(c);
        } else if hostile(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape`] changes the character at this place (`next`: the character after it).
pub(crate) fn escapes(c: char, next: Option<char>) -> bool {
    hostile(c) && !(c == '\r' && next == Some('\n'))
}

/// `\x{1b}` for ESC: the escaped form of one hostile character.
pub(crate) fn push_escaped(out: &mut String, c: char) {
    let _ = write!(out, "\\x{{{:x}}}", u32::from(c));
}

/// JSON text for a terminal: serde escapes C0 controls in strings, not DEL, C1 controls or
/// bidirectional overrides; these become `\uXXXX` too (outside strings JSON has none), so the
/// text is still the same JSON.
pub fn escape_json(json: String) -> String {
    if !json.chars().any(hostile) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if hostile(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, escape_json};

    #[test]
    fn json_keeps_its_meaning_and_loses_its_controls() {
        let json = serde_json::to_string(&"a\u{9b}b\u{7f}\u{202e}\u{1b}").expect("json");
        let safe = escape_json(json);
        assert_eq!(safe, r#""a\u009bb\u007f\u202e\u001b""#);
        assert_eq!(serde_json::from_str::<String>(&safe).expect("still JSON"), "a\u{9b}b\u{7f}\u{202e}\u{1b}");
    }

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        assert_eq!(escape("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape("\u{1b}[2Jgone"), "\\x{1b}[2Jgone");
        assert_eq!(escape("bell\u{7}"), "bell\\x{7}");
        assert_eq!(escape("nul\u{0}"), "nul\\x{0}");
        assert_eq!(escape("csi\u{9b}2J and\r back"), "csi\\x{9b}2J and\\x{d} back");
        assert_eq!(escape("crlf\r\nline"), "crlf\r\nline");
        assert_eq!(escape("abc\u{202e}fed \u{2066}x"), "abc\\x{202e}fed \\x{2066}x");
        let once = escape("\u{1b}]0;title\u{7}").into_owned();
        assert_eq!(escape(&once), once, "escaping twice changes nothing");
    }
}
