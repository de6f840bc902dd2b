//! Qualification rules as data (admins edit them beside the script) and the assessment of one
//! finished call: a score from 0 to 100, a verdict, and the reasons behind it.

use jiff::ToSpan;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answers::Interpretation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rules {
    pub min_team_size: u32,
    /// The move-in date must be within this many months of the call.
    pub max_move_in_months: u32,
    /// Dollars per month.
    pub min_monthly_budget: f64,
    pub require_decision_maker: bool,
    /// A score at or above this, with no rule failed, is `qualified`.
    pub qualified_score: u8,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_team_size: 1,
            max_move_in_months: 6,
            min_monthly_budget: 300.0,
            require_decision_maker: true,
            qualified_score: 70,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Qualified,
    Unqualified,
    NeedsReview,
    NoAnswer,
    CallFailed,
    Voicemail,
    /// A person answered but the call broke on leadq's side before the questions were through.
    Interrupted,
    /// The lead spoke, but too little of what they said could be read: a person should listen
    /// to the transcript. Not `no_answer`, which is nobody speaking.
    Unclear,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Self::Qualified,
        Self::Unqualified,
        Self::NeedsReview,
        Self::Unclear,
        Self::NoAnswer,
        Self::CallFailed,
        Self::Voicemail,
        Self::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qualified => "qualified",
            Self::Unqualified => "unqualified",
            Self::NeedsReview => "needs_review",
            Self::NoAnswer => "no_answer",
            Self::CallFailed => "call_failed",
            Self::Voicemail => "voicemail",
            Self::Interrupted => "interrupted",
            Self::Unclear => "unclear",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub score: u8,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

/// How the call ended, as Twilio reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd<'a> {
    pub status: &'a str,
    pub answered_by: Option<&'a str>,
    /// A person picked up but leadq's webhooks failed them (nothing said, or the call's end
    /// learnt from Twilio with questions unasked): not a lead who did not answer.
    pub cut_off: bool,
}

/// Each of the four rules is worth a quarter of the score; an unknown answer earns part of it.
const FULL: u8 = 25;
const UNKNOWN: u8 = 10;

enum Check {
    Met(String),
    Failed(String),
    Unknown(String),
}

/// The lower end of a value that may be a range (`{"min", "max"}`): rules judge conservatively.
fn lower(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.get("min").and_then(Value::as_f64))
}

fn answer<'a>(answers: &'a [Interpretation], id: &str) -> Option<&'a Value> {
    answers
        .iter()
        .find(|a| a.question == id && a.captured && !a.value.is_null())
        .map(|a| &a.value)
}

pub fn assess(rules: &Rules, answers: &[Interpretation], end: CallEnd<'_>, call_date: Date) -> Assessment {
    let ended = |verdict: Verdict, reason: &str| Assessment {
        score: 0,
        verdict,
        reasons: vec![reason.to_owned()],
    };
    match end.status {
        "busy" => return ended(Verdict::NoAnswer, "the line was busy"),
        "no-answer" => return ended(Verdict::NoAnswer, "nobody answered"),
        "failed" => return ended(Verdict::CallFailed, "the call could not be placed"),
        "canceled" => return ended(Verdict::CallFailed, "the call was canceled"),
        _ => {}
    }
    if end.answered_by.is_some_and(|a| a.starts_with("machine") || a == "fax") {
        return ended(
            Verdict::Voicemail,
            "an answering machine took the call; a voicemail was left",
        );
    }
    if end.cut_off {
        let heard = answers.iter().filter(|a| a.captured).count();
        return ended(
            Verdict::Interrupted,
            &format!(
                "the lead answered, but the call broke on leadq's side after {heard} of {} answers",
                answers.len()
            ),
        );
    }
    let spoke = answers.iter().filter(|a| !a.raw.trim().is_empty()).count();
    let read = answers.iter().filter(|a| a.captured).count();
    if read == 0 && spoke == 0 {
        return ended(Verdict::NoAnswer, "the call was answered but nobody said anything");
    }
    if read == 0 {
        return ended(
            Verdict::Unclear,
            &format!("the lead answered {spoke} times, but no answer could be read"),
        );
    }
    let checks = [
        match answer(answers, "team_size").and_then(lower) {
            Some(n) if n >= f64::from(rules.min_team_size) => {
                Check::Met(format!("team of {n} meets the minimum of {}", rules.min_team_size))
            }
            Some(n) => Check::Failed(format!("team of {n} is below the minimum of {}", rules.min_team_size)),
            None => Check::Unknown("team size unknown".into()),
        },
        match answer(answers, "move_in")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<Date>().ok())
        {
            Some(date) => {
                let latest = call_date.saturating_add(i64::from(rules.max_move_in_months).months());
                if date <= latest {
                    Check::Met(format!("moves in {date}, within {} months", rules.max_move_in_months))
                } else {
                    Check::Failed(format!(
                        "moves in {date}, later than {} months out",
                        rules.max_move_in_months
                    ))
                }
            }
            None => Check::Unknown("move-in date unknown".into()),
        },
        match answer(answers, "budget").and_then(lower) {
            Some(b) if b >= rules.min_monthly_budget => {
                Check::Met(format!("budget ${b:.0}/month meets ${:.0}", rules.min_monthly_budget))
            }
            Some(b) => Check::Failed(format!(
                "budget ${b:.0}/month is below ${:.0}",
                rules.min_monthly_budget
            )),
            None => Check::Unknown("budget unknown".into()),
        },
        match answer(answers, "decision_maker").and_then(Value::as_bool) {
            Some(true) => Check::Met("speaks to the decision maker".into()),
            Some(false) if rules.require_decision_maker => Check::Failed("not the decision maker".into()),
            Some(false) => Check::Met("not the decision maker (not required)".into()),
            None => Check::Unknown("decision maker unknown".into()),
        },
    ];
    let mut score = 0u8;
    let (mut failed, mut unknown) = (0, 0);
    let mut reasons = Vec::new();
    for check in checks {
        match check {
            Check::Met(reason) => {
                score += FULL;
                reasons.push(reason);
            }
            Check::Failed(reason) => {
                failed += 1;
                reasons.push(reason);
            }
            Check::Unknown(reason) => {
                score += UNKNOWN;
                unknown += 1;
                reasons.push(reason);
            }
        }
    }
    let verdict = if failed > 0 {
        Verdict::Unqualified
    } else if read * 2 < answers.len() {
        reasons.push(format!(
            "only {read} of {} answers could be read; the transcript says the rest",
            answers.len()
        ));
        Verdict::Unclear
    } else if unknown >= 2 || score < rules.qualified_score {
        Verdict::NeedsReview
    } else {
        Verdict::Qualified
    };
    Assessment {
        score,
        verdict,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn heard(pairs: &[(&str, Value)]) -> Vec<Interpretation> {
        pairs
            .iter()
            .map(|(q, v)| Interpretation {
                question: (*q).into(),
                raw: String::new(),
                value: v.clone(),
                captured: true,
            })
            .collect()
    }

    const HUMAN: CallEnd<'static> = CallEnd {
        status: "completed",
        answered_by: Some("human"),
        cut_off: false,
    };
    const TODAY: Date = Date::constant(2026, 11, 24);

    #[test]
    fn all_four_met_is_qualified_with_full_score() {
        let answers = heard(&[
            ("space_type", json!("private_office")),
            ("team_size", json!(6)),
            ("move_in", json!("2026-12-01")),
            ("budget", json!(2000)),
            ("decision_maker", json!(true)),
        ]);
        let a = assess(&Rules::default(), &answers, HUMAN, TODAY);
        assert_eq!((a.score, a.verdict), (100, Verdict::Qualified), "{a:?}");
        assert_eq!(a.reasons.len(), 4);
    }

    #[test]
    fn a_failed_rule_is_unqualified_and_says_why() {
        let answers = heard(&[
            ("team_size", json!(6)),
            ("move_in", json!("2028-01-01")),
            ("budget", json!({"min": 100, "max": 200})),
            ("decision_maker", json!(false)),
        ]);
        let a = assess(&Rules::default(), &answers, HUMAN, TODAY);
        assert_eq!(a.verdict, Verdict::Unqualified);
        assert!(a.reasons.iter().any(|r| r.contains("later than 6 months")), "{a:?}");
        assert!(a.reasons.iter().any(|r| r.contains("below $300")), "{a:?}");
        assert!(a.reasons.iter().any(|r| r == "not the decision maker"), "{a:?}");
    }

    #[test]
    fn unknowns_need_a_person_to_review() {
        let answers = heard(&[
            ("team_size", json!(4)),
            ("decision_maker", json!(true)),
            ("move_in", Value::Null),
        ]);
        let a = assess(&Rules::default(), &answers, HUMAN, TODAY);
        assert_eq!((a.score, a.verdict), (70, Verdict::NeedsReview), "{a:?}");
    }

    #[test]
    fn call_outcomes_set_the_verdict() {
        let rules = Rules::default();
        let end = |status, answered_by| CallEnd {
            status,
            answered_by,
            cut_off: false,
        };
        assert_eq!(assess(&rules, &[], end("busy", None), TODAY).verdict, Verdict::NoAnswer);
        assert_eq!(
            assess(&rules, &[], end("no-answer", None), TODAY).verdict,
            Verdict::NoAnswer
        );
        assert_eq!(
            assess(&rules, &[], end("failed", None), TODAY).verdict,
            Verdict::CallFailed
        );
        assert_eq!(
            assess(&rules, &[], end("completed", Some("machine_end_beep")), TODAY).verdict,
            Verdict::Voicemail
        );
        assert_eq!(
            assess(&rules, &[], end("completed", Some("human")), TODAY).verdict,
            Verdict::NoAnswer
        );
        // Spoke, but nothing read: unclear, never "no answer".
        let unread = |raw: &str, question: &str| Interpretation {
            question: question.into(),
            raw: raw.into(),
            value: Value::Null,
            captured: false,
        };
        let spoken = [unread("hello?", "space_type"), unread("what", "team_size")];
        assert_eq!(
            assess(&rules, &spoken, end("completed", Some("human")), TODAY).verdict,
            Verdict::Unclear
        );
        let silent = [unread("", "space_type"), unread(" ", "team_size")];
        assert_eq!(
            assess(&rules, &silent, end("completed", Some("human")), TODAY).verdict,
            Verdict::NoAnswer
        );
        // One answer of five read: too little to judge.
        let mut little = heard(&[("team_size", json!(4))]);
        little.extend(["a", "b", "c", "d"].map(|q| unread("mm hmm", q)));
        let a = assess(&rules, &little, end("completed", Some("human")), TODAY);
        assert_eq!(a.verdict, Verdict::Unclear, "{a:?}");
        let cut = CallEnd { cut_off: true, ..HUMAN };
        let a = assess(&rules, &heard(&[("space_type", json!("hot_desk"))]), cut, TODAY);
        assert_eq!(
            a.verdict,
            Verdict::Interrupted,
            "a call broken on leadq's side is not a no-answer"
        );
        assert!(a.reasons[0].contains("1 of 1 answers"), "{a:?}");
    }
}
