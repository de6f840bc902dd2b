//! Lead notification emails through `leadq parse-email`, judged by the fixtures' expected.json.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::helpers::leadq;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/emails")
}

#[test]
fn every_fixture_email_parses_as_expected_json_says() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json"))
            .expect("json");
    let cases = expected.as_object().expect("object");
    let mut checked = 0;
    for (name, want) in cases.iter().filter(|(name, _)| !name.starts_with('_')) {
        let path = fixtures().join(name);
        let out = leadq(&["parse-email", path.to_str().expect("utf-8 path")], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if let Some(error) = want.get("error") {
            assert_eq!(out.status.code(), Some(2), "{name}: exit code");
            assert_eq!(got["error"], *error, "{name}: {got}");
            if let Some(field) = want.get("field") {
                assert_eq!(got["field"], *field, "{name}: {got}");
            }
            assert!(
                got["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}: no detail: {got}"
            );
        } else {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for (key, value) in want["lead"].as_object().expect("lead object") {
                assert_eq!(got[key], *value, "{name}: {key}");
            }
            assert!(got["extras"].is_object(), "{name}: extras missing");
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} fixtures");
}

#[test]
fn parse_email_reads_standard_input() {
    let raw = std::fs::read(fixtures().join("01-plain-private-office.eml")).expect("fixture");
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadq"))
        .args(["parse-email", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(&raw).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["phone"], "+12015550123");
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let out = leadq(&["parse-email", "/nonexistent/lead.eml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lead.eml"));
}

#[test]
fn malformed_emails_never_panic_and_answer_with_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut huge = b"Subject: big\r\nContent-Type: text/plain\r\n\r\nSubmitted Form Data\r\n\r\nmessage\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 20 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("junk", (0..=255u8).cycle().take(4096).collect()),
        (
            "header-only",
            b"From: a@b.c\r\nSubject: A new lead has been captured\r\n".to_vec(),
        ),
        (
            "broken-boundary",
            b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--y\r\nSubmitted Form Data\r\n--x".to_vec(),
        ),
        ("twenty-megabytes", huge),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = leadq(&["parse-email", path.to_str().expect("path")], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
        assert!(
            got["error"] == "not_a_lead" || got["error"] == "invalid_lead",
            "{name}: {got}"
        );
    }
}
