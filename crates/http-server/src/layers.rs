//! What wraps every route: request ids and one log span per request, panics turned into 500s,
//! the access policy (Origin and Host) and the JSON body limit.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::access::{self, AccessDecision, AccessPolicy, ForbiddenReason};
use crate::ApiError;

/// Largest JSON request body: long conversations fit, a body meant to exhaust memory does not.
pub(crate) const MAX_JSON_BODY_BYTES: usize = 32 << 20;

/// `router` with the layers every listener applies. Outermost first: a request id, the
/// request's span, the id echoed on the response, panic catching, then the access policy.
pub(crate) fn wrap(router: Router, access: Arc<AccessPolicy>) -> Router {
    router
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(access, enforce_access))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn request_span(request: &Request) -> tracing::Span {
    let id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or_default();
    tracing::info_span!(
        "request",
        id,
        method = %request.method(),
        route = request.uri().path(),
        model = tracing::field::Empty,
    )
}

fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    let status = response.status().as_u16();
    let milliseconds = latency.as_secs_f64() * 1e3;
    if response.status().is_server_error() {
        tracing::warn!(status, milliseconds, "answered");
    } else {
        tracing::info!(status, milliseconds, "answered");
    }
}

/// Names the model a request is about in its span, for the log.
pub(crate) fn record_model(model: &str) {
    tracing::Span::current().record("model", model);
}

/// A panic in a handler: the process goes on, the client gets a 500, and the log has the
/// panic message inside the request's span (and so its id).
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "request handler panicked");
    ApiError::internal("internal error: the request failed unexpectedly; the server log has the details")
        .into_response()
}

/// Applies the access policy: 403 with an empty body for foreign origins and, on loopback,
/// foreign hosts (as Ollama), CORS headers for allowed origins, 204 for preflights.
async fn enforce_access(State(policy): State<Arc<AccessPolicy>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let origin = match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(origin)) => Some(origin.to_owned()),
        Some(Err(_)) => return forbidden(ForbiddenReason::Origin, "<not text>", ""),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|authority| authority.to_string()));
    let is_options = request.method() == Method::OPTIONS;
    match policy.decide(is_options, origin.as_deref(), host.as_deref()) {
        AccessDecision::Allow { cors_origin: None } => next.run(request).await,
        AccessDecision::Allow { cors_origin: Some(origin) } => {
            let mut response = next.run(request).await;
            if let Ok(value) = HeaderValue::from_str(&origin) {
                let headers = response.headers_mut();
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            response
        }
        AccessDecision::Preflight { origin } => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&origin) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(access::ALLOWED_METHODS));
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(access::ALLOWED_HEADERS));
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(access::PREFLIGHT_MAX_AGE));
            for vary in ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"] {
                headers.append(header::VARY, HeaderValue::from_static(vary));
            }
            response
        }
        AccessDecision::NoContent => StatusCode::NO_CONTENT.into_response(),
        AccessDecision::Forbidden(reason) => {
            forbidden(reason, origin.as_deref().unwrap_or_default(), host.as_deref().unwrap_or_default())
        }
    }
}

/// Ollama's bare 403; the log says why and how to allow it, since the body cannot.
fn forbidden(reason: ForbiddenReason, origin: &str, host: &str) -> Response {
    match reason {
        ForbiddenReason::Origin => tracing::warn!(
            origin,
            "refused a request from a browser origin that is not allowed; add it to OLLAMA_ORIGINS to allow it"
        ),
        ForbiddenReason::Host => tracing::warn!(
            host,
            "refused a request for a host name that is not local (DNS rebinding guard); bind OLLAMA_HOST to a \
             non-loopback address to serve other names"
        ),
    }
    StatusCode::FORBIDDEN.into_response()
}
