//! Plain text tables for stdout, laid out like `docker ps`: each column as
//! wide as its widest cell, columns two spaces apart, no borders, no trailing
//! spaces, never a colour code. Commands give the header and the rows; the
//! layout is decided here.

use comfy_table::presets::NOTHING;

/// Spaces between two columns.
const GAP: u16 = 2;

/// A table of text cells; `to_string()` renders it.
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// A table whose first line names the columns.
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut table = Table::headless();
        table.inner.set_header(strings(header));
        table
    }

    /// A table of rows only.
    pub fn headless() -> Table {
        let mut inner = comfy_table::Table::new();
        // `NOTHING` draws no border and no line between columns; the
        // content arrangement stays `Disabled`, so cells are never wrapped to
        // a width. Built without comfy-table's `tty` feature, it never styles.
        inner.load_style(NOTHING);
        Table { inner }
    }

    /// Adds a row. A row may be shorter than the others: its missing cells
    /// are empty.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.add_row(strings(cells));
        self
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut inner = self.inner.clone();
        for column in inner.column_iter_mut() {
            column.set_padding((0, GAP));
        }
        // The last column's padding, and the padding of short last cells,
        // would end lines in spaces.
        f.write_str(&inner.trim_fmt())
    }
}

fn strings<I, S>(cells: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    cells.into_iter().map(Into::into).collect()
}

/// Labelled values, one a line, the values lined up after the labels:
/// `name:      feat`, `container: skypilot-dev-feat`.
pub fn pairs<'a, I, S>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, S)>,
    S: Into<String>,
{
    let mut table = comfy_table::Table::new();
    table.load_style(NOTHING);
    for (label, value) in pairs {
        table.add_row(vec![format!("{label}:"), value.into()]);
    }
    // One space after the widest label, as in `key: value`.
    for column in table.column_iter_mut() {
        column.set_padding((0, 1));
    }
    table.trim_fmt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let long = "n".repeat(48);
        let mut table = Table::new(["NAME", "STATE", "PORT"]);
        table
            .row(["a", "running", "46580"])
            .row([long.as_str(), "exited", "46581"]);
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                format!("NAME{}  STATE    PORT", " ".repeat(44)),
                format!("a{}  running  46580", " ".repeat(47)),
                format!("{long}  exited   46581"),
            ]
        );
        // Every column starts at the same place on every line.
        let state = lines[0].find("STATE").unwrap();
        assert_eq!(lines[1].find("running"), Some(state));
        assert_eq!(lines[2].find("exited"), Some(state));
    }

    #[test]
    fn short_cells_leave_no_space_at_the_end_of_a_line() {
        let mut table = Table::new(["NAME", "SIZE"]);
        table
            .row(["s1", "1.0 KiB", "(restored)"])
            .row(["s2", ""])
            .row(["snapshot-3"]);
        let text = table.to_string();
        assert_eq!(
            text,
            "NAME        SIZE\n\
             s1          1.0 KiB  (restored)\n\
             s2\n\
             snapshot-3"
        );
        assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
        assert!(!text.ends_with('\n'));
    }

    #[test]
    fn a_headless_table_starts_with_its_first_row() {
        let mut table = Table::headless();
        table
            .row(["problem", "engine", "cannot connect"])
            .row(["", "", "fix: start an engine"])
            .row(["ok", "credentials", "mounted"]);
        assert_eq!(
            table.to_string(),
            "problem  engine       cannot connect\n\
             \x20                     fix: start an engine\n\
             ok       credentials  mounted"
        );
    }

    #[test]
    fn a_header_alone_is_a_table() {
        assert_eq!(Table::new(["NAME", "STATE"]).to_string(), "NAME  STATE");
    }

    #[test]
    fn cells_are_printed_as_given() {
        // No colour, no wrapping, however long; odd characters untouched.
        let long = "x".repeat(300);
        let mut table = Table::headless();
        table.row(["`a b`", "$(id)", long.as_str()]);
        let text = table.to_string();
        assert_eq!(text, format!("`a b`  $(id)  {long}"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn pairs_line_up_their_values() {
        let text = pairs([
            ("name", "feat".to_owned()),
            ("container", "skypilot-dev-feat".to_owned()),
            ("image", String::new()),
        ]);
        assert_eq!(
            text,
            "name:      feat\n\
             container: skypilot-dev-feat\n\
             image:"
        );
    }
}
