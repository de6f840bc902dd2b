//! `<Dial>` as Twilio plays it: the called party's phone rings (their persona: busy, no answer, or
//! a person), a person first hears the `<Number url>` TwiML (the whisper) on a leg of their own
//! and may take the call (an empty end of that TwiML) or decline it (`<Hangup>`); the two then talk
//! until one hangs up. What the dial's `action` is posted with comes back.

use std::collections::VecDeque;
use std::time::Duration;

use super::{CallRecord, Persona, StandIn, fetch, now_rfc2822};
use crate::twiml::Verb;

/// How the dial ended, as `DialCallStatus`, `DialCallSid`, `DialCallDuration` and `DialBridged`.
pub(super) struct DialEnd {
    pub status: &'static str,
    pub sid: Option<String>,
    pub duration: u64,
    pub bridged: bool,
}

impl DialEnd {
    pub fn params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            ("DialCallStatus".to_owned(), self.status.to_owned()),
            ("DialCallDuration".to_owned(), self.duration.to_string()),
            ("DialBridged".to_owned(), self.bridged.to_string()),
        ];
        if let Some(sid) = &self.sid {
            params.push(("DialCallSid".into(), sid.clone()));
        }
        params
    }
}

/// Plays a `<Dial>` from the call `parent` to `number`, with `whisper` heard by the called party.
pub(super) async fn dial(
    standin: &StandIn,
    parent: &CallRecord,
    number: &str,
    caller_id: &str,
    whisper: Option<&str>,
) -> DialEnd {
    let persona = {
        let shared = standin.lock();
        shared.personas.get(number).or(shared.dial_default.as_ref()).cloned()
    };
    let not_reached = |status| DialEnd {
        status,
        sid: None,
        duration: 0,
        bridged: false,
    };
    let mut answers: VecDeque<(String, f32)> = match persona {
        Some(Persona::Answers(answers)) => answers.into(),
        Some(Persona::Busy) => return not_reached("busy"),
        Some(Persona::Failed) => return not_reached("failed"),
        // Nobody set up at that number: it rings out, as a phone nobody picks up.
        Some(Persona::NoAnswer | Persona::Machine) | None => return not_reached("no-answer"),
    };
    let sid = format!("CA{:032x}", rand::random::<u128>());
    let leg = CallRecord {
        sid: sid.clone(),
        to: number.to_owned(),
        from: caller_id.to_owned(),
        url: whisper.unwrap_or_default().to_owned(),
        status: "in-progress".into(),
        date_created: now_rfc2822(),
        ..CallRecord::default()
    };
    standin.lock().calls.push(leg);
    let base = vec![
        ("CallSid".to_owned(), sid.clone()),
        ("ParentCallSid".to_owned(), parent.sid.clone()),
        ("AccountSid".to_owned(), standin.account_sid.clone()),
        ("From".to_owned(), caller_id.to_owned()),
        ("To".to_owned(), number.to_owned()),
        ("Direction".to_owned(), "outbound-dial".to_owned()),
        ("CallStatus".to_owned(), "in-progress".to_owned()),
    ];
    let started = std::time::Instant::now();
    let mut accepted = true;
    let mut next = whisper.map(|url| (url.to_owned(), base.clone()));
    // The whisper: the called party's own document, which may gather an answer and go on.
    'whisper: for _ in 0..8 {
        let Some((url, params)) = next.take() else { break };
        let Some(verbs) = fetch(standin, &sid, &url, &params).await else {
            accepted = false;
            break;
        };
        for verb in verbs {
            match verb {
                Verb::Say(text) => standin.record(&sid, |c| c.heard.push(text)),
                Verb::Hangup => {
                    accepted = false;
                    break 'whisper;
                }
                Verb::Gather {
                    action, prompt, input, ..
                } => {
                    standin.record(&sid, |c| c.heard.extend(prompt));
                    let (said, confidence) = answers.pop_front().unwrap_or_default();
                    standin.record(&sid, |c| c.said.push(said.clone()));
                    let mut params = base.clone();
                    let keys = input.as_deref().is_some_and(|i| i.contains("dtmf"));
                    if keys && !said.is_empty() && said.chars().all(|c| c.is_ascii_digit()) {
                        params.push(("Digits".into(), said));
                    } else {
                        params.push(("SpeechResult".into(), said));
                        params.push(("Confidence".into(), confidence.to_string()));
                    }
                    next = Some((action.unwrap_or_else(|| url.clone()), params));
                    continue 'whisper;
                }
                Verb::Redirect(target) => {
                    next = Some((target, base.clone()));
                    continue 'whisper;
                }
                Verb::Pause => {}
                Verb::Dial { .. } => {
                    standin.record(&sid, |c| {
                        c.errors.push("a <Dial> in a whisper (Twilio refuses it)".into())
                    });
                    accepted = false;
                    break 'whisper;
                }
            }
        }
    }
    if accepted {
        let talk = standin.lock().talk_time;
        tokio::time::sleep(talk).await;
        standin.record(&parent.sid, |c| c.timeline.push("bridged".into()));
    }
    let duration = started.elapsed().as_secs().max(1);
    standin.record(&sid, |c| {
        c.status = "completed".into();
        c.duration = Some(duration);
    });
    // A declined whisper ends the called party's leg as completed, never bridged.
    DialEnd {
        status: "completed",
        sid: Some(sid),
        duration,
        bridged: accepted,
    }
}

/// How long a rep who took the call talks with the lead (the stand-in's default).
pub(super) const TALK_TIME: Duration = Duration::from_millis(1200);
