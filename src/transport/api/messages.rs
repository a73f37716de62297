//! User-message actions (seed 004): DescribeMessages and DeleteMessages.

use super::{fields, Call, HandlerFuture};
use crate::foundation::errors::ApiError;
use crate::foundation::ids::{format_time, is_id, now_secs, MESSAGE_PREFIX};
use crate::foundation::store::{MessageFilter, MessageLevel};
use crate::service::app::App;
use serde_json::{json, Value};
use std::sync::Arc;

fn check_ids(ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > super::bmnodes::MAX_IDS {
        return Err(ApiError::field(
            "message_ids",
            format!(
                "{} ids in one request; send at most {} per request",
                ids.len(),
                super::bmnodes::MAX_IDS
            ),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if !is_id(id, MESSAGE_PREFIX) {
            return Err(ApiError::field(
                &format!("message_ids[{i}]"),
                format!("`{id}` is not a message id (m- followed by 8 letters or digits)"),
            ));
        }
    }
    Ok(())
}

pub fn describe(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let p = &call.params;
        let message_ids = p.list("message_ids");
        check_ids(&message_ids)?;
        let level = match p.str("level") {
            None => None,
            Some(l) => Some(MessageLevel::parse(l).ok_or_else(|| {
                ApiError::field(
                    "level",
                    format!("`{l}` is not a message level (allowed: ERROR, WARNING, INFO)"),
                )
            })?),
        };
        let (offset, limit) = p.paging()?;
        let filter = MessageFilter {
            message_ids,
            resource_id: p.str("resource_id").map(str::to_string),
            level,
            event_id: p.str("event_id").map(str::to_string),
            offset,
            limit,
        };
        let (messages, total) = app.store.describe_messages(filter, now_secs()).await?;
        let set: Vec<Value> = messages
            .into_iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "event_id": m.event_id,
                    "user_message": m.user_message,
                    "message_level": m.level.as_str(),
                    "resource_type": m.resource_type,
                    "resource_id": m.resource_id,
                    "request_id": m.request_id,
                    "created_at": format_time(m.created_at),
                    "guaranteed_until": format_time(m.guaranteed_until),
                })
            })
            .collect();
        Ok(fields([
            ("message_set", Value::Array(set)),
            ("total_count", total.into()),
        ]))
    })
}

pub fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let unique = call.params.unique_list("message_ids");
        check_ids(&unique)?;
        let deleted = app.store.delete_messages(unique).await?;
        let count = deleted.len();
        Ok(fields([
            ("message_ids", json!(deleted)),
            ("total_count", count.into()),
        ]))
    })
}
