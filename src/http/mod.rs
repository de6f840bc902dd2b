//! The api role's HTTP surface: liveness and readiness, and Twilio's webhooks; the CMO, admin and
//! auth routes plug in here as their modules land.

pub mod cmo;
mod error;
mod twilio;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

pub use cmo::{AGENT_ID, status_body};
pub use error::{ApiError, AppJson};

use crate::runtime::Context;

/// How long a readiness probe waits for each dependency before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(ctx: Context) -> Router {
    let limit = ctx.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .merge(twilio::routes())
        .merge(cmo::routes())
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(ctx)
}

/// A bound listener; binding apart from serving lets callers (and tests, with port 0) learn the port.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
}

impl HttpServer {
    pub async fn bind(ctx: Context) -> std::io::Result<Self> {
        let listener = TcpListener::bind(ctx.settings.http_addr).await?;
        Ok(Self {
            listener,
            router: router(ctx),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then lets in-flight requests finish.
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        // Peer addresses for the API keys' network allowlists.
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

/// The OpenAPI document of the REST routes, generated from the handlers.
async fn openapi() -> impl IntoResponse {
    Json(<cmo::CmoApi as utoipa::OpenApi>::openapi())
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when NATS (JetStream) and the store both answer; each check is reported.
async fn readyz(State(ctx): State<Context>) -> impl IntoResponse {
    let nats = match tokio::time::timeout(PROBE_TIMEOUT, ctx.bus.ping()).await {
        Ok(Ok(())) => json!({ "ok": true }),
        Ok(Err(err)) => json!({ "ok": false, "error": err.to_string() }),
        Err(_) => json!({ "ok": false, "error": "timed out" }),
    };
    let store = match &ctx.store {
        None => json!({ "ok": true, "note": "this process does not use the store" }),
        Some(store) => match tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => json!({ "ok": true }),
            Ok(Err(err)) => json!({ "ok": false, "error": err.to_string() }),
            Err(_) => json!({ "ok": false, "error": "timed out" }),
        },
    };
    let ready = nats["ok"] == true && store["ok"] == true;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": { "nats": nats, "store": store },
    });
    (status, Json(body))
}
