//! Human output of API responses: a table for list fields (columns declared in
//! the action catalogue), `key: value` lines for the rest, numbered lines
//! for job logs.

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

/// Renders `rows` × `columns` as a left-aligned table.
pub fn table(items: &[Value], columns: &[(&str, &str)]) -> String {
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
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
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

/// Renders a successful response for a person.
pub fn human(response: &Value, table_spec: Option<&Table>) -> String {
    let Some(obj) = response.as_object() else {
        return format!("{response}\n");
    };
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
                out.push_str(&table(items, t.columns))
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
        let t = table(&items, &[("ID", "node_id"), ("HOST", "general.hostname")]);
        assert_eq!(t, "ID    HOST\nn-1   a\nn-22  \n");
    }

    #[test]
    fn nested_fields_are_flattened_and_logs_numbered() {
        let r = json!({"action": "X", "status": "failed", "node_progress": {"n-1": {"progress": "10%"}}, "log": {"001": "hi"}, "ret_code": 0});
        let h = human(&r, None);
        assert!(h.contains("status: failed\n"), "{h}");
        assert!(h.contains("node_progress.n-1.progress: 10%\n"), "{h}");
        assert!(h.contains("001  hi\n"), "{h}");
        assert!(!h.contains("ret_code"));
    }
}
