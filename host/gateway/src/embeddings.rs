//! `POST /v1/embeddings`: routed by model to an OpenAI-compatible upstream.
//! Provider plugins answer chat only: a model routed to one is a 400 that
//! says so. The body goes upstream as sent (the model renamed to the
//! route's), every field kept.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::chat::check_model;
use crate::error::ApiError;
use crate::routes::Target;
use crate::server::{Admitted, admit, error_response, with_request_id};
use crate::state::Shared;

/// The endpoint path, as interface plugins see it.
const PATH: &str = "/v1/embeddings";

pub(crate) async fn embeddings(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = match admit(&shared, &parts, body).await {
        Ok(a) => a,
        Err((e, id)) => return error_response(e, &id),
    };
    let id = admitted.request_id.clone();
    match handle(&shared, &admitted).await {
        Ok(v) => with_request_id(axum::Json(v).into_response(), &id),
        Err(e) => error_response(e, &id),
    }
}

async fn handle(shared: &Shared, admitted: &Admitted) -> Result<Value, ApiError> {
    let body: Value =
        serde_json::from_slice(&admitted.body).map_err(|e| ApiError::new(400, format!("invalid request body: {e}")))?;
    let Some(object) = body.as_object() else {
        return Err(ApiError::new(400, "the request body must be a JSON object"));
    };
    let model = match object.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(ApiError::bad_field("model", "`model` must be a string naming a model")),
        None => return Err(ApiError::bad_field("model", "missing field `model`")),
    };
    match object.get("input") {
        Some(Value::String(_) | Value::Array(_)) => {}
        Some(_) => return Err(ApiError::bad_field("input", "`input` must be a string or an array")),
        None => return Err(ApiError::bad_field("input", "missing field `input`")),
    }
    let plan = crate::chat::plan(admitted, &model)?;
    let config = &admitted.active.config;
    check_model(&shared.host, config, PATH, &model).await?;
    let deadline = tokio::time::Instant::now() + config.limits.request_timeout;
    let mut last = None;
    for (i, attempt) in plan.iter().enumerate() {
        let upstream = match &attempt.target {
            Target::Upstream(u) => u.clone(),
            Target::Plugin { provider_type } => {
                let e = ApiError::bad_field(
                    "model",
                    format!(
                        "the model `{model}` is served by the provider plugin `{provider_type}` (provider `{}`), \
                         and provider plugins have no embeddings: route it to an openai-compatible provider",
                        attempt.provider
                    ),
                )
                .with_code("embeddings_not_supported");
                last = Some(e);
                continue;
            }
            #[allow(unreachable_patterns)]
            _ => continue,
        };
        let mut sent = body.clone();
        sent["model"] = Value::String(attempt.model.clone());
        let result = tokio::time::timeout_at(deadline, upstream.embeddings(sent))
            .await
            .map_err(|_| ApiError::new(504, "the request ran past its deadline").with_code("timeout"))?;
        match result {
            Ok(v) => return Ok(v),
            Err(e) => {
                let fallback = e.allow_fallback && i + 1 < plan.len();
                let mut api = ApiError::from_llm(&crate::error::upstream_llm_error(&e));
                if let (Some(body), Some(status)) = (e.body.clone(), e.status)
                    && (400..500).contains(&status)
                {
                    api.body = Some(Box::new(body));
                    api.status = status;
                }
                if !fallback {
                    return Err(api);
                }
                last = Some(api);
            }
        }
    }
    Err(last.unwrap_or_else(|| ApiError::new(503, "no provider")))
}
