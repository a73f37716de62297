//! The action API (seed 002): one JSON object in (`action`, `request_type`,
//! `USER_ID`, `PASSWORD` and the action's parameters), one JSON object out
//! (`action` = `<Action>Response`, `ret_code`, fields). This module parses a
//! request, authenticates it, type-checks its parameters against the
//! action's declaration in [`catalogue::ACTIONS`] and runs the handler; the
//! transport lives in [`server`].

pub mod catalogue;
pub mod params;
pub mod server;

mod bmnodes;
mod boot_events;
mod console;
mod health;
mod jobs;
mod messages;
mod nodes;
pub mod power;
mod provision;
mod scan;
mod users;

use crate::foundation::errors::{ApiError, RetCode};
use crate::foundation::ids::{new_id, REQUEST_PREFIX};
use crate::service::app::App;
use crate::service::logins::{Peer, Verdict};
use catalogue::{find_action, Action};
use params::Params;
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The `Upgrade` protocol of ConnectBMNodeConsole's byte stream.
pub fn console_protocol() -> &'static str {
    console::UPGRADE_PROTOCOL
}

/// Who sent a request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user_id: String,
    /// `req-…`, logged and recorded on jobs and messages started by it.
    pub request_id: String,
}

/// A request after checks: its parameters and its caller.
pub struct Call {
    pub params: Params,
    pub caller: Caller,
    /// For job-specific status/log actions: the job action they read.
    pub fixed_job_action: Option<&'static str>,
}

/// The fields of a successful response (without `action`/`ret_code`), in
/// order, each serialized once when added: large answers (10,000 nodes) go
/// from the store's rows straight to bytes, with no `Value` tree in between.
#[derive(Default)]
pub struct Fields(Vec<(&'static str, Vec<u8>)>);

impl Fields {
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    /// Adds `key` with `value` serialized.
    pub fn with(mut self, key: &'static str, value: impl Serialize) -> Fields {
        self.insert(key, value);
        self
    }

    /// Adds `key` with `value` serialized (a value that cannot be serialized,
    /// which our types never are, is logged and sent as null).
    pub fn insert(&mut self, key: &'static str, value: impl Serialize) {
        let bytes = serde_json::to_vec(&value).unwrap_or_else(|e| {
            tracing::error!(key, "cannot serialize response field: {e}");
            b"null".to_vec()
        });
        self.0.push((key, bytes));
    }

    /// Adds `key` with JSON text the caller produced with serde_json.
    pub fn insert_json(&mut self, key: &'static str, json: Vec<u8>) {
        self.0.push((key, json));
    }

    pub fn extend(&mut self, other: Fields) {
        self.0.extend(other.0);
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Fields, ApiError>> + Send>>;
pub type Handler = fn(Arc<App>, Call) -> HandlerFuture;

/// What the transport logs about a request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub request_id: String,
    pub action: String,
    pub user_id: String,
    pub ret_code: i64,
}

/// Builds the error response for `action_name`.
pub fn error_response(action_name: &str, e: &ApiError) -> Value {
    let mut out = Map::new();
    out.insert("action".into(), format!("{action_name}Response").into());
    out.insert("ret_code".into(), e.code.code().into());
    out.insert("message".into(), e.message.clone().into());
    Value::Object(out)
}

/// Encodes a successful response (`action`, the fields, `ret_code` 0) as
/// pieces to send one after another: a large field is sent as it was
/// serialized, never copied into one buffer with the rest.
fn encode_success(action_name: &str, fields: Fields) -> Vec<Vec<u8>> {
    let mut pieces = Vec::with_capacity(fields.0.len() * 2 + 1);
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(b"{\"action\":\"");
    head.extend_from_slice(action_name.as_bytes()); // checked: ASCII letters/digits only
    head.extend_from_slice(b"Response\"");
    for (key, value) in fields.0 {
        head.push(b',');
        let _ = serde_json::to_writer(&mut head, key);
        head.push(b':');
        if value.len() < 4096 {
            head.extend_from_slice(&value);
        } else {
            pieces.push(std::mem::take(&mut head));
            pieces.push(value);
        }
    }
    head.extend_from_slice(b",\"ret_code\":0}");
    pieces.push(head);
    pieces
}

/// Handles one request body from `peer` and returns the response body, in
/// pieces to be sent in order; never fails (errors become responses). The
/// password is checked before a request slot of `slots` is taken: a queue
/// of wrong guesses never holds the slots of authenticated work.
pub async fn handle(
    app: Arc<App>,
    body: &[u8],
    peer: Peer,
    slots: &tokio::sync::Semaphore,
) -> (Vec<Vec<u8>>, Outcome) {
    let mut outcome = Outcome {
        request_id: new_id(REQUEST_PREFIX),
        ..Outcome::default()
    };
    let (response_name, result) = match parse_and_run(&app, body, peer, slots, &mut outcome).await {
        Ok((name, fields)) => (name, Ok(fields)),
        Err((name, e)) => (name, Err(e)),
    };
    outcome.action = response_name.clone();
    let response = match result {
        Ok(fields) => encode_success(&response_name, fields),
        Err(e) => {
            outcome.ret_code = e.code.code();
            vec![serde_json::to_vec(&error_response(&response_name, &e)).unwrap_or_default()]
        }
    };
    (response, outcome)
}

type Failure = (String, ApiError);

/// The JSON object of a request body, or the error to answer.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not valid JSON ({e}); send one JSON object such as {{\"action\": \"DescribeBMNodes\", \"USER_ID\": \"admin\", \"PASSWORD\": \"…\"}}"
        ))
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::bad(
            "the request body must be a JSON object with an `action` field",
        ));
    };
    Ok(obj)
}

async fn parse_and_run(
    app: &Arc<App>,
    body: &[u8],
    peer: Peer,
    slots: &tokio::sync::Semaphore,
    outcome: &mut Outcome,
) -> Result<(String, Fields), Failure> {
    let fail = |name: &str, e: ApiError| (name.to_string(), e);
    let obj = parse_body(body).map_err(|e| fail("Error", e))?;
    let action_name = match obj.get("action") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None if obj.contains_key("bm_nodes") => {
            // Seed 002's RegisterBMNodes example sends only `bm_nodes`.
            "RegisterBMNodes".to_string()
        }
        None | Some(Value::Null) => {
            return Err(fail(
                "Error",
                ApiError::missing("action", " (the action to run, e.g. \"DescribeBMNodes\")"),
            ))
        }
        Some(Value::String(_)) => {
            return Err(fail(
                "Error",
                ApiError::field("action", "must not be empty"),
            ))
        }
        Some(_) => {
            return Err(fail(
                "Error",
                ApiError::field("action", "expected a string"),
            ))
        }
    };
    let safe_name: String =
        if action_name.len() <= 64 && action_name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            action_name.clone()
        } else {
            "Error".to_string()
        };
    let caller = authenticate(app, &obj, peer, &outcome.request_id)
        .await
        .map_err(|e| fail(&safe_name, e))?;
    outcome.user_id = caller.user_id.clone();
    let action: &Action = find_action(&action_name).ok_or_else(|| {
        let hint = catalogue::ACTIONS
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(&action_name))
            .map(|a| format!(" (did you mean {}?)", a.name))
            .unwrap_or_else(|| {
                " (see the README's API reference or `rackboot --help`)".to_string()
            });
        fail(
            &safe_name,
            ApiError::new(
                RetCode::UnknownAction,
                format!("unknown action `{}`{hint}", safe_name),
            ),
        )
    })?;
    match obj.get("request_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.is_empty() || params::REQUEST_TYPES.contains(&t.as_str()) => {}
        Some(other) => {
            return Err(fail(
                action.name,
                ApiError::field(
                    "request_type",
                    format!(
                        "{other} is not a request type (allowed: {})",
                        params::REQUEST_TYPES.join(", ")
                    ),
                ),
            ))
        }
    }
    let _slot = slots
        .acquire()
        .await
        .map_err(|_| fail(action.name, ApiError::internal()))?;
    let params =
        Params::check(action.name, action.params, obj).map_err(|e| fail(action.name, e))?;
    let call = Call {
        params,
        caller,
        fixed_job_action: None,
    };
    let fields = (action.handler)(app.clone(), call)
        .await
        .map_err(|e| fail(action.name, e))?;
    Ok((action.name.to_string(), fields))
}

/// Checks USER_ID/PASSWORD of `peer`'s request: a cache hit costs a MAC, a
/// miss one argon2 verification on a blocking thread; a check refused by
/// the login service's budget or backoff answers 1300 at once.
async fn authenticate(
    app: &Arc<App>,
    obj: &Map<String, Value>,
    peer: Peer,
    request_id: &str,
) -> Result<Caller, ApiError> {
    let auth_failed = |why: &str| {
        ApiError::new(
            RetCode::AuthFailed,
            format!(
                "authentication failed: {why}. Send USER_ID and PASSWORD of a rackboot user (the first start wrote admin's password to <state-dir>/admin.password)"
            ),
        )
    };
    let user_id = match obj.get("USER_ID") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(auth_failed("USER_ID is missing")),
    };
    let password = match obj.get("PASSWORD") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(auth_failed("PASSWORD is missing")),
    };
    match app
        .logins
        .verify(&user_id, &password, peer)
        .await
        .map_err(ApiError::from)?
    {
        Verdict::Ok => {}
        Verdict::Wrong => return Err(auth_failed("unknown user or wrong password")),
        Verdict::Busy { retry_after, why } => {
            return Err(ApiError::new(
                RetCode::Busy,
                format!(
                    "busy, retry in {} s: the password was not checked ({why})",
                    retry_after.as_secs_f64().ceil().max(1.0) as u64
                ),
            ))
        }
    }
    Ok(Caller {
        user_id,
        request_id: request_id.to_string(),
    })
}

/// Helper for handlers: fields from key/value pairs.
pub fn fields<const N: usize>(pairs: [(&'static str, Value); N]) -> Fields {
    let mut out = Fields::new();
    for (k, v) in pairs {
        out.insert(k, v);
    }
    out
}

/// Actions that run as jobs (what `job_action` may name): those of the
/// catalogue marked `job`.
pub(crate) fn is_job_action(name: &str) -> bool {
    catalogue::ACTIONS.iter().any(|a| a.job && a.name == name)
}

pub(crate) fn job_action_names() -> String {
    let mut names: Vec<&str> = Vec::new();
    names.extend(catalogue::ACTIONS.iter().filter(|a| a.job).map(|a| a.name));
    names.sort();
    names.dedup();
    names.join(", ")
}
