//! The answer table: spoken answers and what they mean, through the same code the finalizer uses,
//! and the shared sample through `leadq script test`.

use leadq::domain::answers::interpret;
use leadq::domain::script::Script;

use crate::helpers::leadq;

type Case = (String, String, serde_json::Value);

fn table() -> (jiff::civil::Date, Vec<Case>) {
    table_in("spoken_answers.json")
}

fn table_in(file: &str) -> (jiff::civil::Date, Vec<Case>) {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("table")).expect("json");
    let today = spec["today"].as_str().expect("today").parse().expect("date");
    let cases = spec["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c[0].as_str().expect("id").to_owned(),
                c[1].as_str().expect("text").to_owned(),
                c[2].clone(),
            )
        })
        .collect();
    (today, cases)
}

/// The expected value, read as the contract check reads it: a [min, max] list is a range.
fn matches(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    match want.as_array() {
        Some(range) => got["min"] == range[0] && got["max"] == range[1],
        None => match (want.as_f64(), got.as_f64()) {
            (Some(w), Some(g)) => (w - g).abs() < 0.01,
            _ => want == got,
        },
    }
}

/// The cases of `cases` read wrong, each with what was read instead.
fn read_wrong(today: jiff::civil::Date, cases: &[Case]) -> Vec<String> {
    let script = Script::default();
    let mut wrong = Vec::new();
    for (id, text, want) in cases {
        let question = script.questions.iter().find(|q| &q.id == id).expect("question id");
        let got = interpret(question, text, today);
        let right = if want == "uncaptured" {
            !got.captured && got.value.is_null()
        } else {
            got.captured && matches(want, &got.value)
        };
        if !right {
            wrong.push(format!(
                "{id} {text:?}: want {want}, got {} (captured {})",
                got.value, got.captured
            ));
        }
    }
    wrong
}

#[test]
fn the_answer_table_reads_every_spoken_answer_right() {
    let (today, cases) = table();
    assert!(cases.len() >= 100, "the table has only {} cases", cases.len());
    let wrong = read_wrong(today, &cases);
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Real speech: corrections, fillers, misspelt numbers, money and weekdays as said, sentences
/// that answer two questions, and Spanish; at least 95% read right.
#[test]
fn the_conversation_table_reads_at_least_95_percent_right() {
    let (today, cases) = table_in("conversation_answers.json");
    assert!(cases.len() >= 150, "the table has only {} cases", cases.len());
    let wrong = read_wrong(today, &cases);
    let right = cases.len() - wrong.len();
    assert!(
        right * 100 >= cases.len() * 95,
        "{right} of {} right ({:.1}%); wrong:\n{}",
        cases.len(),
        right as f64 * 100.0 / cases.len() as f64,
        wrong.join("\n")
    );
}

#[test]
fn script_test_prints_the_reading_as_json() {
    let out = leadq(
        &["script", "test", "team_size", "three or four", "--today", "2026-11-24"],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        got,
        serde_json::json!({
            "question": "team_size", "raw": "three or four", "value": {"min": 3, "max": 4}, "captured": true
        })
    );
    let unknown = leadq(&["script", "test", "favourite_colour", "blue"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("space_type"),
        "lists the questions"
    );
    // Spanish is read without being told; `--language en` reads English only.
    let read = |args: &[&str]| -> serde_json::Value {
        let out = leadq(&[&["script", "test", "team_size", "somos cinco"], args].concat(), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    assert_eq!(read(&[])["value"], 5);
    assert_eq!(read(&["--language", "es"])["value"], 5);
    assert_eq!(read(&["--language", "en"])["captured"], false);
    assert_eq!(
        leadq(&["script", "test", "team_size", "five", "--language", "fr"], &[])
            .status
            .code(),
        Some(2)
    );
}
