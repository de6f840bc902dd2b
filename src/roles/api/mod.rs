//! The api role's HTTP surface: liveness and readiness, Twilio's webhooks, the CMO agent's routes,
//! sign-in and the admin API, and the built admin page at `/`. Every response carries security
//! headers; cross-origin calls are allowed only from configured origins.

mod admin;
mod auth;
mod calendly;
mod cmo;
mod connections;
mod context;
mod error;
pub mod nats;
mod transfer;
mod twilio;
mod unbounce;
pub mod unbounce_form;
mod views;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use auth::Auth;
pub use context::ApiContext;
pub use error::{ApiError, AppJson};

/// The settings as the workers use them now: the api keeps its settings from its start, but
/// credentials saved since (or the sandbox giving way to them) decide which service is reached.
/// Read when needed (once per call for a live-call update, or a connection test), never cached.
async fn settings_now(ctx: &ApiContext) -> Result<crate::config::Settings, ApiError> {
    let mut settings = (*ctx.settings).clone();
    let saved = ctx
        .credentials
        .plain_values()
        .await
        .map_err(|e| ApiError::unavailable(format!("saved credentials: {e}")))?;
    crate::security::credentials::apply(&mut settings, &saved);
    if let Some(sandbox) = &ctx.sandbox {
        sandbox.apply(&mut settings);
    }
    Ok(settings)
}

/// The script the call of `lead_id` is made with (its language's, or its A/B variant's, once
/// its greeting chose them), and the language it is spoken in.
async fn script_of_call(
    ctx: &ApiContext,
    lead_id: uuid::Uuid,
) -> Result<(crate::domain::script::Script, crate::domain::language::Language), ApiError> {
    let state = ctx.calls.get(lead_id).await?.map(|(state, _)| state);
    let variant = state.as_ref().and_then(|s| s.variant.clone());
    let language = state.map(|s| s.language()).unwrap_or_default();
    Ok((ctx.config.script_for(variant.as_deref(), language).await, language))
}

/// How long a readiness probe waits for each dependency before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(ctx: ApiContext) -> Router {
    let limit = ctx.settings.max_body_bytes;
    let not_found = || async { ApiError::NotFound };
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .merge(twilio::routes())
        .merge(transfer::routes())
        .merge(calendly::routes())
        .merge(unbounce::routes())
        .merge(cmo::routes())
        .merge(auth::routes())
        .merge(admin::routes())
        .merge(connections::routes())
        // Unknown API paths answer JSON; everything else is the page's (client-side routes).
        .route("/api/{*rest}", axum::routing::any(not_found))
        .route("/webhooks/{*rest}", axum::routing::any(not_found))
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit));
    let mut router = with_page(router, &ctx.settings.admin.frontend_dir);
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    if !ctx.settings.admin.cors_origins.is_empty() {
        use axum::http::{Method, header};
        router = router.layer(
            CorsLayer::new()
                .allow_origin(ctx.settings.admin.cors_origins.clone())
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-api-key"),
                ]),
        );
    }
    router.layer(TraceLayer::new_for_http()).with_state(ctx)
}

const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// The built admin page with `index.html` for client routes, or a clear 503 when it is not built.
fn with_page(router: Router<ApiContext>, dir: &std::path::Path) -> Router<ApiContext> {
    let index = dir.join("index.html");
    if index.is_file() {
        return router.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)));
    }
    let detail = format!(
        "the admin page is not built ({} has no index.html): `scripts/run` builds it, or `npm run build` in frontend/",
        dir.display()
    );
    router.fallback(move || {
        let detail = detail.clone();
        async move { ApiError::unavailable(detail) }
    })
}

/// The store, or a 503 in a process that keeps no records.
fn store(ctx: &ApiContext) -> Result<&crate::store::Store, ApiError> {
    ctx.store
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this process keeps no records".into()))
}

/// A bound listener; binding apart from serving lets callers (and tests, with port 0) learn the port.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
}

impl HttpServer {
    pub async fn bind(ctx: ApiContext) -> std::io::Result<Self> {
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

/// The OpenAPI document of the REST routes (CMO, auth, admin), generated from the handlers.
async fn openapi() -> impl IntoResponse {
    use utoipa::OpenApi;
    let mut document = cmo::CmoApi::openapi();
    document.merge(auth::AuthApi::openapi());
    document.merge(admin::AdminApi::openapi());
    document.merge(connections::ConnectionsApi::openapi());
    document.merge(calendly::CalendlyApi::openapi());
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        utoipa::openapi::security::SecurityScheme::Http(utoipa::openapi::security::Http::new(
            utoipa::openapi::security::HttpAuthScheme::Bearer,
        )),
    );
    Json(document)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when NATS (JetStream) and the store both answer; each check is reported.
async fn readyz(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let nats = match tokio::time::timeout(PROBE_TIMEOUT, ctx.bus.ping()).await {
        Ok(Ok(())) => json!({ "ok": true }),
        Ok(Err(err)) => json!({ "ok": false, "error": err.to_string() }),
        Err(_) => json!({ "ok": false, "error": "timed out" }),
    };
    let store = match &ctx.store {
        None => json!({ "ok": true, "note": "this process does not use the store" }),
        Some(store) => match store.ping(PROBE_TIMEOUT).await {
            Ok(()) => json!({ "ok": true }),
            Err(crate::store::StoreError::Unanswered(_)) => json!({ "ok": false, "error": "timed out" }),
            Err(err) => json!({ "ok": false, "error": err.to_string() }),
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
