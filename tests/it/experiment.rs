//! The A/B test of the script end to end: variant `b` given to half of 400 stand-in leads by the
//! real caller and webhooks, each call made and finalized with its own variant's script, and the
//! per-variant figures in the CMO report and the admin API.

use std::time::Duration;

use leadq::app::Role;
use leadq::domain::experiment::Experiment;
use leadq::domain::script::Script;
use reqwest::Method;
use serde_json::json;

use crate::call::{lead, qualified_callee};
use crate::harness::spawn_agent;
use crate::helpers::{admin_token, eventually, on_stream};

const LEADS: usize = 400;

fn variant_b() -> Script {
    Script {
        greeting: "Hello {name}, Mesh Cowork here with a few questions about your request.".into(),
        ..Script::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_400_leads_get_script_b_each_call_keeps_its_variant_and_the_report_compares_them() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    let token = admin_token(agent.bus(), &agent.http, &agent.base).await;
    let body = json!({ "share_b": 0.5, "variant_b": variant_b() });
    let (status, saved) = agent
        .call(Method::PUT, "/api/admin/experiment", Some(&token), Some(body))
        .await;
    assert_eq!(status, 200, "{saved}");
    let silent = Script {
        greeting: " ".into(),
        ..variant_b()
    };
    for (bad, code) in [
        (json!({ "share_b": 1.5, "variant_b": null }), 422),
        (json!({ "share_b": 0.5, "variant_b": silent }), 422),
        (json!({ "share_b": 0.5, "variant_b": { "greeting": "hi" } }), 400),
    ] {
        let (status, body) = agent
            .call(Method::PUT, "/api/admin/experiment", Some(&token), Some(bad))
            .await;
        assert_eq!(status, code, "{body}");
    }

    let mut leads = Vec::new();
    for i in 0..LEADS {
        let area = ["415", "212", "312", "617"][i / 100];
        let phone = format!("+1{area}55501{:02}", i % 100);
        agent.twilio.set_persona(&phone, qualified_callee());
        let lead = lead("Ada", &phone);
        agent.bus().publish(&lead).await.expect("publish");
        leads.push(lead);
    }
    eventually(Duration::from_secs(240), "every lead finalized", || async {
        on_stream::<leadq::bus::LeadFinalized>(agent.bus(), leadq::bus::stream::LEADS)
            .await
            .len()
            >= LEADS
    })
    .await;

    // Each callee heard its own variant's greeting: the split is the lead id's, every time.
    let experiment = Experiment {
        variant_b: Some(variant_b()),
        share_b: 0.5,
    };
    let calls = agent.twilio.calls();
    for lead in &leads {
        let phone = lead.lead.phone.as_str();
        let call = calls.iter().find(|c| c.to == phone).expect("a call per lead");
        let b = call
            .heard
            .first()
            .is_some_and(|g| g.starts_with("Hello Ada, Mesh Cowork here"));
        assert_eq!(
            b,
            experiment.variant_for(lead.lead_id) == "b",
            "{phone}: {:?}",
            call.heard
        );
    }
    let (status, report) = agent.cmo_get("report/today").await;
    assert_eq!(status, 200, "{report}");
    let variants = report["ab_test"]["variants"]
        .as_array()
        .expect("per-variant figures")
        .clone();
    let (a, b) = (&variants[0], &variants[1]);
    assert_eq!((a["variant"].as_str(), b["variant"].as_str()), (Some("a"), Some("b")));
    let b_calls = b["calls"].as_u64().expect("calls");
    assert!((170..=230).contains(&b_calls), "{b_calls} of {LEADS} got b: {report}");
    assert_eq!(a["calls"].as_u64().expect("calls") + b_calls, LEADS as u64);
    for side in [a, b] {
        assert_eq!(side["complete_calls"], side["calls"], "every answer read: {side}");
        assert_eq!(side["qualified_rate"], 100.0, "{side}");
        assert!(side["median_call_secs"].as_f64().is_some(), "{side}");
    }
    assert_eq!(report["ab_test"]["qualified_rate"]["significant"], false, "{report}");

    // A split changed mid-call does not move a call already greeted.
    let b_lead = leads
        .iter()
        .find(|l| experiment.variant_for(l.lead_id) == "b")
        .expect("a lead of b");
    let (status, _) = agent
        .call(
            Method::PUT,
            "/api/admin/experiment",
            Some(&token),
            Some(json!({ "share_b": 0.0, "variant_b": null })),
        )
        .await;
    assert_eq!(status, 200);
    let (kept, _) = agent.ctx.calls.get(b_lead.lead_id).await.expect("get").expect("entry");
    assert_eq!(kept.variant.as_deref(), Some("b"));
    let (status, page) = agent
        .call(Method::GET, "/api/admin/experiment", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page["variant_b"].is_null() && page["results"]["variants"].is_array(),
        "{page}"
    );
}
