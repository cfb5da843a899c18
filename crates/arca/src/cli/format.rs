//! Human output: sizes like `10.0G`, aligned tables, `key: value` blocks.

use std::fmt::Write as _;

/// Binary units, one decimal: `512B`, `64.0K`, `10.0G`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut i = 0;
    // 1023.96K would print as "1024.0K": step up before rounding does that.
    while v >= 1023.95 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1}{}", UNITS[i])
}

/// `3 volumes`, `1 snapshot`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// How far a job is: `42%`, or `-` while its size is unknown.
pub fn percent(done: u64, total: u64, finished_ok: bool) -> String {
    if total == 0 {
        return if finished_ok {
            "100%".into()
        } else {
            "-".into()
        };
    }
    let p = (u128::from(done.min(total)) * 100 / u128::from(total)) as u64;
    format!("{p}%")
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table whose columns are as wide as their widest cell, separated by two spaces.
pub struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&'static str, Align)]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| h.len()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(c.chars().count());
                match self.headers[i].1 {
                    Align::Left => {
                        line.push_str(c);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(c);
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// `key:   value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{:<width$}  {v}", format!("{k}:"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(512), "512B");
        assert_eq!(size(64 << 10), "64.0K");
        assert_eq!(size(1536 << 20), "1.5G");
        assert_eq!(size(10 << 30), "10.0G");
        assert_eq!(size((1 << 20) - 1), "1.0M");
        assert_eq!(size(u64::MAX), "16.0E");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&[("NAME", Align::Left), ("SIZE", Align::Right)]);
        t.row(vec!["a".into(), "10.0G".into()]);
        t.row(vec!["long-name".into(), "1B".into()]);
        assert_eq!(
            t.render(),
            "NAME        SIZE\na          10.0G\nlong-name     1B\n"
        );
        assert_eq!(percent(1, 4, false), "25%");
        assert_eq!(percent(0, 0, true), "100%");
        assert_eq!(percent(0, 0, false), "-");
    }
}
