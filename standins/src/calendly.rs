//! Calendly's side of a booking: the webhook it posts when someone books or cancels through a
//! booking link (`invitee.created`, `invitee.canceled`), with the name, email and UTM tracking
//! read from the link as Calendly prefills them, signed as Calendly signs
//! (`Calendly-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>`).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Posts Calendly's webhooks to a subscriber, signed with the subscription's signing key.
pub struct CalendlySender {
    signing_key: String,
    http: reqwest::Client,
}

/// The UTM parameters Calendly carries from a booking link into the invitee's `tracking`.
const TRACKED: [&str; 5] = ["utm_campaign", "utm_source", "utm_medium", "utm_content", "utm_term"];

impl CalendlySender {
    pub fn new(signing_key: &str) -> Self {
        Self {
            signing_key: signing_key.into(),
            http: reqwest::Client::new(),
        }
    }

    /// The `invitee.created` body for a booking made through `link` for a meeting at `start_time`;
    /// `email` is what the invitee typed when the link did not prefill it.
    pub fn invitee_created(link: &str, email: Option<&str>, start_time: &str) -> Value {
        let query: Vec<(String, String)> = link
            .split_once('?')
            .map(|(_, q)| serde_urlencoded::from_str(q).unwrap_or_default())
            .unwrap_or_default();
        let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let tracking: serde_json::Map<String, Value> = TRACKED
            .iter()
            .map(|name| ((*name).to_owned(), param(name).map_or(Value::Null, Value::String)))
            .collect();
        let event_id = random_id();
        let now = now_rfc3339();
        json!({
            "event": "invitee.created",
            "created_at": now,
            "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA",
            "payload": {
                "uri": format!("https://api.calendly.com/scheduled_events/{event_id}/invitees/{}", random_id()),
                "email": param("email").or(email.map(str::to_owned)),
                "name": param("name"),
                "status": "active",
                "rescheduled": false,
                "created_at": now,
                "updated_at": now,
                "timezone": "America/Los_Angeles",
                "tracking": tracking,
                "scheduled_event": {
                    "uri": format!("https://api.calendly.com/scheduled_events/{event_id}"),
                    "name": "Tour of the space",
                    "status": "active",
                    "start_time": start_time,
                },
            },
        })
    }

    /// The `invitee.canceled` body for an earlier `invitee.created` (`rescheduled`: the
    /// invitee picked another time, and an `invitee.created` for it follows).
    pub fn invitee_canceled(created: &Value, rescheduled: bool) -> Value {
        let mut body = created.clone();
        body["event"] = "invitee.canceled".into();
        body["created_at"] = now_rfc3339().into();
        body["payload"]["status"] = "canceled".into();
        body["payload"]["rescheduled"] = rescheduled.into();
        body["payload"]["cancellation"] = json!({ "canceled_by": "invitee", "reason": null });
        body
    }

    /// The signature header for `body` signed at unix time `t`.
    pub fn signature(&self, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing_key.as_bytes()).expect("any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={digest}")
    }

    /// Posts `body` to `url` signed now, as Calendly delivers it: the status and the answer.
    pub async fn deliver(&self, url: &str, body: &Value) -> (u16, String) {
        let raw = body.to_string();
        let signature = self.signature(unix_now(), raw.as_bytes());
        self.post(url, raw, Some(signature)).await
    }

    /// Posts `raw` with the signature header given (or none): for forged, stale and replayed
    /// deliveries.
    pub async fn post(&self, url: &str, raw: String, signature: Option<String>) -> (u16, String) {
        let mut request = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "Calendly-Webhooks")
            .body(raw);
        if let Some(signature) = signature {
            request = request.header("Calendly-Webhook-Signature", signature);
        }
        match request.send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(err) => (0, err.to_string()),
        }
    }
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn random_id() -> String {
    (0..16).map(|_| (b'A' + rand::random_range(0..26u8)) as char).collect()
}

/// Calendly's API as leadq uses it: `GET /users/me` (the token's organization) and
/// `POST /webhook_subscriptions` (401 for a wrong token, 400 for a missing field, 409 for a URL
/// already subscribed); each subscription's bookings are then delivered signed with its key.
pub struct CalendlyApi {
    addr: std::net::SocketAddr,
    state: ApiState,
    _server: tokio::task::JoinHandle<()>,
}

/// One webhook subscription, as created.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub uri: String,
    pub callback_url: String,
    pub events: Vec<String>,
    pub organization: String,
    pub scope: String,
    pub signing_key: Option<String>,
}

#[derive(Clone)]
struct ApiState {
    token: String,
    subscriptions: std::sync::Arc<std::sync::Mutex<Vec<Subscription>>>,
}

const ORGANIZATION: &str = "https://api.calendly.com/organizations/LEADQSTANDIN0001";

impl CalendlyApi {
    pub async fn start(token: &str) -> std::io::Result<Self> {
        use axum::routing::{get, post};
        let state = ApiState {
            token: token.into(),
            subscriptions: std::sync::Arc::default(),
        };
        let app = axum::Router::new()
            .route("/users/me", get(users_me))
            .route("/webhook_subscriptions", post(create_subscription))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "calendly stand-in stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            _server: server,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.state.subscriptions.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A booking through `link`: `invitee.created` to every subscription that takes it, signed
    /// with each one's key. The answers, by callback.
    pub async fn book(&self, link: &str, email: Option<&str>, start_time: &str) -> Vec<(u16, String)> {
        let body = CalendlySender::invitee_created(link, email, start_time);
        let mut answers = Vec::new();
        for subscription in self.subscriptions() {
            if subscription.events.iter().any(|e| e == "invitee.created") {
                let sender = CalendlySender::new(subscription.signing_key.as_deref().unwrap_or_default());
                answers.push(sender.deliver(&subscription.callback_url, &body).await);
            }
        }
        answers
    }
}

fn calendly_error(status: u16, title: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "title": title, "message": message }))).into_response()
}

fn authorized(state: &ApiState, headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.token))
}

async fn users_me(
    axum::extract::State(state): axum::extract::State<ApiState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !authorized(&state, &headers) {
        return calendly_error(401, "Unauthenticated", "The access token is invalid");
    }
    axum::Json(json!({ "resource": {
        "uri": "https://api.calendly.com/users/LEADQSTANDINUSER",
        "name": "Mesh Cowork",
        "current_organization": ORGANIZATION,
    }}))
    .into_response()
}

async fn create_subscription(
    axum::extract::State(state): axum::extract::State<ApiState>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !authorized(&state, &headers) {
        return calendly_error(401, "Unauthenticated", "The access token is invalid");
    }
    let text = |key: &str| body[key].as_str().map(str::to_owned);
    let events: Vec<String> = body["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let (Some(url), Some(organization), Some(scope)) = (text("url"), text("organization"), text("scope")) else {
        return calendly_error(400, "Invalid Argument", "url, organization and scope are required");
    };
    if events.is_empty()
        || events
            .iter()
            .any(|e| !["invitee.created", "invitee.canceled"].contains(&e.as_str()))
    {
        return calendly_error(
            400,
            "Invalid Argument",
            "events must be invitee.created and/or invitee.canceled",
        );
    }
    if organization != ORGANIZATION {
        return calendly_error(
            403,
            "Permission Denied",
            "You do not have permission to access this organization",
        );
    }
    let Ok(mut subscriptions) = state.subscriptions.lock() else {
        return calendly_error(500, "Internal Server Error", "stand-in state poisoned");
    };
    if subscriptions.iter().any(|s| s.callback_url == url) {
        return calendly_error(409, "Already Exists", "Hook with this url already exists");
    }
    let subscription = Subscription {
        uri: format!("https://api.calendly.com/webhook_subscriptions/{}", random_id()),
        callback_url: url,
        events,
        organization,
        scope,
        signing_key: text("signing_key"),
    };
    subscriptions.push(subscription.clone());
    let now = now_rfc3339();
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({ "resource": {
            "uri": subscription.uri,
            "callback_url": subscription.callback_url,
            "created_at": now,
            "updated_at": now,
            "retry_started_at": null,
            "state": "active",
            "events": subscription.events,
            "scope": subscription.scope,
            "organization": subscription.organization,
            "user": null,
            "creator": "https://api.calendly.com/users/LEADQSTANDINUSER",
        }})),
    )
        .into_response()
}
