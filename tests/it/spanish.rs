//! Spanish calls on the stand-in: a lead whose form says Spanish is called in Spanish (prompts,
//! `<Gather language="es-US">`, the Spanish voice), read, finalized and texted in Spanish; a lead
//! who asks "¿en español?" is switched; a Spanish answer in an English call is still read.

use std::time::Duration;

use leadq::app::Role;
use leadq::bus::LeadReceived;
use leadq::store::LeadRecord;
use standins::twilio::{CallRecord, Persona};

use crate::call::lead_from_form;
use crate::harness::{TestAgent, spawn_agent};
use crate::helpers::eventually;

/// Calls the lead and waits until it is finalized and texted; its record, call and texts.
async fn call_and_text(agent: &TestAgent, lead: &LeadReceived) -> (LeadRecord, CallRecord, Vec<String>) {
    agent.bus().publish(lead).await.expect("publish");
    let store = agent.ctx.store.clone().expect("store");
    eventually(Duration::from_secs(30), "finalized and texted", || async {
        store
            .lead(lead.lead_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.sms_state == "sent")
    })
    .await;
    let record = store.lead(lead.lead_id).await.expect("read").expect("record");
    let phone = lead.lead.phone.as_str();
    let call = agent
        .twilio
        .calls()
        .into_iter()
        .find(|c| c.to == phone)
        .expect("a call");
    let texts = agent
        .twilio
        .messages()
        .into_iter()
        .filter(|m| m.to == phone)
        .map(|m| m.body)
        .collect();
    (record, call, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_whose_form_says_spanish_is_called_read_and_texted_in_spanish() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer, Role::Sms]).await;
    let phone = "+14155550160";
    agent.twilio.set_persona(
        phone,
        Persona::answers(&[
            "una oficina privada",
            "somos seis",
            "el mes que viene",
            "dos mil dólares al mes",
            "sí, yo decido",
        ]),
    );
    let lead = lead_from_form(&[("fname", "Ana García"), ("phone", phone), ("idioma", "Español")]);
    let (record, call, texts) = call_and_text(&agent, &lead).await;
    assert!(call.errors.is_empty(), "{:?}", call.errors);
    assert!(
        call.heard[0].starts_with("Hola Ana García, le llamamos de Mesh Cowork"),
        "{:?}",
        call.heard
    );
    assert!(
        call.heard.iter().any(|h| h == "¿Cuántas personas usarán el espacio?"),
        "{:?}",
        call.heard
    );
    assert!(
        call.heard.last().is_some_and(|h| h.starts_with("¡Gracias!")),
        "{:?}",
        call.heard
    );
    assert_eq!(
        call.gather_languages, ["es-US"; 5],
        "every answer listened to in Spanish"
    );
    assert_eq!(
        (record.verdict.as_str(), record.language.as_deref()),
        ("qualified", Some("es"))
    );
    let team = record.answer("team_size").map(|a| a.value.clone());
    assert_eq!(team, Some(serde_json::json!(6)));
    assert_eq!(texts.len(), 1);
    assert!(texts[0].starts_with("Hola Ana, gracias por su interés"), "{}", texts[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_who_asks_for_spanish_at_the_greeting_goes_on_in_spanish_and_a_spanish_answer_is_read_in_english() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer, Role::Sms]).await;
    let asks = "+14155550161";
    agent.twilio.set_persona(
        asks,
        Persona::answers(&[
            "¿En español?",
            "una oficina privada",
            "seis personas",
            "en enero",
            "tres mil al mes",
            "sí",
        ]),
    );
    let (record, call, texts) = call_and_text(&agent, &lead_from_form(&[("fname", "Luis"), ("phone", asks)])).await;
    assert!(
        call.heard[0].starts_with("Hi Luis, this is Mesh Cowork"),
        "{:?}",
        call.heard
    );
    assert!(
        call.heard.iter().any(|h| h == "¡Claro! Seguimos en español."),
        "{:?}",
        call.heard
    );
    assert_eq!(call.gather_languages[0], "en-US");
    assert!(
        call.gather_languages[1..].iter().all(|l| l == "es-US"),
        "{:?}",
        call.gather_languages
    );
    assert_eq!(
        (record.verdict.as_str(), record.language.as_deref()),
        ("qualified", Some("es"))
    );
    assert!(texts[0].starts_with("Hola Luis"), "{}", texts[0]);

    // Spanish answers in an English call: read all the same; the call and text stay English.
    let mixed = "+14155550162";
    agent.twilio.set_persona(
        mixed,
        Persona::answers(&[
            "una oficina privada",
            "six of us",
            "el mes que viene",
            "dos mil al mes",
            "yes",
        ]),
    );
    let (record, call, texts) = call_and_text(&agent, &lead_from_form(&[("fname", "Sam"), ("phone", mixed)])).await;
    assert_eq!(call.gather_languages, ["en-US"; 5]);
    assert_eq!(
        (record.verdict.as_str(), record.language.as_deref()),
        ("qualified", Some("en"))
    );
    assert!(texts[0].starts_with("Hi Sam, thanks"), "{}", texts[0]);
}
