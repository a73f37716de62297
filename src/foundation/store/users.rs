//! The `users` table: API users and their argon2 password hashes.

use super::{unique_violation, Store, StoreError};
use crate::foundation::ids::now_secs;
use rusqlite::{params, OptionalExtension};

/// An API user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    /// PHC string (argon2id); never leaves the daemon.
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Adds a user; a taken name is a conflict.
    pub async fn insert_user(
        &self,
        user_id: &str,
        password_hash: String,
    ) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.call(move |conn| {
            let now = now_secs();
            conn.execute(
                "INSERT INTO users (user_id, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![user_id, password_hash, now],
            )
            .map_err(|e| unique_violation(e, |_| format!("user {user_id} already exists: pick another name")))?;
            Ok(())
        })
        .await
    }

    /// One user by name.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        let user_id = user_id.to_string();
        self.call_read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT user_id, password_hash, created_at, updated_at FROM users WHERE user_id = ?1",
                )?
                .query_row([user_id], |r| {
                    Ok(User {
                        user_id: r.get(0)?,
                        password_hash: r.get(1)?,
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.call_read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT user_id, password_hash, created_at, updated_at FROM users ORDER BY user_id",
            )?;
            let users = stmt
                .query_map([], |r| {
                    Ok(User {
                        user_id: r.get(0)?,
                        password_hash: r.get(1)?,
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(users)
        })
        .await
    }

    /// Replaces a user's password hash.
    pub async fn set_user_password(
        &self,
        user_id: &str,
        password_hash: String,
    ) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE user_id = ?1",
                params![user_id, password_hash, now_secs()],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "user {user_id} does not exist: list users with `rackboot user list`"
                )));
            }
            Ok(())
        })
        .await
    }

    /// Deletes a user; the last user cannot be deleted (nobody could log in).
    pub async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let count: i64 = tx.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
            let exists = tx
                .query_row("SELECT 1 FROM users WHERE user_id = ?1", [&user_id], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound(format!(
                    "user {user_id} does not exist: list users with `rackboot user list`"
                )));
            }
            if count <= 1 {
                return Err(StoreError::WrongState(format!(
                    "user {user_id} is the last user: add another user before deleting it"
                )));
            }
            tx.execute("DELETE FROM users WHERE user_id = ?1", [&user_id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
