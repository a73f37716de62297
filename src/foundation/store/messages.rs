//! The `messages` table: user messages (seed 004) recorded when asynchronous
//! work fails, kept until `guaranteed_until` and then purged.

use super::{Store, StoreError};
use rusqlite::{params, params_from_iter, Connection, Row};

/// Severity of a user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageLevel {
    Error,
    Warning,
    Info,
}

impl MessageLevel {
    pub const ALL: [MessageLevel; 3] = [
        MessageLevel::Error,
        MessageLevel::Warning,
        MessageLevel::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageLevel::Error => "ERROR",
            MessageLevel::Warning => "WARNING",
            MessageLevel::Info => "INFO",
        }
    }

    /// Parses a level name, any case.
    pub fn parse(s: &str) -> Option<MessageLevel> {
        MessageLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }
}

/// One recorded user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub event_id: String,
    pub level: MessageLevel,
    /// Rendered from the catalogue's text only.
    pub user_message: String,
    /// `BMNode`, `Node` or `Job`.
    pub resource_type: String,
    pub resource_id: String,
    pub request_id: String,
    pub created_at: i64,
    pub guaranteed_until: i64,
}

/// Which messages DescribeMessages lists, and which page.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub message_ids: Vec<String>,
    pub resource_id: Option<String>,
    pub level: Option<MessageLevel>,
    pub event_id: Option<String>,
    pub offset: u64,
    pub limit: Option<u64>,
}

const COLUMNS: &str = "id, event_id, message_level, user_message, resource_type, resource_id, \
    request_id, created_at, guaranteed_until";

fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let level: String = r.get(2)?;
    Ok(StoredMessage {
        id: r.get(0)?,
        event_id: r.get(1)?,
        level: MessageLevel::parse(&level).unwrap_or(MessageLevel::Error),
        user_message: r.get(3)?,
        resource_type: r.get(4)?,
        resource_id: r.get(5)?,
        request_id: r.get(6)?,
        created_at: r.get(7)?,
        guaranteed_until: r.get(8)?,
    })
}

pub(super) fn insert_message(conn: &Connection, m: &StoredMessage) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO messages ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?
    .execute(params![
        m.id,
        m.event_id,
        m.level.as_str(),
        m.user_message,
        m.resource_type,
        m.resource_id,
        m.request_id,
        m.created_at,
        m.guaranteed_until
    ])?;
    Ok(())
}

impl Store {
    /// Records a user message.
    pub async fn insert_message(&self, message: StoredMessage) -> Result<(), StoreError> {
        self.call(move |conn| Ok(insert_message(conn, &message)?))
            .await
    }

    /// Lists messages matching `filter`, newest first, and the number of all
    /// matches before paging. Expired messages are not listed.
    pub async fn describe_messages(
        &self,
        filter: MessageFilter,
        now: i64,
    ) -> Result<(Vec<StoredMessage>, u64), StoreError> {
        self.call(move |conn| {
            {
                let mut stmt = conn.prepare_cached("SELECT 1 FROM messages WHERE id = ?1 AND guaranteed_until >= ?2")?;
                for id in &filter.message_ids {
                    if !stmt.exists(params![id, now])? {
                        return Err(StoreError::NotFound(format!(
                            "message {id} does not exist (or has expired): list messages with DescribeMessages without message_ids"
                        )));
                    }
                }
            }
            let mut args: Vec<rusqlite::types::Value> = vec![now.into()];
            let mut conds = vec!["guaranteed_until >= ?1".to_string()];
            if !filter.message_ids.is_empty() {
                let marks: Vec<String> = filter
                    .message_ids
                    .iter()
                    .map(|id| {
                        args.push(id.clone().into());
                        format!("?{}", args.len())
                    })
                    .collect();
                conds.push(format!("id IN ({})", marks.join(", ")));
            }
            for (col, value) in [
                ("resource_id", filter.resource_id.clone()),
                ("message_level", filter.level.map(|l| l.as_str().to_string())),
                ("event_id", filter.event_id.clone()),
            ] {
                if let Some(v) = value {
                    args.push(v.into());
                    conds.push(format!("{col} = ?{}", args.len()));
                }
            }
            let where_ = conds.join(" AND ");
            let total: i64 = conn.query_row(
                &format!("SELECT COUNT(*) FROM messages WHERE {where_}"),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            let total = total as u64;
            let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM messages WHERE {where_} ORDER BY created_at DESC, rowid DESC LIMIT {limit} OFFSET {}",
                filter.offset
            ))?;
            let messages = stmt
                .query_map(params_from_iter(args.iter()), from_row)?
                .collect::<Result<_, _>>()?;
            Ok((messages, total))
        })
        .await
    }

    /// Deletes messages all-or-nothing; an unknown id deletes none.
    pub async fn delete_messages(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for id in &ids {
                if tx.execute("DELETE FROM messages WHERE id = ?1", [id])? == 0 {
                    return Err(StoreError::NotFound(format!(
                        "message {id} does not exist (or has expired): check the id with DescribeMessages; nothing was deleted"
                    )));
                }
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Deletes messages whose `guaranteed_until` is before `now`; returns how many.
    pub async fn purge_messages(&self, now: i64) -> Result<usize, StoreError> {
        self.call(move |conn| {
            Ok(conn.execute("DELETE FROM messages WHERE guaranteed_until < ?1", [now])?)
        })
        .await
    }
}
