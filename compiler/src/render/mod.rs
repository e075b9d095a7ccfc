//! What `duet compile` and `duet explain` print: the Upgrade Summary, the DAGs as DOT and
//! Mermaid, and the provenance of every resolved setting. Pure functions of compiled data.
//! What they return for people is escaped ([`crate::text::escape`]): titles, comments, file
//! names and arguments come from plans, and are shown, never obeyed by the terminal.

pub mod explain;
pub mod failures;
pub mod graph;
pub mod junit;
pub mod sarif;
pub mod summary;

use std::fmt::Write;

/// Left-aligned columns; the last column is not padded. Cells are escaped before they are
/// measured, so a column stays aligned whatever a cell holds.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let rows: Vec<Vec<std::borrow::Cow<'_, str>>> =
        rows.iter().map(|r| r.iter().map(|c| crate::text::escape(c)).collect()).collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
