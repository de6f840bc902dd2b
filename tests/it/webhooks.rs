//! Twilio's webhooks on the real api role, with signed requests as Twilio sends them.

use std::time::Duration;

use leadq::bus::kv::calls::{CallPhase, CallState, DoNotContact};
use leadq::bus::{self, CallAnswer, CallCompleted};
use leadq::clients::twilio::signature;
use uuid::Uuid;

use crate::harness::{TestApp, spawn_api};
use crate::helpers::on_stream;

const TOKEN: &str = "test-auth-token-0123456789abcdef";

/// The api role, checking Twilio's signatures with `TOKEN`.
async fn spawn_webhooks() -> TestApp {
    spawn_api(|settings| settings.twilio.auth_token = Some(TOKEN.to_owned().into())).await
}

/// A call in progress for a lead named `name`, as the caller leaves it once Twilio took it.
async fn call_in_progress(api: &TestApp, name: &str) -> Uuid {
    let lead_id = Uuid::now_v7();
    let mut state = CallState::queued(lead_id, "+14155550142", Some(name));
    state.call_sid = Some(format!("CA{}", lead_id.simple()));
    assert!(api.ctx.calls.create(&state).await.expect("create"));
    lead_id
}

/// POSTs a webhook, signed as Twilio signs it when `sign`; returns status and body.
async fn post(api: &TestApp, path_and_query: &str, params: &[(&str, &str)], sign: bool) -> (u16, String) {
    api.twilio_webhook(path_and_query, params, sign.then_some(TOKEN)).await
}

/// The caller's answer to question `n`, as Twilio's speech recognition reports it.
async fn answer(api: &TestApp, lead: Uuid, n: usize, speech: &str, confidence: &str) -> String {
    let sid = format!("CA{}", lead.simple());
    let (status, body) = post(
        api,
        &format!("/webhooks/twilio/answer/{n}?lead={lead}"),
        &[("CallSid", &sid), ("SpeechResult", speech), ("Confidence", confidence)],
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn messages<P: bus::Payload>(api: &TestApp) -> Vec<P> {
    on_stream(api.bus(), bus::stream::CALLS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_missing_and_altered_signatures_are_refused_and_change_nothing() {
    let api = spawn_webhooks().await;
    let lead = call_in_progress(&api, "Ada").await;
    let (_, revision) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    let path = format!("/webhooks/twilio/answer/1?lead={lead}");
    let params = [
        ("CallSid", "CA1"),
        ("SpeechResult", "a hot desk"),
        ("Confidence", "0.9"),
    ];
    assert_eq!(post(&api, &path, &params, false).await.0, 403, "missing");
    let url = format!("{}{path}", api.base);
    let signed: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    let good = signature::sign(TOKEN, &url, &signed);
    // Replayed with a changed parameter.
    let altered = api
        .http
        .post(&url)
        .header("X-Twilio-Signature", &good)
        .form(&[
            ("CallSid", "CA1"),
            ("SpeechResult", "a private office"),
            ("Confidence", "0.9"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(altered.status(), 403);
    let forged = api
        .http
        .post(&url)
        .header("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .form(&signed)
        .send();
    assert_eq!(forged.await.expect("post").status(), 403);
    let body: serde_json::Value = api
        .http
        .post(&url)
        .form(&signed)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json error body");
    assert!(body["error"].as_str().unwrap_or("").contains("signature"), "{body}");
    let (state, after) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    assert_eq!(after, revision, "a refused webhook changed the call");
    assert!(state.answers.is_empty());
    assert!(messages::<CallAnswer>(&api).await.is_empty());
    // The warm transfer's webhooks are held to the same signature.
    for step in ["offer", "whisper", "rep", "dial-end"] {
        let path = format!("/webhooks/twilio/transfer/{step}?lead={lead}");
        let params = [
            ("CallSid", "CA1"),
            ("SpeechResult", "yes"),
            ("Digits", "1"),
            ("DialCallStatus", "completed"),
        ];
        assert_eq!(post(&api, &path, &params, false).await.0, 403, "{step} unsigned");
    }
    let (_, after) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    assert_eq!(after, revision, "a refused transfer webhook changed the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_stores_five_answers_publishes_them_and_completes_once() {
    let api = spawn_webhooks().await;
    let lead = call_in_progress(&api, r#"<Say>& "Bob""#).await;
    let sid = format!("CA{}", lead.simple());
    let (status, start) = post(
        &api,
        &format!("/webhooks/twilio/call-start?lead={lead}"),
        &[("CallSid", &sid), ("AnsweredBy", "human")],
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        start.contains("Hi &lt;Say&gt;&amp; &quot;Bob&quot;, this is Mesh Cowork"),
        "{start}"
    );
    assert!(start.contains(&format!("answer/1?lead={lead}")), "{start}");
    let spoken = [
        "a private office",
        "about five of us",
        "next month",
        "two thousand a month",
        "yes I am",
    ];
    let mut last = String::new();
    for (i, speech) in spoken.iter().enumerate() {
        last = answer(&api, lead, i + 1, speech, "0.92").await;
        if i + 1 < spoken.len() {
            assert!(
                last.contains(&format!("answer/{}?lead={lead}", i + 2)),
                "next question: {last}"
            );
        }
    }
    assert!(last.contains("Thank you") && last.contains("<Hangup/>"), "{last}");
    // Twilio delivers a webhook twice: nothing more is stored or published.
    answer(&api, lead, 5, "yes I am", "0.92").await;

    let (state, _) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    let got: Vec<_> = state
        .answers
        .iter()
        .map(|a| a.speech.clone().unwrap_or_default())
        .collect();
    assert_eq!(got, spoken);
    let answers = messages::<CallAnswer>(&api).await;
    let ids: Vec<_> = answers.iter().map(|a| a.question_id.as_str()).collect();
    assert_eq!(ids, ["space_type", "team_size", "move_in", "budget", "decision_maker"]);

    for status in ["ringing", "completed", "completed"] {
        let params = [
            ("CallSid", sid.as_str()),
            ("CallStatus", status),
            ("CallDuration", "95"),
            ("AnsweredBy", "human"),
        ];
        let (code, _) = post(
            &api,
            &format!("/webhooks/twilio/call-status?lead={lead}"),
            &params,
            true,
        )
        .await;
        assert_eq!(code, 204);
    }
    let completed = messages::<CallCompleted>(&api).await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(
        (completed[0].status.as_str(), completed[0].duration_secs),
        ("completed", Some(95))
    );
}

/// The entry says completed only once the call's end is on the stream: a final callback whose
/// publish fails is refused and leaves the call dialed, for the watchdog to learn its end from
/// Twilio (Twilio does not send a status callback twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_status_that_cannot_be_published_leaves_the_call_dialed() {
    let api = spawn_webhooks().await;
    let lead = call_in_progress(&api, "Ada").await;
    let sid = format!("CA{}", lead.simple());
    api.ctx
        .calls
        .update(lead, |state| {
            state.phase = CallPhase::Dialed;
            ((), true)
        })
        .await
        .expect("dialed");
    // The stream stops taking `call.completed`, as while a cluster moves its leader.
    let mut stream = api.bus().js.get_stream(bus::stream::CALLS).await.expect("CALLS");
    let config = stream.info().await.expect("info").config.clone();
    let mut without = config.clone();
    without.subjects.retain(|s| s != bus::subject::CALL_COMPLETED);
    api.bus().js.update_stream(without).await.expect("update stream");
    let params = [
        ("CallSid", sid.as_str()),
        ("CallStatus", "completed"),
        ("CallDuration", "60"),
    ];
    let path = format!("/webhooks/twilio/call-status?lead={lead}");
    let (code, body) = post(&api, &path, &params, true).await;
    assert!(code >= 500, "{code} {body}");
    let (state, _) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    assert_eq!(
        state.phase,
        CallPhase::Dialed,
        "marked completed with nothing published"
    );

    api.bus().js.update_stream(config).await.expect("restore stream");
    let (code, _) = post(&api, &path, &params, true).await;
    assert_eq!(code, 204);
    let (state, _) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    assert_eq!(state.phase, CallPhase::Completed);
    assert_eq!(messages::<CallCompleted>(&api).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_asked_again_once_then_recorded_as_not_captured() {
    let api = spawn_webhooks().await;
    let lead = call_in_progress(&api, "Ada").await;
    let again = answer(&api, lead, 1, "", "0").await;
    assert!(
        again.contains("didn&apos;t catch that") || again.contains("didn't catch that"),
        "{again}"
    );
    assert!(
        again.contains(&format!("answer/1?lead={lead}")),
        "the same question: {again}"
    );
    answer(&api, lead, 1, "hot desk", "0.8").await;
    answer(&api, lead, 2, "mumble", "0.05").await;
    let next = answer(&api, lead, 2, "", "0").await;
    assert!(next.contains(&format!("answer/3?lead={lead}")), "moves on: {next}");
    let (state, _) = api.ctx.calls.get(lead).await.expect("get").expect("entry");
    assert_eq!(state.answers.len(), 2);
    assert!(state.answers[0].captured && state.answers[0].speech.as_deref() == Some("hot desk"));
    assert!(!state.answers[1].captured, "{:?}", state.answers[1]);
    assert_eq!(messages::<CallAnswer>(&api).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answering_machine_hears_the_voicemail() {
    let api = spawn_webhooks().await;
    let lead = call_in_progress(&api, "Ada").await;
    let sid = format!("CA{}", lead.simple());
    let (_, body) = post(
        &api,
        &format!("/webhooks/twilio/call-start?lead={lead}"),
        &[("CallSid", &sid), ("AnsweredBy", "machine_end_beep")],
        true,
    )
    .await;
    assert!(
        body.contains("returning your request") && body.contains("<Hangup/>"),
        "{body}"
    );
    assert!(!body.contains("<Gather"), "asked a machine questions: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_calling_me_ends_the_call_and_lists_the_number() {
    let api = spawn_webhooks().await;
    let lead = call_in_progress(&api, "Ada").await;
    let body = answer(&api, lead, 1, "please stop calling me", "0.9").await;
    assert!(
        body.contains("won&apos;t call you again") || body.contains("won't call you again"),
        "{body}"
    );
    assert!(body.contains("<Hangup/>"));
    let dnc = DoNotContact::open(&api.bus().js).await.expect("dnc");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !dnc.contains("+14155550142").await.expect("dnc get") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the number is on the do-not-contact list");
}
