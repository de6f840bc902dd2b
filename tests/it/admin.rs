//! The admin API against the real server, NATS and store: who may do what, which tokens are
//! refused, the login lockout, and that no credential is stored or answered in plain text.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{TestApp, spawn_api};
use crate::helpers::{NatsServer, on_free_port};
use leadq::security::users::UserRole;

const PASSWORD: &str = "correct horse battery";

/// The api role with one user of each role, who all sign in with `PASSWORD`.
async fn spawn_admin(adjust: impl FnOnce(&mut leadq::config::Settings)) -> TestApp {
    let app = spawn_api(adjust).await;
    for (name, role) in [
        ("boss", UserRole::Admin),
        ("cmo", UserRole::CmoAgent),
        ("watcher", UserRole::Viewer),
    ] {
        app.ctx.users.upsert(name, role, PASSWORD.into()).await.expect("user");
    }
    app
}

/// Signs `username` in with `PASSWORD`: the bearer token.
async fn sign_in(app: &TestApp, username: &str) -> String {
    let (status, body) = app.login(username, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("access_token").to_owned()
}

fn fixture_email() -> String {
    std::fs::read_to_string("tests/fixtures/emails/01-plain-private-office.eml").expect("fixture")
}

/// Every admin route, with a body that the route accepts.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let script: Value = serde_json::to_value(json!({
        "script": leadq::domain::script::Script::default(),
        "rules": leadq::domain::qualification::Rules::default(),
    }))
    .expect("script");
    vec![
        (Method::GET, "/api/admin/me", None),
        (Method::GET, "/api/admin/stats", None),
        (Method::GET, "/api/admin/leads", None),
        (Method::GET, "/api/admin/activity", None),
        (Method::GET, "/api/admin/script", None),
        (
            Method::POST,
            "/api/admin/script/try",
            Some(json!({ "question": "team_size", "text": "just me" })),
        ),
        (Method::POST, "/api/admin/agent/get_status", None),
        (Method::POST, "/api/admin/agent/resume", None),
        (Method::GET, "/api/admin/credentials", None),
        (
            Method::POST,
            "/api/admin/credentials",
            Some(json!({ "service": "calendly", "key": "url", "value": "https://calendly.com/mesh/tour" })),
        ),
        (Method::DELETE, "/api/admin/credentials/calendly/url", None),
        (
            Method::POST,
            "/api/admin/test-email",
            Some(json!({ "raw": fixture_email() })),
        ),
        (Method::GET, "/api/admin/test-email", None),
        (Method::POST, "/api/admin/unbounce-url", None),
        (Method::GET, "/api/admin/sandbox", None),
        (Method::PUT, "/api/admin/script", Some(script)),
    ]
}

/// What each role may reach: read routes for all, commands for admin and cmo_agent, the rest admin only.
fn allowed(role: UserRole, method: &Method, path: &str) -> bool {
    let command = path.starts_with("/api/admin/agent/");
    let admin_only_reads = ["/api/admin/credentials", "/api/admin/test-email"];
    let read = *method == Method::GET && !admin_only_reads.contains(&path) || path == "/api/admin/script/try";
    match role {
        UserRole::Admin => true,
        UserRole::CmoAgent => read || command,
        UserRole::Viewer => read,
    }
}

#[tokio::test]
async fn every_admin_route_answers_each_role_as_the_matrix_says() {
    let admin = Box::pin(spawn_admin(|_| {})).await;
    let mut failures = Vec::new();
    for (user, role) in [
        ("boss", UserRole::Admin),
        ("cmo", UserRole::CmoAgent),
        ("watcher", UserRole::Viewer),
    ] {
        let token = sign_in(&admin, user).await;
        for (method, path, body) in routes() {
            // The delete needs something to delete: save it first as the admin.
            if method == Method::DELETE {
                let boss = sign_in(&admin, "boss").await;
                let save = routes()
                    .into_iter()
                    .find(|(m, p, _)| *m == Method::POST && *p == "/api/admin/credentials");
                let (_, _, saved) = save.expect("save route");
                admin
                    .call(Method::POST, "/api/admin/credentials", Some(&boss), saved)
                    .await;
            }
            let (status, answer) = admin.call(method.clone(), path, Some(&token), body.clone()).await;
            let want = if allowed(role, &method, path) {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            if status != want {
                failures.push(format!("{user} {method} {path}: {status} (want {want}) {answer}"));
            }
            if status == StatusCode::FORBIDDEN {
                assert!(answer["error"].as_str().is_some_and(|e| e.contains("role")), "{answer}");
            }
        }
    }
    for (method, path, body) in routes() {
        let (status, answer) = admin.call(method.clone(), path, None, body).await;
        if status != StatusCode::UNAUTHORIZED || answer["error"].as_str().is_none() {
            failures.push(format!("no token {method} {path}: {status} {answer}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn forge(header: Value, claims: Value, key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
    let signing_input = format!("{}.{}", encode(&header), encode(&claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    let secret = SecretString::from("a-test-signing-secret-of-enough-length".to_owned());
    let admin = Box::pin(spawn_admin(|s| s.jwt_secret = Some(secret.clone()))).await;
    let key = secret.expose_secret().as_bytes();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |exp: i64, aud: &str| json!({ "sub": "boss", "role": "admin", "iss": "leadq", "aud": aud, "iat": now, "exp": exp });
    let hs256 = json!({ "alg": "HS256", "typ": "JWT" });
    let good = forge(hs256.clone(), claims(now + 600, "leadq-admin"), key);
    // The forging itself is right: the same claims signed properly are accepted.
    let (status, _) = admin.call(Method::GET, "/api/admin/stats", Some(&good), None).await;
    assert_eq!(status, StatusCode::OK);

    let valid = sign_in(&admin, "boss").await;
    let (head, rest) = valid.split_once('.').expect("jwt");
    let (payload, signature) = rest.split_once('.').expect("jwt");
    let mut claims_json: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims");
    claims_json["role"] = json!("admin");
    claims_json["sub"] = json!("someone-else");
    let tampered = format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims_json.to_string()));
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT" }).to_string()),
        URL_SAFE_NO_PAD.encode(claims(now + 600, "leadq-admin").to_string())
    );
    let cases = [
        ("tampered claims", tampered),
        ("alg none", unsigned),
        (
            "RS256 header",
            forge(
                json!({ "alg": "RS256", "typ": "JWT" }),
                claims(now + 600, "leadq-admin"),
                key,
            ),
        ),
        ("expired", forge(hs256.clone(), claims(now - 3600, "leadq-admin"), key)),
        (
            "wrong audience",
            forge(hs256.clone(), claims(now + 600, "another-service"), key),
        ),
        (
            "another secret",
            forge(hs256, claims(now + 600, "leadq-admin"), b"not the secret"),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let (status, body) = admin.call(Method::GET, "/api/admin/stats", Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    let (_, body) = admin
        .call(
            Method::GET,
            "/api/admin/stats",
            Some(&forge(json!({"alg":"HS256"}), claims(now - 3600, "leadq-admin"), key)),
            None,
        )
        .await;
    assert!(body["error"].as_str().is_some_and(|e| e.contains("expired")), "{body}");
}

#[tokio::test]
async fn ten_wrong_passwords_lock_logins_until_the_wait_is_over() {
    let admin = Box::pin(spawn_admin(|s| s.admin.login_lockout = Duration::from_secs(2))).await;
    for attempt in 1..=10 {
        let (status, body) = admin.login("boss", "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}: {body}");
    }
    // Locked: even the right password is refused, with the wait named.
    let (status, body) = admin.login("boss", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("try again")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = admin.login("boss", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "after the wait: {body}");
    assert_eq!(body["role"], "admin");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86400);
}

/// Every file under `dir`, searched byte for byte.
fn found_in(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            hits.push(path);
        }
    }
    hits
}

#[tokio::test]
async fn credentials_are_sealed_at_rest_and_only_ever_shown_masked() {
    let data = tempfile::tempdir().expect("data dir");
    let db = data.path().join("db");
    let admin = Box::pin(spawn_admin(|s| s.db = leadq::config::DbLocation::File(db.clone()))).await;
    let token = sign_in(&admin, "boss").await;
    let secret = format!("sk_live_{}", leadq::security::secrets::random_token(18));
    let (status, saved) = admin
        .call(
            Method::POST,
            "/api/admin/credentials",
            Some(&token),
            Some(json!({ "service": "twilio", "key": "auth_token", "value": secret })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(
        saved["masked"],
        format!("{}…{}", &secret[..4], &secret[secret.len() - 4..])
    );
    assert_eq!(saved["updated_by"], "boss");
    let (_, listed) = admin
        .call(Method::GET, "/api/admin/credentials", Some(&token), None)
        .await;
    assert!(!listed.to_string().contains(&secret), "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // The process that holds the key can use it; the stores hold only ciphertext.
    let plain = admin
        .ctx
        .credentials
        .get("twilio", "auth_token")
        .await
        .expect("get")
        .expect("saved");
    assert_eq!(plain.expose_secret(), secret);
    assert!(
        found_in(admin.nats.store_dir(), secret.as_bytes()).is_empty(),
        "plaintext in JetStream's files"
    );
    assert!(
        found_in(data.path(), secret.as_bytes()).is_empty(),
        "plaintext in the store's files"
    );
    assert!(
        !found_in(admin.nats.store_dir(), b"auth_token").is_empty(),
        "the search reads the files the credential went to"
    );

    // Unknown credentials and empty values change nothing.
    for body in [
        json!({ "service": "twilio", "key": "password", "value": "x" }),
        json!({ "service": "twilio", "key": "auth_token", "value": "" }),
    ] {
        let (status, answer) = admin
            .call(Method::POST, "/api/admin/credentials", Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(answer["error"].is_string());
    }
    let (_, listed) = admin
        .call(Method::GET, "/api/admin/credentials", Some(&token), None)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_pasted_email_is_parsed_queued_and_logged_or_refused_with_its_reason() {
    let admin = Box::pin(spawn_admin(|_| {})).await;
    let token = sign_in(&admin, "boss").await;
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/admin/test-email",
            Some(&token),
            Some(json!({ "raw": fixture_email() })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lead"]["phone"], "+12015550123");
    // Queued like a lead from the inbox, marked as a test email.
    let queued: Vec<leadq::bus::LeadReceived> =
        crate::helpers::on_stream(&admin.ctx.bus, leadq::bus::stream::LEADS).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].lead_id.to_string(),
        body["lead_id"].as_str().expect("lead_id")
    );
    assert_eq!(queued[0].source, leadq::bus::LeadSource::AdminTestEmail);
    let missing_phone = std::fs::read_to_string("tests/fixtures/emails/04-missing-phone.eml").expect("fixture");
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/admin/test-email",
            Some(&token),
            Some(json!({ "raw": missing_phone })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "invalid_lead");
    assert_eq!(body["field"], "phone");
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/admin/test-email",
            Some(&token),
            Some(json!({ "nothing": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].is_string());

    // Both submissions are kept with their outcome, newest first; the malformed body changed nothing.
    let (_, kept) = admin
        .call(Method::GET, "/api/admin/test-email", Some(&token), None)
        .await;
    let kept = kept.as_array().expect("list");
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0]["result"]["error"], "invalid_lead");
    assert_eq!(kept[1]["result"]["status"], "queued");
    assert!(kept[1]["raw"].as_str().is_some_and(|raw| raw.contains("201-555-0123")));
    assert_eq!(kept[1]["submitted_by"], "boss");
    let queued: Vec<leadq::bus::LeadReceived> =
        crate::helpers::on_stream(&admin.ctx.bus, leadq::bus::stream::LEADS).await;
    assert_eq!(queued.len(), 1, "only the parsed lead was queued");

    // Both attempts are in the activity log under the admin's name; the filter finds them.
    crate::helpers::eventually(Duration::from_secs(10), "test emails in the activity log", || async {
        let (_, page) = admin
            .call(
                Method::GET,
                "/api/admin/activity?actor=boss&kind=lead.test_email",
                Some(&token),
                None,
            )
            .await;
        page["total"] == 1 && page["items"][0]["actor"] == "boss"
    })
    .await;
}

#[tokio::test]
async fn every_answer_carries_security_headers_and_cors_admits_only_configured_origins() {
    let admin = Box::pin(spawn_admin(|s| {
        s.admin.cors_origins = vec!["https://admin.example.com".parse().expect("origin")];
        s.admin.frontend_dir = std::path::PathBuf::from("/nonexistent/leadq-page");
    }))
    .await;
    for path in ["/healthz", "/api/admin/stats", "/api/nothing-here", "/leads"] {
        let response = admin
            .http
            .get(format!("{}{path}", admin.base))
            .send()
            .await
            .expect("get");
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
            "{path}: {csp}"
        );
        let status = response.status();
        let body: Value = response.json().await.expect("every answer is JSON here");
        assert!(
            body["error"].is_string() || status == StatusCode::OK,
            "{path}: {status} {body}"
        );
    }
    // A page that is not built says so, instead of a blank answer.
    let (status, body) = admin.call(Method::GET, "/leads", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("not built")),
        "{body}"
    );
    let (status, _) = admin.call(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The OpenAPI document covers the auth and admin routes too.
    let (_, document) = admin.call(Method::GET, "/api/openapi.json", None, None).await;
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/api/auth/login",
        "/api/admin/credentials",
        "/api/admin/test-email",
        "/api/admin/events",
        "/api/cmo/status",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }

    let preflight = |origin: &'static str| {
        admin
            .http
            .request(Method::OPTIONS, format!("{}/api/admin/stats", admin.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://admin.example.com").await.expect("preflight");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://admin.example.com"
    );
    let refused = preflight("https://evil.example.net").await.expect("preflight");
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn rotate_key_reseals_every_credential_and_a_wrong_key_changes_nothing() {
    use leadq::security::credentials::{CredentialError, Credentials, Vault};
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("data dir");
    let old_key = leadq::security::secrets::new_master_key();
    leadq::security::secrets::write_private(&data.path().join("master.key"), &old_key).expect("key file");
    let bus = nats.ready_bus().await;
    let sealed_with = |key: &SecretString| Vault::new(key, None).expect("vault");
    let old = Credentials::open(&bus.js, sealed_with(&old_key))
        .await
        .expect("credentials");
    let token = SecretString::from("pat_rotation_test_value_123".to_owned());
    old.set("airtable", "token", &token, "test").await.expect("set");

    let env = [
        ("LEADQ_NATS_URL", nats.url()),
        ("LEADQ_DATA_DIR", data.path().display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crate::helpers::leadq(&["admin", "rotate-key"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 credential(s) re-encrypted"));

    let read = |name: &str| {
        SecretString::from(
            std::fs::read_to_string(data.path().join(name))
                .expect("key")
                .trim()
                .to_owned(),
        )
    };
    let new_key = read("master.key");
    assert_ne!(new_key.expose_secret(), old_key.expose_secret());
    assert_eq!(read("master.key.previous").expose_secret(), old_key.expose_secret());
    let new = Credentials::open(&bus.js, sealed_with(&new_key))
        .await
        .expect("credentials");
    assert_eq!(
        new.get("airtable", "token")
            .await
            .expect("opens")
            .expect("saved")
            .expose_secret(),
        token.expose_secret()
    );
    assert!(matches!(
        old.get("airtable", "token").await,
        Err(CredentialError::KeyNotHeld { .. })
    ));

    // A process holding a key that opens nothing rotates nothing.
    let stranger = leadq::security::secrets::new_master_key();
    let mut env = env.clone();
    env.push(("LEADQ_MASTER_KEY", stranger.expose_secret()));
    let out = crate::helpers::leadq(&["admin", "rotate-key"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key version"));
    assert_eq!(
        new.get("airtable", "token")
            .await
            .expect("still opens")
            .expect("saved")
            .expose_secret(),
        token.expose_secret()
    );
}

#[tokio::test]
async fn credentials_saved_while_running_reach_the_worker_roles() {
    use leadq::app::Role;
    use standins::twilio::TwilioStandIn;
    const SID: &str = "AC00000000000000000000000000000042";
    const TOKEN: &str = "saved-from-the-admin-page";
    static ROLES: [Role; 2] = [Role::Api, Role::Caller];
    let nats = NatsServer::start();
    let twilio = TwilioStandIn::start(SID, TOKEN, 0).await.expect("stand-in");
    let mut settings = nats.settings();
    let base = on_free_port(&mut settings);
    settings.twilio.api_base = twilio.base_url().parse().expect("url");
    settings.calling_hours.start = jiff::civil::Time::MIN;
    settings.calling_hours.end = jiff::civil::Time::MAX;
    let master_key = settings.master_key.clone().expect("test key");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    // As `leadq` runs it: on a thread with a main thread's stack, with a runtime of its own.
    let agent_shutdown = shutdown.clone();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(leadq::app::run(settings, &ROLES, agent_shutdown))
        })
        .expect("agent thread");
    crate::helpers::eventually(Duration::from_secs(20), "the api", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    // No Twilio yet: the lead waits on its consumer.
    let bus = nats.ready_bus().await;
    let form = vec![
        ("fname".to_owned(), "Ada".to_owned()),
        ("phone".to_owned(), "+14155550142".to_owned()),
    ];
    let lead = leadq::bus::LeadReceived::new(
        uuid::Uuid::now_v7(),
        leadq::bus::LeadSource::CmoTrigger,
        leadq::domain::Lead::from_form(form, Default::default(), phonenumber::country::Id::US).expect("lead"),
        leadq::bus::IntakeTimestamps {
            inbox_at: None,
            seen_at: time::OffsetDateTime::now_utc(),
            published_at: time::OffsetDateTime::now_utc(),
        },
    );
    bus.publish(&lead).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(twilio.calls().is_empty(), "no call without credentials");

    // An admin saves them (here from another client of the bucket, as another process would).
    let vault = leadq::security::credentials::Vault::new(&master_key, None).expect("vault");
    let credentials = leadq::security::credentials::Credentials::open(&bus.js, vault)
        .await
        .expect("credentials");
    for (key, value) in [
        ("from_number", "+15005550006"),
        ("account_sid", SID),
        ("auth_token", TOKEN),
    ] {
        credentials
            .set("twilio", key, &SecretString::from(value.to_owned()), "boss")
            .await
            .expect("save");
    }
    crate::helpers::eventually(
        Duration::from_secs(20),
        "the call placed with the saved credentials",
        || async { twilio.calls().iter().any(|call| call.to == "+14155550142") },
    )
    .await;
}

#[tokio::test]
async fn an_edited_script_and_rules_are_what_the_next_call_uses() {
    let admin = Box::pin(spawn_admin(|_| {})).await;
    let token = sign_in(&admin, "boss").await;
    let (_, mut current) = admin.call(Method::GET, "/api/admin/script", Some(&token), None).await;
    current["script"]["greeting"] = json!("Hello {name}, Mesh Cowork here.");
    current["rules"]["min_team_size"] = json!(4);
    let (status, saved) = admin
        .call(Method::PUT, "/api/admin/script", Some(&token), Some(current.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    // What the caller and the finalizer read, from the bucket they share across processes.
    let script = admin.ctx.config.script().await;
    assert_eq!(script.greeting_for(Some("Ada")), "Hello Ada, Mesh Cowork here.");
    assert_eq!(admin.ctx.config.rules().await.min_team_size, 4);
    // The Spanish script is edited the same way, and a save without it leaves it alone.
    assert!(
        current["script_es"]["greeting"]
            .as_str()
            .is_some_and(|g| g.starts_with("Hola"))
    );
    let mut spanish = current.clone();
    spanish["script_es"]["greeting"] = json!("Buenas, {name}, le llama Mesh Cowork.");
    let (status, _) = admin
        .call(Method::PUT, "/api/admin/script", Some(&token), Some(spanish.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut without = current.clone();
    without.as_object_mut().expect("object").remove("script_es");
    let (status, _) = admin
        .call(Method::PUT, "/api/admin/script", Some(&token), Some(without))
        .await;
    assert_eq!(status, StatusCode::OK);
    let spanish_now = admin.ctx.config.spanish_script().await;
    assert_eq!(
        spanish_now.greeting_for(Some("Ana")),
        "Buenas, Ana, le llama Mesh Cowork."
    );
    let current = spanish;

    // An unusable script is refused with the reason, and the saved one stays.
    let mut broken = current.clone();
    broken["script"]["questions"] = json!([]);
    let (status, body) = admin
        .call(Method::PUT, "/api/admin/script", Some(&token), Some(broken))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("questions")),
        "{body}"
    );
    let (_, after) = admin.call(Method::GET, "/api/admin/script", Some(&token), None).await;
    assert_eq!(after, current);

    // "Try an answer" reads with the script in force.
    let (status, reading) = admin
        .call(
            Method::POST,
            "/api/admin/script/try",
            Some(&token),
            Some(json!({ "question": "team_size", "text": "about a dozen", "today": "2026-11-24" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reading}");
    assert_eq!(reading["value"], 12);
    assert_eq!(reading["captured"], true);
    let (status, _) = admin
        .call(
            Method::POST,
            "/api/admin/script/try",
            Some(&token),
            Some(json!({ "question": "nope", "text": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_changed_role_or_password_counts_at_once_for_tokens_already_issued() {
    let admin = Box::pin(spawn_admin(|_| {})).await;
    let token = sign_in(&admin, "boss").await;
    let (status, _) = admin
        .call(Method::GET, "/api/admin/credentials", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Demoted: setting a user's role or password ends the sign-ins made before (a second later,
    // since tokens carry whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    admin
        .ctx
        .users
        .upsert("boss", UserRole::Viewer, PASSWORD.into())
        .await
        .expect("demote");
    let (status, body) = admin
        .call(Method::GET, "/api/admin/credentials", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("sign in again")),
        "{body}"
    );
    // Signed in again, the new role is what counts.
    let token = sign_in(&admin, "boss").await;
    let (status, _) = admin
        .call(Method::GET, "/api/admin/credentials", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin.call(Method::GET, "/api/admin/stats", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_twilio_token_saved_on_the_page_signs_webhooks_at_once_and_deleting_it_restores_the_configured_one() {
    let admin = Box::pin(spawn_admin(|s| {
        s.twilio.auth_token = Some("configured-token".to_owned().into())
    }))
    .await;
    let token = sign_in(&admin, "boss").await;
    let webhook = |signed_with: &'static str| {
        let url = format!("{}/webhooks/twilio/sms", admin.base);
        let params = vec![
            ("From".to_owned(), "+14155550199".to_owned()),
            ("Body".to_owned(), "hello".to_owned()),
        ];
        let signature = leadq::clients::twilio::signature::sign(signed_with, &url, &params);
        let request = admin
            .http
            .post(url)
            .form(&params)
            .header("X-Twilio-Signature", signature);
        async move { request.send().await.expect("webhook").status() }
    };
    assert_eq!(webhook("configured-token").await, StatusCode::OK);
    let saved = json!({ "service": "twilio", "key": "auth_token", "value": "saved-on-the-page" });
    let (status, _) = admin
        .call(Method::POST, "/api/admin/credentials", Some(&token), Some(saved))
        .await;
    assert_eq!(status, StatusCode::OK);
    crate::helpers::eventually(Duration::from_secs(5), "the saved token in use", || async {
        webhook("saved-on-the-page").await == StatusCode::OK
    })
    .await;
    assert_eq!(webhook("configured-token").await, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .call(
            Method::DELETE,
            "/api/admin/credentials/twilio/auth_token",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    crate::helpers::eventually(Duration::from_secs(5), "the configured token back", || async {
        webhook("configured-token").await == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_lists_the_calls_in_progress_and_not_the_finished_ones() {
    use leadq::bus::kv::calls::{CallPhase, CallState};
    let admin = Box::pin(spawn_admin(|_| {})).await;
    let token = sign_in(&admin, "watcher").await;
    let (_, stats) = admin.call(Method::GET, "/api/admin/stats", Some(&token), None).await;
    assert_eq!(stats["calls_in_progress"], json!([]));
    for (name, phase) in [
        ("Ada", CallPhase::Dialed),
        ("Bo", CallPhase::Completed),
        ("Cy", CallPhase::Dialing),
    ] {
        let mut state = CallState::queued(uuid::Uuid::now_v7(), "+14155550142", Some(name));
        state.phase = phase;
        assert!(admin.ctx.calls.create(&state).await.expect("create"));
    }
    let (status, stats) = admin.call(Method::GET, "/api/admin/stats", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let mut names: Vec<&str> = stats["calls_in_progress"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|call| call["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["Ada", "Cy"]);
}
