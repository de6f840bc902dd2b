//! What the admin page shows of a call and a lead, in the script's words: questions by their
//! prompt, answers as a person reads them. The store and the bus keep ids and values; the page
//! should not have to know the script to make sense of them.

use serde_json::{Value, json};

use crate::bus::kv::calls::{CallPhase, CallState};
use crate::domain::reading::in_words;
use crate::domain::script::{Question, Script};
use crate::store::{ActivityRow, LeadRecord};

fn question<'a>(script: &'a Script, id: &str) -> Option<&'a Question> {
    script.questions.iter().find(|q| q.id == id)
}

/// A question's prompt, or its id when the script no longer has it.
fn prompt(script: &Script, id: &str) -> String {
    question(script, id).map_or_else(|| id.to_owned(), |q| q.prompt.clone())
}

/// A call being dialled or talking, for the dashboard: once answered, the question being asked
/// and each answer as it was heard.
pub fn live_call(state: &CallState, script: &Script) -> Value {
    let answered = state.first_words_at.is_some();
    let talking = answered && state.phase == CallPhase::Dialed && !state.opted_out;
    // Questions are asked in the script's order; the first without an answer is on the line now.
    let asking = talking
        .then(|| script.questions.iter().find(|q| state.answer(&q.id).is_none()))
        .flatten()
        .map(|q| q.prompt.clone());
    let heard: Vec<Value> = state
        .answers
        .iter()
        .map(|a| json!({ "question": prompt(script, &a.question_id), "said": a.speech, "captured": a.captured }))
        .collect();
    json!({
        "lead_id": state.lead_id,
        "name": state.name,
        "phone": state.phone,
        "phase": state.phase,
        "answered": answered,
        "answers": state.answers.len(),
        "questions": script.questions.len(),
        "asking": asking,
        "heard": heard,
        "since": state.placed_at.unwrap_or(state.updated_at),
    })
}

/// A finished lead's record with what its page shows beside it: the transcript (each question,
/// what was said, how it was read, captured or not), what happened to it in order, the text sent,
/// and the CRM row when the sandbox holds it.
pub fn lead_page(record: LeadRecord, script: &Script, activity: Vec<ActivityRow>, crm_row: Option<Value>) -> Value {
    let transcript: Vec<Value> = record
        .answers
        .iter()
        .map(|answer| {
            let id = answer.question.as_str();
            let read_as = match question(script, id) {
                Some(q) => in_words(&q.answer, &answer.value, answer.captured),
                None if answer.captured => answer.value.to_string(),
                None => "not captured".into(),
            };
            let said = Some(answer.raw.as_str()).filter(|s| !s.trim().is_empty());
            json!({ "question": prompt(script, id), "said": said, "read_as": read_as, "captured": answer.captured })
        })
        .collect();
    let text_sent = activity
        .iter()
        .rev()
        .find(|row| row.kind == "sms.sent")
        .and_then(|row| row.detail["body"].as_str().map(str::to_owned));
    let mut record = serde_json::to_value(record).unwrap_or_default();
    record["transcript"] = Value::Array(transcript);
    record["text_sent"] = text_sent.map_or(Value::Null, Value::String);
    record["activity"] = serde_json::to_value(activity).unwrap_or_default();
    record["crm_row"] = crm_row.unwrap_or(Value::Null);
    record
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::bus::kv::calls::HeardAnswer;

    #[test]
    fn an_answered_call_shows_the_next_question_and_what_was_heard() {
        let script = Script::default();
        let mut state = CallState::queued(Uuid::now_v7(), "+14155550100", Some("Ada"));
        state.phase = CallPhase::Dialed;
        assert_eq!(
            live_call(&state, &script)["asking"],
            Value::Null,
            "ringing: nothing asked yet"
        );
        state.first_words_at = Some(OffsetDateTime::now_utc());
        state.answers.push(HeardAnswer {
            question_id: script.questions[0].id.clone(),
            speech: Some("a private office".into()),
            confidence: Some(0.9),
            captured: true,
            understood: true,
        });
        let view = live_call(&state, &script);
        assert_eq!(view["asking"], script.questions[1].prompt.as_str());
        assert_eq!(view["heard"][0]["question"], script.questions[0].prompt.as_str());
        assert_eq!(view["heard"][0]["said"], "a private office");
    }

    #[test]
    fn a_lead_page_reads_answers_as_words_and_finds_the_text_sent() {
        let script = Script::default();
        let record: LeadRecord = serde_json::from_value(json!({
            "id": "0193", "score": 40, "verdict": "needs_review", "crm_sync": "synced", "sms_state": "sent",
            "call_status": "completed",
            "contact": { "name": "Ada", "email": null, "phone": "+14155550100", "office_space": null,
                "message": null, "campaign_id": null, "message_id": null },
            "answers": [
                { "question": "space_type", "raw": "a hot desk", "value": "hot_desk", "captured": true },
                { "question": "team_size", "raw": "", "value": null, "captured": false },
                { "question": "gone_from_the_script", "raw": "yes", "value": true, "captured": true },
            ],
        }))
        .expect("a record");
        let sent = ActivityRow {
            id: "1".into(),
            kind: "sms.sent".into(),
            actor: "sms".into(),
            summary: "texted".into(),
            lead_id: None,
            detail: json!({ "body": "Hi Ada, book here" }),
            at: "2026-12-02T10:00:00Z".into(),
        };
        let page = lead_page(record, &script, vec![sent], None);
        let transcript = page["transcript"].as_array().expect("transcript");
        assert_eq!(transcript[0]["read_as"], "Hot desk");
        assert_eq!(transcript[0]["question"], script.questions[0].prompt.as_str());
        assert_eq!(
            (transcript[1]["read_as"].as_str(), &transcript[1]["said"]),
            (Some("not captured"), &Value::Null)
        );
        assert_eq!(transcript[2]["question"], "gone_from_the_script");
        assert_eq!(page["text_sent"], "Hi Ada, book here");
        assert_eq!(page["contact"]["name"], "Ada", "the record itself is on the page");
    }
}
