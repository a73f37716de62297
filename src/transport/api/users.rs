//! User actions: DescribeUsers, AddUser, ModifyUserPassword, DeleteUser.
//! (`rackboot user add|passwd|delete|list` map onto them.)

use super::{fields, Call, Fields, HandlerFuture};
use crate::foundation::auth;
use crate::foundation::errors::ApiError;
use crate::foundation::ids::format_time;
use crate::service::app::App;
use serde_json::{json, Value};
use std::sync::Arc;

fn check_user_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ApiError::field(
            "user_id",
            format!("`{id}` is not a user name (1 to 64 letters, digits, '.', '_' or '-')"),
        ));
    }
    Ok(())
}

/// The password to set: the one given (checked against the policy) or a
/// generated one, which is then returned in the response.
fn new_password(call: &Call) -> Result<(String, bool), ApiError> {
    match call.params.str("new_password") {
        Some(pw) => {
            auth::check_new_password(pw).map_err(|why| ApiError::field("new_password", why))?;
            Ok((pw.to_string(), false))
        }
        None => Ok((auth::generate_password(), true)),
    }
}

async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::internal()
        })
}

fn password_fields(password: String, generated: bool) -> Fields {
    if generated {
        fields([("new_password", password.into())])
    } else {
        Fields::new()
    }
}

pub fn describe(app: Arc<App>, _call: Call) -> HandlerFuture {
    Box::pin(async move {
        let users = app.store.list_users().await?;
        let set: Vec<Value> = users
            .into_iter()
            .map(|u| {
                json!({
                    "user_id": u.user_id,
                    "create_time": format_time(u.created_at),
                    "update_time": format_time(u.updated_at),
                })
            })
            .collect();
        let count = set.len();
        Ok(fields([
            ("user_set", Value::Array(set)),
            ("total_count", count.into()),
        ]))
    })
}

pub fn add(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user_id = call.params.str("user_id").unwrap_or_default().to_string();
        check_user_id(&user_id)?;
        let (password, generated) = new_password(&call)?;
        app.store
            .insert_user(&user_id, hash(password.clone()).await?)
            .await?;
        tracing::info!(request_id = %call.caller.request_id, by = %call.caller.user_id, user = %user_id, "user added");
        let mut out = fields([("user_id", user_id.into())]);
        out.extend(password_fields(password, generated));
        Ok(out)
    })
}

pub fn passwd(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user_id = call.params.str("user_id").unwrap_or_default().to_string();
        check_user_id(&user_id)?;
        let (password, generated) = new_password(&call)?;
        app.store
            .set_user_password(&user_id, hash(password.clone()).await?)
            .await?;
        app.logins.forget(&user_id);
        tracing::info!(request_id = %call.caller.request_id, by = %call.caller.user_id, user = %user_id, "password changed");
        let mut out = fields([("user_id", user_id.into())]);
        out.extend(password_fields(password, generated));
        Ok(out)
    })
}

pub fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user_id = call.params.str("user_id").unwrap_or_default().to_string();
        check_user_id(&user_id)?;
        app.store.delete_user(&user_id).await?;
        app.logins.forget(&user_id);
        tracing::info!(request_id = %call.caller.request_id, by = %call.caller.user_id, user = %user_id, "user deleted");
        Ok(fields([("user_id", user_id.into())]))
    })
}
