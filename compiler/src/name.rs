//! Names duet turns into file names: services, event logs, disks, volumes and teams, from plans
//! and inventories. The simulated machine keeps `sides/SIDE/logs/NAME.log`, a backup writes
//! `SIDE-NAME.log` into the staging directory, and step ids (`service:NAME@side`) name output
//! files; so every name is checked where it enters, once, and the runtime relies on it
//! (docs/decisions.md D50).

use crate::text;

/// A name is at most this many bytes, so that with duet's prefixes and suffixes
/// (`production-NAME.log`) it fits in one file name (255 bytes on Linux and NTFS).
pub const MAX_BYTES: usize = 200;

/// The JSON-schema pattern mirroring [`problem`] (but for the length), for editors and other
/// tools; duet itself reports a name by [`problem`], with a precise message.
pub const PATTERN: &str = r"^(?:[^.\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[^.\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069][^/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[^\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069][^/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^.\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[^\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069][^/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^./\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069][^/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s/\\:\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069])$";

/// What is wrong with `name` as the name of a service, event log, disk, volume or team, or
/// `None` if it is usable: one line of visible text that is one file name on every platform.
/// Spaces inside, dashes, parentheses and non-ASCII letters are fine (`Microsoft-Windows-Foo`,
/// `SQL Server (MSSQLSERVER)`).
pub fn problem(name: &str) -> Option<&'static str> {
    Some(if name.trim().is_empty() {
        "is blank"
    } else if name.chars().any(|c| c.is_control() || text::hostile(c)) {
        "contains a control character (a line break, a tab, a terminal escape) or a text-direction override"
    } else if name.trim() != name {
        "starts or ends with spaces"
    } else if name.contains(['/', '\\']) {
        "contains a path separator (`/` or `\\`)"
    } else if name.contains(':') {
        "contains `:` (a drive or stream separator on Windows)"
    } else if name.chars().all(|c| c == '.') {
        "is only dots (`.` and `..` name directories)"
    } else if name.len() > MAX_BYTES {
        "is longer than 200 bytes"
    } else {
        return None;
    })
}

/// The help of a diagnostic about an unusable name.
pub fn help(what: &str) -> String {
    format!(
        "write the {what}'s name exactly as the platform knows it: one line of visible text, without `/`, `\\` or `:`, \
         not only dots, at most {MAX_BYTES} bytes (duet makes file names of names)"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const USABLE: &[&str] = &[
        "Application",
        "System",
        "Microsoft-Windows-Foo",
        "Windows PowerShell",
        "SQL Server (MSSQLSERVER)",
        "MSSQL$SQLEXPRESS",
        "a..b",
        ".nan",
        ".hidden",
        "...x",
        "name.",
        "Überwachung",
        "x",
    ];

    pub(crate) const UNUSABLE: &[&str] = &[
        "",
        " ",
        "a\tb",
        "a\nb",
        "nul\0",
        "esc\u{1b}[2J",
        "c1\u{9b}",
        "bidi\u{202e}",
        " pad",
        "pad ",
        "/some/dir/important",
        "../../../../escaped",
        "a/b",
        "a\\b",
        "C:x",
        "a:b",
        ".",
        "..",
        "...",
    ];

    #[test]
    fn windows_names_are_usable_paths_are_not() {
        for name in USABLE {
            assert_eq!(problem(name), None, "{name:?}");
        }
        for name in UNUSABLE {
            assert!(problem(name).is_some(), "{name:?} is refused");
        }
        assert_eq!(problem(&"x".repeat(MAX_BYTES)), None);
        assert_eq!(problem(&"x".repeat(MAX_BYTES + 1)), Some("is longer than 200 bytes"));
    }
}
