//! Sign-in for the admin page: `POST /api/auth/login` trades a password for a JWT (HS256, issuer
//! and audience checked, nothing but HS256 accepted), and [`Authed`] admits a request by its
//! Bearer token. Wrong passwords are counted per user and per address: after
//! `login_max_failures` in a row, that user or address is refused for `login_lockout`; every
//! address also has a per-minute budget of attempts. The counts live in this process (each api
//! replica keeps its own).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ApiContext;
use super::{ApiError, AppJson};
use crate::bus::Activity;
use crate::config::AdminSettings;
use crate::security::users::{Access, UserError, UserRole};

const ISSUER: &str = "leadq";
const AUDIENCE: &str = "leadq-admin";

pub fn routes() -> Router<ApiContext> {
    Router::new().route("/api/auth/login", post(login))
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: UserRole,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Token keys and the login counters; one per process.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token_ttl: Duration,
    guard: LoginGuard,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(secret: &SecretString, settings: &AdminSettings) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            token_ttl: settings.token_ttl,
            guard: LoginGuard::new(settings),
        }
    }

    /// A signed token for `username`, valid for the configured time.
    pub fn issue(&self, username: &str, role: UserRole) -> Result<String, ApiError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: username.to_owned(),
            role,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.token_ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims)
    }
}

/// A signed-in person, from a valid Bearer token.
#[derive(Debug, Clone)]
pub struct Authed {
    pub username: String,
    pub role: UserRole,
}

impl Authed {
    /// Refuses (403) what this role may not do.
    pub fn require(&self, access: Access) -> Result<(), ApiError> {
        if self.role.may(access) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<ApiContext> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token".into()))?;
        let claims = ctx.auth.verify(token.trim()).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match err.kind() {
                ErrorKind::ExpiredSignature => "the token has expired; sign in again",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    "the token's algorithm is not accepted"
                }
                ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => "the token is not for this service",
                _ => "invalid token",
            };
            ApiError::unauthorized(why.into())
        })?;
        // The token says who; the users bucket says what they may do now, so a changed role or
        // password (or a removed user) counts at once, not when the token expires.
        let user = ctx
            .users
            .get(&claims.sub)
            .await?
            .ok_or_else(|| ApiError::unauthorized("this user no longer exists".into()))?;
        if claims.iat < user.created_at.unix_timestamp() {
            return Err(ApiError::unauthorized(
                "the password changed since this sign-in; sign in again".into(),
            ));
        }
        Ok(Self {
            username: user.username,
            role: user.role,
        })
    }
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    access_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
    role: UserRole,
    username: String,
}

/// Trades a username and password for a token.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong username or password"),
        (status = 429, description = "too many attempts; see Retry-After")))]
async fn login(
    State(ctx): State<ApiContext>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AppJson(request): AppJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let address = peer.ip();
    let guard = &ctx.auth.guard;
    guard.admit(&request.username, address)?;
    let user = ctx
        .users
        .verify(&request.username, request.password)
        .await
        .map_err(|err| match err {
            UserError::Bus(bus) => ApiError::from(bus),
            other => ApiError::internal(other),
        })?;
    let Some(user) = user else {
        guard.failed(&request.username, address);
        tracing::info!(username = %request.username, %address, "login refused: wrong username or password");
        return Err(ApiError::unauthorized("wrong username or password".into()));
    };
    guard.succeeded(&user.username, address);
    ctx.bus
        .record(&Activity::new(
            "auth.login",
            &user.username,
            format!("{} signed in", user.username),
        ))
        .await;
    Ok(Json(LoginResponse {
        access_token: ctx.auth.issue(&user.username, user.role)?,
        token_type: "bearer",
        expires_in: ctx.auth.token_ttl.as_secs(),
        role: user.role,
        username: user.username,
    }))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Address(IpAddr),
}

#[derive(Debug)]
struct Strikes {
    in_a_row: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

/// Past this many tracked users and addresses, stale entries are dropped, so guessing with random
/// names cannot grow the table without bound.
const MAX_TRACKED: usize = 10_000;

struct LoginGuard {
    max_failures: u32,
    lockout: Duration,
    strikes: Mutex<HashMap<Subject, Strikes>>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginGuard {
    fn new(settings: &AdminSettings) -> Self {
        let per_minute = NonZeroU32::new(settings.login_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            max_failures: settings.login_max_failures,
            lockout: settings.login_lockout,
            strikes: Mutex::new(HashMap::new()),
            per_address: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    fn subjects(username: &str, address: IpAddr) -> [Subject; 2] {
        [Subject::User(username.to_owned()), Subject::Address(address)]
    }

    /// Refuses while the user or the address is locked out or the address is over its budget.
    fn admit(&self, username: &str, address: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let wait = {
            let strikes = self.strikes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            Self::subjects(username, address)
                .iter()
                .filter_map(|s| strikes.get(s)?.locked_until)
                .filter(|until| *until > now)
                .max()
                .map(|until| until - now)
        };
        if let Some(wait) = wait {
            tracing::warn!(%username, %address, "login refused: locked out after repeated wrong passwords");
            return Err(ApiError::too_many(
                "too many wrong passwords; logins for this user or address are paused",
                wait,
            ));
        }
        if let Err(not_until) = self.per_address.check_key(&address) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            tracing::warn!(%address, "login refused: too many attempts from this address");
            return Err(ApiError::too_many("too many login attempts from this address", wait));
        }
        Ok(())
    }

    fn failed(&self, username: &str, address: IpAddr) {
        let now = Instant::now();
        let mut strikes = self.strikes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if strikes.len() >= MAX_TRACKED {
            let lockout = self.lockout;
            strikes.retain(|_, s| s.locked_until.is_some_and(|until| until > now) || now - s.last_failure < lockout);
        }
        for subject in Self::subjects(username, address) {
            let entry = strikes.entry(subject).or_insert(Strikes {
                in_a_row: 0,
                locked_until: None,
                last_failure: now,
            });
            entry.last_failure = now;
            entry.in_a_row += 1;
            if entry.in_a_row >= self.max_failures {
                entry.in_a_row = 0;
                entry.locked_until = Some(Instant::now() + self.lockout);
            }
        }
    }

    fn succeeded(&self, username: &str, address: IpAddr) {
        let mut strikes = self.strikes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for subject in Self::subjects(username, address) {
            strikes.remove(&subject);
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(login))]
pub struct AuthApi;
