//! The binary as an operator meets it: bad settings, and a role that starts, is ready, and stops.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{NatsServer, free_port, leadq};

fn assert_clear_failure(output: &std::process::Output, names: &str) {
    assert!(!output.status.success(), "exited 0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].contains(names), "`{}` does not name {names}", lines[0]);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn unreachable_nats_exits_non_zero_naming_the_setting() {
    let out = leadq(&["setup"], &[("LEADQ_NATS_URL", "nats://127.0.0.1:1")]);
    assert_clear_failure(&out, "LEADQ_NATS_URL");
    let out = leadq(
        &["all"],
        &[("LEADQ_NATS_URL", "nats://127.0.0.1:1"), ("LEADQ_DB", "mem://")],
    );
    assert_clear_failure(&out, "LEADQ_NATS_URL");
}

#[test]
fn a_bad_db_url_exits_2_naming_the_setting() {
    let out = leadq(&["all"], &[("LEADQ_DB", "postgres://localhost/leads")]);
    assert_clear_failure(&out, "LEADQ_DB");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_malformed_address_exits_2_naming_the_setting() {
    let out = leadq(&["api"], &[("LEADQ_HTTP_ADDR", "localhost:http")]);
    assert_clear_failure(&out, "LEADQ_HTTP_ADDR");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_config_file_is_named() {
    let out = leadq(&["setup", "--config", "/nonexistent/leadq.toml"], &[]);
    assert_clear_failure(&out, "--config");
}

#[tokio::test]
async fn the_api_role_is_ready_with_nats_and_store_then_stops_on_sigterm() {
    let mut nats = Some(NatsServer::start());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadq"))
        .arg("api")
        .env("LEADQ_NATS_URL", nats.as_ref().map(|n| n.url()).unwrap_or_default())
        .env("LEADQ_DB", "mem://")
        .env("LEADQ_HTTP_ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn leadq api");
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    crate::helpers::eventually(Duration::from_secs(30), "/readyz 200", || {
        let (http, url) = (http.clone(), format!("{base}/readyz"));
        async move { http.get(url).send().await.map(|r| r.status() == 200).unwrap_or(false) }
    })
    .await;
    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["checks"]["nats"]["ok"], true);
    assert_eq!(ready["checks"]["store"]["ok"], true);
    let health = http.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let missing = http.get(format!("{base}/api/no/such/route")).send().await.expect("404");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json error");
    assert!(body["error"].is_string());

    // NATS gone: not ready, and the response says which check failed.
    nats.take();
    crate::helpers::eventually(Duration::from_secs(15), "/readyz 503", || {
        let (http, url) = (http.clone(), format!("{base}/readyz"));
        async move { http.get(url).send().await.map(|r| r.status() == 503).unwrap_or(false) }
    })
    .await;
    let not_ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(not_ready["checks"]["nats"]["ok"], false);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leadq api did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked_from_the_command_line() {
    let nats = NatsServer::start();
    let url = nats.url();
    let out = leadq(
        &[
            "admin",
            "api-key",
            "create",
            "--name",
            "cmo-agent",
            "--allow-ip",
            "127.0.0.0/8",
        ],
        &[("LEADQ_NATS_URL", &url)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("lq_") && key.len() > 40, "{key}");
    let keys = leadq::security::api_keys::ApiKeys::open(&nats.bus().await.js)
        .await
        .expect("keys");
    let loopback = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(
        keys.check(&key, loopback).await.expect("check"),
        leadq::security::api_keys::KeyCheck::Valid("cmo-agent".into())
    );

    let list = leadq(&["admin", "api-key", "list"], &[("LEADQ_NATS_URL", &url)]);
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed.contains("cmo-agent") && listed.contains("127.0.0.0/8"),
        "{listed}"
    );
    assert!(!listed.contains(&key[20..]), "the list shows the secret");
    let id = listed.split_whitespace().next().expect("an id").to_owned();
    assert!(
        leadq(&["admin", "api-key", "revoke", &id], &[("LEADQ_NATS_URL", &url)])
            .status
            .success()
    );
    assert_eq!(
        keys.check(&key, loopback).await.expect("check"),
        leadq::security::api_keys::KeyCheck::Revoked
    );
    let unknown = leadq(
        &["admin", "api-key", "revoke", "0000000000000000"],
        &[("LEADQ_NATS_URL", &url)],
    );
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_role_without_its_service_configured_names_the_settings_and_exits_2() {
    // NATS is up (saved credentials could supply the service), but nothing is configured anywhere.
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("data dir");
    let url = nats.url();
    let env = [
        ("LEADQ_NATS_URL", url.as_str()),
        ("LEADQ_DATA_DIR", data.path().to_str().expect("utf-8")),
        ("LEADQ_LOG", "warn"),
    ];
    let out = leadq(&["caller"], &env);
    assert_clear_failure(&out, "LEADQ_TWILIO__ACCOUNT_SID");
    assert_eq!(out.status.code(), Some(2));
    let out = leadq(&["poller"], &env);
    assert_clear_failure(&out, "LEADQ_IMAP__HOST");
    assert_eq!(out.status.code(), Some(2));
}

/// `leadq admin create-user` with the password on standard input, as scripts and checks call it.
fn create_user(nats: &NatsServer, username: &str, role: &str, password: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadq"))
        .args(["admin", "create-user", "--username", username, "--role", role])
        .env("LEADQ_NATS_URL", nats.url())
        .env("LEADQ_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("leadq admin create-user");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    child.wait_with_output().expect("wait")
}

#[test]
fn users_are_created_from_standard_input_and_bad_ones_exit_2() {
    let nats = NatsServer::start();
    let made = create_user(&nats, "ops.team", "cmo_agent", "a long enough password");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stdout).contains("created with role cmo_agent"));
    let again = create_user(&nats, "ops.team", "viewer", "another long password");
    assert!(String::from_utf8_lossy(&again.stdout).contains("updated with role viewer"));

    let bad_name = create_user(&nats, "Not Valid!", "admin", "a long enough password");
    assert_clear_failure(&bad_name, "username");
    assert_eq!(bad_name.status.code(), Some(2));
    let weak = create_user(&nats, "someone", "admin", "short");
    assert_clear_failure(&weak, "at least 10 characters");
    assert_eq!(weak.status.code(), Some(2));

    let url = nats.url();
    let listed = leadq(
        &["admin", "users"],
        &[("LEADQ_NATS_URL", url.as_str()), ("LEADQ_LOG", "warn")],
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("ops.team") && listed.contains("viewer"), "{listed}");
    assert!(!listed.contains("someone"), "a refused user was not stored: {listed}");
}
