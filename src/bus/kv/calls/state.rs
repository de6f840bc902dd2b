//! A call's state and the named transitions that move it. Every writer (the caller, the Twilio
//! webhooks, the finalizer) changes an entry only through these, under the book's compare-and-set:
//! each returns whether it changed anything, so an unchanged state is not written.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::LeadReceived;
use crate::domain::answers::{Interpretation, interpret};
use crate::domain::script::Script;

/// How much longer Twilio may still act on a request made at `since` (a call or a text): `None`
/// once it is known to have done nothing (`ended`: refused, a 5xx or 429) or is older than
/// `bound`, the longest one request can take with its retries. Until then a second request
/// beside it could ring or text the person twice.
pub fn request_in_flight(
    since: OffsetDateTime,
    ended: bool,
    now: OffsetDateTime,
    bound: std::time::Duration,
) -> Option<std::time::Duration> {
    if ended {
        return None;
    }
    std::time::Duration::try_from(since + bound - now)
        .ok()
        .filter(|left| !left.is_zero())
}

/// Where a call stands. The caller moves `queued → dialing → dialed` around the Twilio request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    Queued,
    Dialing,
    Dialed,
    Completed,
}

/// One question's answer as heard; `captured` is false when nothing usable was heard twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeardAnswer {
    pub question_id: String,
    pub speech: Option<String>,
    pub confidence: Option<f32>,
    pub captured: bool,
    /// Whether the words read as an answer to this question (entries from before this was kept
    /// count as read).
    #[serde(default = "read_by_default")]
    pub understood: bool,
}

fn read_by_default() -> bool {
    true
}

/// What one answer webhook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Stored(HeardAnswer),
    AlreadyStored,
    /// Ask the question once more: after silence or a low confidence (`Unheard`), or after words
    /// that do not answer it (`Unread`: "a dedicated desk" to "how many people?").
    AskAgain(Reask),
    OptOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reask {
    Unheard,
    Unread,
}

/// How one spoken answer was taken: whether it was heard well enough, whether it reads as an
/// answer to the question asked, and the other questions it also answers ("we're twelve and
/// need it next month" to "how many people?" answers the move-in date too), which it fills
/// where they have no answer, or one that did not read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hearing<'a> {
    pub speech: Option<&'a str>,
    pub confidence: Option<f32>,
    pub heard: bool,
    pub understood: bool,
    pub also_answers: Vec<String>,
    pub opt_out: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallState {
    pub lead_id: Uuid,
    pub phone: String,
    pub name: Option<String>,
    pub phase: CallPhase,
    pub call_sid: Option<String>,
    #[serde(default)]
    pub answered_by: Option<String>,
    #[serde(default)]
    pub answers: Vec<HeardAnswer>,
    /// Questions already asked a second time after silence or low confidence.
    #[serde(default)]
    pub reprompted: Vec<String>,
    #[serde(default)]
    pub opted_out: bool,
    /// The lead as it came in, for the finalizer's record (the bucket outlives no call by much).
    #[serde(default)]
    pub intake: Option<Box<LeadReceived>>,
    /// When Twilio accepted the call: the end of speed-to-lead.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub placed_at: Option<OffsetDateTime>,
    /// Which try this is (see `LeadReceived::attempt`).
    #[serde(default)]
    pub attempt: u32,
    /// Twilio's `answered` status event, and when the first TwiML (the greeting) was served:
    /// how long a person who picked up waited to hear something.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub first_words_at: Option<OffsetDateTime>,
    /// The live call was sent to the voicemail after a machine was detected (once per call).
    #[serde(default)]
    pub voicemail_redirected: bool,
    /// The CallSids of the tries a retry replaced: a late final status of one of them is not
    /// this try's end.
    #[serde(default)]
    pub earlier_call_sids: Vec<String>,
    /// When this try's last `Calls.json` request ended in a way that did nothing at Twilio (a
    /// refused connection, a 5xx or 429): the next delivery may look the call up and place it at
    /// once. Unset while a request may still be acted on (in flight, or unanswered).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub dial_ended_at: Option<OffsetDateTime>,
    /// The warm transfer, when one was offered on this try.
    #[serde(default)]
    pub transfer: Option<super::Transfer>,
    /// The script variant of an A/B test the call is made with (`a`, `b`), chosen once at the
    /// greeting and kept for every later webhook and the finalizer.
    #[serde(default)]
    pub variant: Option<String>,
    /// The call's language: chosen at the greeting from the form or the page, changed when the
    /// lead asks for the other one.
    #[serde(default)]
    pub language: Option<crate::domain::language::Language>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl CallState {
    pub fn queued(lead_id: Uuid, phone: &str, name: Option<&str>) -> Self {
        Self {
            lead_id,
            phone: phone.to_owned(),
            name: name.map(str::to_owned),
            phase: CallPhase::Queued,
            call_sid: None,
            answered_by: None,
            answers: Vec::new(),
            reprompted: Vec::new(),
            opted_out: false,
            intake: None,
            placed_at: None,
            attempt: 0,
            answered_at: None,
            first_words_at: None,
            voicemail_redirected: false,
            earlier_call_sids: Vec::new(),
            dial_ended_at: None,
            transfer: None,
            variant: None,
            language: None,
            updated_at: OffsetDateTime::now_utc(),
        }
    }

    pub fn answer(&self, question_id: &str) -> Option<&HeardAnswer> {
        self.answers.iter().find(|a| a.question_id == question_id)
    }

    /// Each answer as heard, read with the script's answer types; unanswered questions are kept
    /// as not captured, so a record always lists the whole script.
    pub fn read_answers(&self, script: &Script, day: jiff::civil::Date) -> Vec<Interpretation> {
        script
            .questions
            .iter()
            .map(|question| match self.answer(&question.id) {
                Some(heard) if heard.captured => interpret(question, heard.speech.as_deref().unwrap_or(""), day),
                heard => Interpretation {
                    question: question.id.clone(),
                    raw: heard.and_then(|h| h.speech.clone()).unwrap_or_default(),
                    value: serde_json::Value::Null,
                    captured: false,
                },
            })
            .collect()
    }

    /// The day the call was placed (else `now`) in `zone`: what "next month" is read against.
    pub fn call_day(&self, zone: &jiff::tz::TimeZone, now: OffsetDateTime) -> jiff::civil::Date {
        jiff::Timestamp::from_second(self.placed_at.unwrap_or(now).unix_timestamp())
            .map(|t| t.to_zoned_datetime(zone.clone()).date())
            .unwrap_or_else(|_| jiff::ZonedDateTime::now().date())
    }

    /// Twilio had taken the call by `at`. Whoever sees it first records it (a status callback can
    /// beat the caller's own record); the earliest time wins, since it is the closest to the truth.
    /// Returns whether anything changed.
    pub fn placed_by(&mut self, at: OffsetDateTime) -> bool {
        match self.placed_at {
            Some(known) if known <= at => false,
            _ => {
                self.placed_at = Some(at);
                true
            }
        }
    }

    /// Whether a final status of call `call_sid` is the end of this entry's current try: not of
    /// a try a retry replaced, nor before this try was dialled.
    pub fn is_current_call(&self, call_sid: &str) -> bool {
        self.phase != CallPhase::Queued
            && !self.earlier_call_sids.iter().any(|s| s == call_sid)
            && self.call_sid.as_deref().is_none_or(|s| s == call_sid)
    }

    /// The current try ended with call `call_sid`. Only once its `call.completed` is on the
    /// stream: an entry that says completed is one whose end nobody needs to report again, so
    /// a lost publish must leave it dialed for the watchdog. Returns whether anything changed
    /// (nothing for a repeat, or for the end of a call that is not the current try's).
    pub fn complete(&mut self, call_sid: &str, answered_by: Option<&str>, at: OffsetDateTime) -> bool {
        if !self.is_current_call(call_sid) {
            return false;
        }
        let mut changed = self.phase != CallPhase::Completed;
        self.phase = CallPhase::Completed;
        if self.call_sid.is_none() && !call_sid.is_empty() {
            self.call_sid = Some(call_sid.to_owned());
            changed = true;
        }
        if self.answered_by.is_none()
            && let Some(by) = answered_by
        {
            self.answered_by = Some(by.to_owned());
            changed = true;
        }
        // A call that was never answered was still placed (and counts as a call made).
        changed | self.placed_by(at)
    }

    /// The caller claims a queued call for dialling; false when another replica moved it first.
    pub fn start_dialing(&mut self) -> bool {
        let ours = self.phase == CallPhase::Queued;
        if ours {
            self.phase = CallPhase::Dialing;
            self.dial_ended_at = None;
        }
        ours
    }

    /// The `Calls.json` request of this try ended at `at`, and Twilio did nothing of it.
    pub fn dial_ended(&mut self, at: OffsetDateTime) -> bool {
        let dialing = self.phase == CallPhase::Dialing && self.dial_ended_at.is_none();
        if dialing {
            self.dial_ended_at = Some(at);
        }
        dialing
    }

    /// Takes a `dialing` try over to place its call again (Twilio listed none): only once the
    /// earlier request is known to have ended, or has been unanswered for longer than a request
    /// can take (`in_flight_for`: its process died, or lost the message while still waiting).
    /// A request still in flight could yet create the call, and a second would ring twice.
    pub fn redial(&mut self, now: OffsetDateTime, in_flight_for: std::time::Duration) -> bool {
        let over = request_in_flight(self.updated_at, self.dial_ended_at.is_some(), now, in_flight_for).is_none();
        let ours = self.phase == CallPhase::Dialing && over;
        if ours {
            self.dial_ended_at = None;
        }
        ours
    }

    /// Twilio took call `call_sid` at `at`. A status callback of a short call (busy, say) can have
    /// come before this, so a call already completed stays completed.
    pub fn dialed(&mut self, call_sid: &str, at: OffsetDateTime) -> bool {
        let placing = matches!(self.phase, CallPhase::Queued | CallPhase::Dialing);
        let changed = placing || self.call_sid.is_none();
        if placing {
            self.phase = CallPhase::Dialed;
        }
        if self.call_sid.is_none() {
            self.call_sid = Some(call_sid.to_owned());
        }
        let placed = self.placed_by(at);
        changed || placed
    }

    /// Twilio's `answered` event: the start of the wait for the first words (the first one counts).
    pub fn answered(&mut self, at: OffsetDateTime) -> bool {
        let first = self.answered_at.is_none();
        if first {
            self.answered_at = Some(at);
        }
        first
    }

    /// The call's language from now on; `asked` (the lead asked for it) overrides an earlier
    /// choice, a first choice does not.
    pub fn speak(&mut self, language: crate::domain::language::Language, asked: bool) -> bool {
        let changed = self.language != Some(language) && (asked || self.language.is_none());
        if changed {
            self.language = Some(language);
        }
        changed
    }

    /// The language the call is in (English until one was chosen).
    pub fn language(&self) -> crate::domain::language::Language {
        self.language.unwrap_or_default()
    }

    /// The call is made with script `variant` from now on; the first choice stands.
    pub fn choose_variant(&mut self, variant: &str) -> bool {
        let first = self.variant.is_none();
        if first {
            self.variant = Some(variant.to_owned());
        }
        first
    }

    /// The greeting is served at `at` (the call-start webhook). `answered_by` is what this
    /// request says; without one (asynchronous detection) what the detection said is kept.
    pub fn first_words(&mut self, answered_by: Option<&str>, call_sid: Option<&str>, at: OffsetDateTime) -> bool {
        let answered_by = answered_by.map(str::to_owned).or_else(|| self.answered_by.clone());
        let changed = self.answered_by != answered_by || self.call_sid.is_none() || self.first_words_at.is_none();
        self.answered_by = answered_by;
        if self.call_sid.is_none() {
            self.call_sid = call_sid.map(str::to_owned);
        }
        if self.first_words_at.is_none() {
            self.first_words_at = Some(at);
        }
        let placed = self.placed_by(at);
        changed || placed
    }

    /// One answer webhook for `question_id`: the conversation's next step, and whether the state
    /// changed. An answer already stored is a repeat of the webhook; an opt-out ends the call; an
    /// answer not heard well enough, or heard but not an answer to this question, is asked once
    /// more, then kept as it is. Whatever it answers of the questions not yet answered is kept
    /// for them, so they are not asked.
    pub fn hear(&mut self, question_id: &str, hearing: &Hearing<'_>) -> (Step, bool) {
        if self.answer(question_id).is_some() {
            return (Step::AlreadyStored, false);
        }
        if hearing.opt_out {
            let changed = !self.opted_out;
            self.opted_out = true;
            return (Step::OptOut, changed);
        }
        let asked_twice = self.reprompted.iter().any(|q| q == question_id);
        let kept = |question_id: &str, understood: bool| HeardAnswer {
            question_id: question_id.to_owned(),
            speech: hearing.speech.map(str::to_owned),
            confidence: hearing.confidence,
            captured: hearing.heard,
            understood,
        };
        if hearing.heard {
            for other in hearing.also_answers.iter().filter(|q| *q != question_id) {
                self.answers.retain(|a| &a.question_id != other || a.understood);
                if self.answer(other).is_none() {
                    self.answers.push(kept(other, true));
                }
            }
        }
        let answered = hearing.heard && hearing.understood;
        if !(asked_twice || answered) {
            self.reprompted.push(question_id.to_owned());
            let why = if hearing.heard { Reask::Unread } else { Reask::Unheard };
            return (Step::AskAgain(why), true);
        }
        let answer = kept(question_id, hearing.heard && hearing.understood);
        self.answers.push(answer.clone());
        (Step::Stored(answer), true)
    }

    /// The first question after position `n` (1-based) of `script` with no answer yet.
    pub fn next_unanswered(&self, script: &Script, n: usize) -> Option<usize> {
        script
            .questions
            .iter()
            .enumerate()
            .skip(n)
            .find(|(_, q)| self.answer(&q.id).is_none())
            .map(|(i, _)| i + 1)
    }

    /// Answering-machine detection said `answered_by`. Returns whether the live call is to be
    /// sent to the voicemail (or hung up, for a fax): once per call, never after its end.
    pub fn machine_detected(&mut self, answered_by: &str) -> (bool, bool) {
        let machine = answered_by.starts_with("machine") || answered_by == "fax";
        let act = machine && !self.voicemail_redirected && self.phase != CallPhase::Completed;
        let changed = self.answered_by.as_deref() != Some(answered_by) || act;
        self.answered_by = Some(answered_by.to_owned());
        self.voicemail_redirected |= act;
        (act, changed)
    }

    /// The redirect to the voicemail failed: unmarked, so Twilio's retry of the callback tries again.
    pub fn voicemail_failed(&mut self) -> bool {
        let changed = self.voicemail_redirected;
        self.voicemail_redirected = false;
        changed
    }

    /// The try `tried` ended and is to be made again as attempt `next_attempt`: the entry goes
    /// back to queued with the try's call remembered as an earlier one. Only if the entry still
    /// holds that try (a repeat of the same end changes nothing).
    pub fn requeue(&mut self, tried: &CallState, next_attempt: u32) -> bool {
        let ours = self.attempt == tried.attempt && self.call_sid == tried.call_sid;
        if ours {
            self.earlier_call_sids.extend(self.call_sid.take());
            self.phase = CallPhase::Queued;
            self.attempt = next_attempt;
            self.answers.clear();
            self.reprompted.clear();
            self.answered_by = None;
            self.placed_at = None;
            self.answered_at = None;
            self.first_words_at = None;
            self.voicemail_redirected = false;
            self.transfer = None;
        }
        ours
    }

    /// From the `answered` event to the first words, in ms (0 when the words were first: Twilio
    /// fetches the TwiML and posts the event side by side).
    pub fn answered_to_first_words_ms(&self) -> Option<i64> {
        let (answered, first) = (self.answered_at?, self.first_words_at?);
        Some((first - answered).whole_milliseconds().max(0) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialed(sid: Option<&str>) -> CallState {
        let mut state = CallState::queued(Uuid::nil(), "+14155550142", Some("Ada"));
        state.phase = CallPhase::Dialed;
        state.call_sid = sid.map(str::to_owned);
        state
    }

    #[test]
    fn a_dialing_try_is_taken_over_only_once_its_request_is_over() {
        let bound = std::time::Duration::from_secs(65);
        let mut state = CallState::queued(Uuid::nil(), "+14155550142", Some("Ada"));
        assert!(state.start_dialing());
        let now = state.updated_at + time::Duration::seconds(10);
        assert!(!state.redial(now, bound), "a request may still be waiting on Twilio");
        assert!(state.dial_ended(now));
        assert!(!state.dial_ended(now), "marked once");
        assert!(state.redial(now, bound), "the request ended: place the call again");
        assert_eq!(state.dial_ended_at, None, "the new request is in flight");
        assert!(!state.redial(now, bound), "and only one takes it over");
        let later = state.updated_at + time::Duration::seconds(66);
        assert!(
            state.redial(later, bound),
            "unanswered past any request's time: its process died"
        );
        let mut placed = dialed(Some("CA1"));
        assert!(
            !placed.redial(later, bound) && !placed.dial_ended(later),
            "a placed call is never redialed"
        );
    }

    #[test]
    fn the_end_of_the_current_call_completes_the_entry_once() {
        let now = OffsetDateTime::now_utc();
        let mut state = dialed(Some("CA1"));
        assert!(state.complete("CA1", Some("human"), now));
        assert_eq!(state.phase, CallPhase::Completed);
        assert_eq!(state.answered_by.as_deref(), Some("human"));
        assert_eq!(state.placed_at, Some(now), "a call that ended was placed");
        assert!(!state.complete("CA1", Some("human"), now), "a repeat changes nothing");
    }

    #[test]
    fn a_final_status_that_beats_the_callers_record_names_the_call() {
        let mut state = dialed(None);
        state.phase = CallPhase::Dialing;
        assert!(state.complete("CA1", None, OffsetDateTime::now_utc()));
        assert_eq!(state.call_sid.as_deref(), Some("CA1"));
        assert_eq!(state.phase, CallPhase::Completed);
    }

    #[test]
    fn the_end_of_a_replaced_try_leaves_the_retry_alone() {
        let now = OffsetDateTime::now_utc();
        // Try 1 (CA1) ended busy and a retry was queued: its late repeat is not the retry's end.
        let mut state = dialed(None);
        state.phase = CallPhase::Queued;
        state.earlier_call_sids = vec!["CA1".into()];
        assert!(!state.complete("CA1", None, now));
        state.phase = CallPhase::Dialing;
        assert!(!state.is_current_call("CA1"), "while the retry is being dialled");
        assert!(!state.complete("CA1", None, now));
        assert_eq!((state.phase, state.call_sid.as_deref()), (CallPhase::Dialing, None));
        // Nor is another call's end.
        let mut other = dialed(Some("CA2"));
        assert!(!other.complete("CA3", None, now));
        assert_eq!(other.phase, CallPhase::Dialed);
    }
    #[test]
    fn a_queued_call_is_claimed_for_dialling_once_then_dialed() {
        let now = OffsetDateTime::now_utc();
        let mut state = CallState::queued(Uuid::nil(), "+14155550142", None);
        assert!(state.start_dialing());
        assert!(!state.start_dialing(), "a second replica loses");
        assert!(state.dialed("CA1", now));
        assert_eq!(
            (state.phase, state.call_sid.as_deref()),
            (CallPhase::Dialed, Some("CA1"))
        );
        assert_eq!(state.placed_at, Some(now));
        assert!(!state.dialed("CA1", now), "a repeat changes nothing");
    }

    #[test]
    fn a_call_that_ended_before_the_callers_record_stays_completed() {
        let now = OffsetDateTime::now_utc();
        let mut state = dialed(None);
        state.phase = CallPhase::Dialing;
        assert!(state.complete("CA1", Some("human"), now));
        state.dialed("CA1", now);
        assert_eq!(state.phase, CallPhase::Completed);
    }

    #[test]
    fn the_greeting_keeps_what_the_detection_said_and_the_first_time() {
        let early = OffsetDateTime::now_utc();
        let mut state = dialed(None);
        state.machine_detected("human");
        assert!(state.first_words(None, Some("CA1"), early));
        assert_eq!(state.answered_by.as_deref(), Some("human"));
        assert_eq!(state.call_sid.as_deref(), Some("CA1"));
        assert!(!state.first_words(None, Some("CA1"), early + time::Duration::seconds(3)));
        assert_eq!(state.first_words_at, Some(early));
        assert!(state.answered(early - time::Duration::milliseconds(400)));
        assert!(!state.answered(early), "the first answered event counts");
        assert_eq!(state.answered_to_first_words_ms(), Some(400));
    }

    /// A hearing of `speech`: heard when there is speech, understood when `understood`.
    fn said<'a>(speech: Option<&'a str>, understood: bool, also: &[&str]) -> Hearing<'a> {
        Hearing {
            speech,
            confidence: speech.map(|_| 0.9),
            heard: speech.is_some(),
            understood,
            also_answers: also.iter().map(|q| (*q).to_owned()).collect(),
            opt_out: false,
        }
    }

    #[test]
    fn an_unheard_answer_is_asked_once_more_then_kept_as_not_captured() {
        let mut state = dialed(Some("CA1"));
        let mumbled = Hearing {
            confidence: Some(0.2),
            ..said(None, false, &[])
        };
        assert_eq!(
            state.hear("team_size", &mumbled),
            (Step::AskAgain(Reask::Unheard), true)
        );
        let (step, changed) = state.hear("team_size", &said(None, false, &[]));
        assert!(changed);
        assert!(matches!(step, Step::Stored(HeardAnswer { captured: false, .. })));
        assert_eq!(
            state.hear("team_size", &said(Some("six"), true, &[])),
            (Step::AlreadyStored, false)
        );
        let (step, _) = state.hear("budget", &said(Some("five hundred"), true, &[]));
        assert!(matches!(step, Step::Stored(HeardAnswer { captured: true, .. })));
        assert_eq!(state.answers.len(), 2);
    }

    #[test]
    fn words_that_do_not_answer_the_question_are_asked_again_and_kept_where_they_fit() {
        let script = Script::default();
        let mut state = dialed(Some("CA1"));
        // "a dedicated desk" to "how many people?": asked again, and it answers the space type.
        let desk = said(Some("a dedicated desk"), false, &["space_type"]);
        assert_eq!(state.hear("team_size", &desk), (Step::AskAgain(Reask::Unread), true));
        assert!(state.answer("space_type").is_some(), "kept for the question it answers");
        assert!(state.answer("team_size").is_none());
        // Asked once more and still not an answer: kept as said, and the call goes on.
        let (step, _) = state.hear("team_size", &said(Some("hmm"), false, &[]));
        assert!(matches!(step, Step::Stored(HeardAnswer { understood: false, .. })));
        // Said for the next question instead: it replaces the answer that did not read.
        state.hear("move_in", &said(Some("six of us"), false, &["team_size"]));
        assert_eq!(
            state.answer("team_size").and_then(|a| a.speech.as_deref()),
            Some("six of us")
        );
        // "we're twelve and need it next month": the move-in date is not asked.
        let mut early = dialed(Some("CA2"));
        let (step, _) = early.hear("team_size", &said(Some("twelve, next month"), true, &["move_in"]));
        assert!(matches!(step, Step::Stored(_)));
        assert_eq!(early.next_unanswered(&script, 2), Some(4), "move_in (3) is answered");
        assert_eq!(early.next_unanswered(&script, 5), None);
    }

    #[test]
    fn an_opt_out_is_recorded_once() {
        let mut state = dialed(Some("CA1"));
        let stop = Hearing {
            opt_out: true,
            ..said(Some("stop calling"), true, &[])
        };
        assert_eq!(state.hear("team_size", &stop), (Step::OptOut, true));
        assert_eq!(state.hear("budget", &stop), (Step::OptOut, false));
        assert!(state.opted_out && state.answers.is_empty());
    }

    #[test]
    fn a_machine_gets_the_voicemail_once_and_never_after_the_end() {
        let mut state = dialed(Some("CA1"));
        assert_eq!(state.machine_detected("machine_end_beep"), (true, true));
        assert_eq!(state.machine_detected("machine_end_beep"), (false, false));
        assert!(state.voicemail_failed());
        assert_eq!(
            state.machine_detected("machine_end_beep"),
            (true, true),
            "tried again after a failure"
        );
        let mut person = dialed(Some("CA2"));
        assert_eq!(person.machine_detected("human"), (false, true));
        let mut ended = dialed(Some("CA3"));
        ended.complete("CA3", None, OffsetDateTime::now_utc());
        assert!(!ended.machine_detected("fax").0);
    }

    #[test]
    fn a_retry_requeues_the_try_it_replaces_once() {
        let now = OffsetDateTime::now_utc();
        let mut state = dialed(Some("CA1"));
        state.hear("team_size", &said(Some("six"), true, &[]));
        state.complete("CA1", Some("human"), now);
        let tried = state.clone();
        assert!(state.requeue(&tried, 1));
        assert_eq!(
            (state.phase, state.attempt, state.call_sid.as_deref()),
            (CallPhase::Queued, 1, None)
        );
        assert_eq!(state.earlier_call_sids, ["CA1"]);
        assert!(state.answers.is_empty() && state.answered_by.is_none() && state.placed_at.is_none());
        assert!(!state.requeue(&tried, 1), "the same end seen again");
    }
}
