//! `GET /v1/models`: the models the routes name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::{admit, error_response, with_request_id};
use crate::state::Shared;

pub(crate) async fn list_models(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = match admit(&shared, &parts, body).await {
        Ok(a) => a,
        Err((e, id)) => return error_response(e, &id),
    };
    let data: Vec<_> = admitted
        .active
        .routes
        .models()
        .into_iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}))
        .collect();
    with_request_id(axum::Json(json!({"object": "list", "data": data})).into_response(), &admitted.request_id)
}
