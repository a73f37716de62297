//! Copies and checks of the database file, for `rackboot db backup` and
//! `rackboot db check`: they work on the file directly (read-only), with or
//! without a daemon running on it (WAL: a reader sees the last committed
//! state, including what is still in the WAL).

use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub bytes: u64,
    pub schema_version: i64,
    pub bm_nodes: i64,
    pub jobs: i64,
}

fn open_read_only(db: &Path) -> Result<Connection, String> {
    if !db.is_file() {
        return Err(format!(
            "{} does not exist: pass the daemon's --state-dir (its rackboot.db)",
            db.display()
        ));
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Writes a consistent copy of `db` to `dest` (which must not exist; mode
/// 0600), checks the copy, and says what it holds.
pub fn backup(db: &Path, dest: &Path) -> Result<BackupReport, String> {
    if dest.exists() {
        return Err(format!(
            "{} exists: name a new file (a backup never overwrites)",
            dest.display()
        ));
    }
    let conn = open_read_only(db)?;
    conn.execute("VACUUM INTO ?1", [dest.to_string_lossy()])
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set the mode of {}: {e}", dest.display()))?;
    }
    let problems = check(dest)?;
    if !problems.is_empty() {
        return Err(format!(
            "the copy in {} failed its check: {}",
            dest.display(),
            problems.join("; ")
        ));
    }
    let copy = open_read_only(dest)?;
    let count = |sql: &str| -> Result<i64, String> {
        copy.query_row(sql, [], |r| r.get(0))
            .map_err(|e| e.to_string())
    };
    Ok(BackupReport {
        bytes: std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0),
        schema_version: count("PRAGMA user_version")?,
        bm_nodes: count("SELECT count(*) FROM bm_nodes")?,
        jobs: count("SELECT count(*) FROM jobs")?,
    })
}

/// SQLite's full integrity check and the foreign-key check of `db`: the
/// problems found (empty: none).
pub fn check(db: &Path) -> Result<Vec<String>, String> {
    check_inner(db).map_err(|e| {
        format!(
            "{}: {e} (restore the last backup, or the copy made before the last schema upgrade)",
            db.display()
        )
    })
}

fn check_inner(db: &Path) -> Result<Vec<String>, String> {
    let conn = open_read_only(db)?;
    let mut problems = Vec::new();
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    for r in rows {
        let line = r.map_err(|e| e.to_string())?;
        if line != "ok" {
            problems.push(line);
        }
    }
    let mut stmt = conn
        .prepare("PRAGMA foreign_key_check")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok(format!(
                "table {} row {} points to a missing {} row",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1).unwrap_or(-1),
                r.get::<_, String>(2)?
            ))
        })
        .map_err(|e| e.to_string())?;
    for r in rows {
        problems.push(r.map_err(|e| e.to_string())?);
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::store::Store;

    #[tokio::test]
    async fn a_backup_of_a_live_database_holds_its_last_commit_and_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rackboot.db");
        let store = Store::open(&db).unwrap();
        store.insert_user("admin", "h".into()).await.unwrap();
        // The daemon still runs (its WAL not folded in): the copy has it all.
        let dest = dir.path().join("copy.db");
        let report = backup(&db, &dest).unwrap();
        assert_eq!(
            report.schema_version,
            crate::foundation::store::schema::SCHEMA_VERSION
        );
        assert_eq!((report.bm_nodes, report.jobs), (0, 0));
        let copy = Connection::open(&dest).unwrap();
        let users: i64 = copy
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(check(&dest).unwrap().is_empty());
        // Never over an existing file; a missing database is named.
        assert!(backup(&db, &dest).unwrap_err().contains("exists"));
        assert!(
            backup(&dir.path().join("none.db"), &dir.path().join("x.db"))
                .unwrap_err()
                .contains("--state-dir")
        );
    }

    #[test]
    fn check_finds_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rackboot.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("CREATE TABLE t (x TEXT); CREATE INDEX t_x ON t (x);")
                .unwrap();
            for i in 0..2000 {
                c.execute(
                    "INSERT INTO t VALUES (?1)",
                    [format!("row {i} with some text")],
                )
                .unwrap();
            }
        }
        // Overwrite part of a page in the middle of the file.
        let mut bytes = std::fs::read(&db).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 512] {
            *b = 0x55;
        }
        std::fs::write(&db, bytes).unwrap();
        let found = check(&db);
        assert!(
            found.as_ref().map_or(true, |p| !p.is_empty()),
            "a damaged file passed: {found:?}"
        );
    }
}
