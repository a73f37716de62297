//! Human output of API responses: a table for list fields (columns declared in
//! the action catalogue; fitted to the terminal's width, never cut when
//! piped), `key: value` lines for the rest and for the detail view of one
//! item, numbered lines for job logs.

use crate::transport::api::catalogue::Table;
use serde_json::{Map, Value};

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Looks up a dotted path (`general.hostname`) in `item`.
fn at<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, key| v.get(key))
}

/// The width tables are fitted to: stdout's terminal width (`COLUMNS`
/// first, as shells export it), None when stdout is not a terminal (piped
/// output is never cut).
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    // SAFETY: TIOCGWINSZ fills the winsize we pass; fd 1 is a terminal.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// The narrowest a column gets when a table is fitted (its header is cut too).
const MIN_COLUMN: usize = 4;

/// Narrows `widths` (two spaces between columns) until they fit `width`,
/// taking from the widest column first, none below [`MIN_COLUMN`].
fn fit(widths: &mut [usize], width: usize) {
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    while total(widths) > width {
        let Some((i, _)) = widths
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > MIN_COLUMN)
            .max_by_key(|(_, w)| **w)
        else {
            return; // as narrow as it goes: the terminal wraps the rest
        };
        widths[i] -= 1;
    }
}

/// `cell` cut to `width` characters, its last one `…` when cut.
fn cut(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    let mut s: String = cell.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Renders `rows` × `columns` as a left-aligned table, fitted to `width`
/// columns when given (cut cells end in `…`).
pub fn table(items: &[Value], columns: &[(&str, &str)], width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, path)| at(item, path).map(scalar).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut widths = widths;
    if let Some(w) = width {
        fit(&mut widths, w);
    }
    let limit = width.is_some();
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            let cell = if limit { cut(&cell, widths[i]) } else { cell };
            if i == last {
                out.push_str(&cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(
        columns.iter().map(|(h, _)| h.to_string()).collect(),
        &mut out,
    );
    for r in rows {
        line(r, &mut out);
    }
    out
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            out.push((
                prefix.to_string(),
                a.iter().map(scalar).collect::<Vec<_>>().join(", "),
            ));
        }
        other => out.push((prefix.to_string(), scalar(other))),
    }
}

/// One item as `key: value` lines (nested keys dotted): the detail view of
/// a describe action asked for exactly one id.
pub fn detail(item: &Value) -> String {
    let mut pairs = Vec::new();
    flatten("", item, &mut pairs);
    let key_width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .into_iter()
        .map(|(k, v)| format!("{:<w$} {v}\n", format!("{k}:"), w = key_width + 1))
        .collect()
}

/// Renders a successful response for a person: tables fitted to `width`
/// (None: never cut); with `one`, a table of exactly one item is shown as
/// its detail view.
pub fn human(
    response: &Value,
    table_spec: Option<&Table>,
    width: Option<usize>,
    one: bool,
) -> String {
    let Some(obj) = response.as_object() else {
        return format!("{response}\n");
    };
    if let (true, Some(t)) = (one, table_spec) {
        if let Some(Value::Array(items)) = obj.get(t.field) {
            if let [item] = items.as_slice() {
                return detail(item);
            }
        }
    }
    let mut out = String::new();
    let rest: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "action" | "ret_code"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut pairs = Vec::new();
    for (k, v) in &rest {
        match (k.as_str(), v, table_spec) {
            (f, Value::Array(items), Some(t)) if f == t.field => {
                out.push_str(&table(items, t.columns, width))
            }
            ("log", Value::Object(lines), _) => {
                for (n, line) in lines {
                    out.push_str(&format!("{n}  {}\n", scalar(line)));
                }
            }
            _ => flatten(k, v, &mut pairs),
        }
    }
    for (k, v) in pairs {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_follow_paths() {
        let items = vec![
            json!({"node_id": "n-1", "general": {"hostname": "a"}}),
            json!({"node_id": "n-22"}),
        ];
        let t = table(
            &items,
            &[("ID", "node_id"), ("HOST", "general.hostname")],
            None,
        );
        assert_eq!(t, "ID    HOST\nn-1   a\nn-22  \n");
    }

    #[test]
    fn tables_fit_the_terminal_width_and_are_never_cut_when_piped() {
        let items = vec![
            json!({"id": "n-aaaaaaaa", "desc": "a rather long description of this node", "s": "new"}),
        ];
        let cols = [("ID", "id"), ("DESCRIPTION", "desc"), ("S", "s")];
        let piped = table(&items, &cols, None);
        assert!(
            piped.contains("a rather long description of this node  new"),
            "{piped}"
        );
        let narrow = table(&items, &cols, Some(40));
        for line in narrow.lines() {
            assert!(line.chars().count() <= 40, "{line:?} is wider than 40");
        }
        // The widest column gave way; the ids and the status are whole.
        assert!(
            narrow.contains("n-aaaaaaaa  a rather long descript…  new"),
            "{narrow}"
        );
        // Too narrow for anything: columns of 4 (headers cut too), the terminal wraps.
        let tiny = table(&items, &cols, Some(5));
        assert!(
            tiny.starts_with("ID    DES…  S\nn-a…  a r…  new\n"),
            "{tiny:?}"
        );
    }

    #[test]
    fn one_item_is_shown_as_key_value_lines() {
        let spec = Table {
            field: "node_set",
            columns: &[("NODE_ID", "node_id")],
        };
        let r = json!({"node_set": [{"node_id": "n-1", "general": {"hostname": "web1"}}], "total_count": 1});
        let h = human(&r, Some(&spec), None, true);
        assert_eq!(h, "node_id:          n-1\ngeneral.hostname: web1\n");
        // Not asked for one id: the table.
        let h = human(&r, Some(&spec), None, false);
        assert!(h.starts_with("NODE_ID\nn-1\n"), "{h}");
    }

    #[test]
    fn nested_fields_are_flattened_and_logs_numbered() {
        let r = json!({"action": "X", "status": "failed", "node_progress": {"n-1": {"progress": "10%"}}, "log": {"001": "hi"}, "ret_code": 0});
        let h = human(&r, None, None, false);
        assert!(h.contains("status: failed\n"), "{h}");
        assert!(h.contains("node_progress.n-1.progress: 10%\n"), "{h}");
        assert!(h.contains("001  hi\n"), "{h}");
        assert!(!h.contains("ret_code"));
    }
}
