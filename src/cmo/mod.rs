//! The CMO agent's operations, the seed's contracts field for field: status, commands,
//! trigger-lead, reports and capabilities, for every transport alike. The REST routes
//! (`http::cmo`) and the NATS service (`cmo_service`) only read requests and write answers; the
//! admin page borrows the same operations. Also how a lead that did not come through the inbox
//! is queued (trigger-lead, the admin's test email, the Unbounce webhook).

mod error;
pub mod idempotency;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use utoipa::ToSchema;
use uuid::Uuid;

pub use error::{CmoError, whole_seconds};
pub use idempotency::IdempotencyKey;

use crate::bus::kv::run_state::{AgentState, AgentStateStore};
use crate::bus::{AGENT_ID, Activity, Bus, IntakeTimestamps, LeadReceived, LeadSource};
use crate::clients::sandbox::{Callee, Mode, Sandbox};
use crate::config::Settings;
use crate::domain::lead::{Lead, LeadError, PageDetails};
use crate::security::api_keys::{ApiKeys, KeyCheck};
use crate::store::{Figures, Period, Store};

pub const AGENT_NAME: &str = "Mesh Cowork Lead Qualifier";
const COMMANDS: [&str; 6] = ["start", "stop", "pause", "resume", "get_status", "get_metrics"];
const CAPABILITIES: [&str; 6] = [
    "email_monitoring",
    "outbound_calling",
    "speech_recognition",
    "lead_qualification",
    "sms_followup",
    "crm_integration",
];

/// What the operations use, opened once by the composition root where the api runs.
#[derive(Clone, Debug)]
pub struct Cmo {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    /// `None` in a process that keeps no records: the figures answer 503.
    pub store: Option<Store>,
    pub started: Instant,
    /// The sandbox, when this process runs one: a queued lead may say how it will answer.
    pub sandbox: Option<Arc<Sandbox>>,
    pub api_keys: ApiKeys,
    pub agent_state: AgentStateStore,
    /// The agent state as the bucket last said, kept current by a watch: read without a round trip.
    pub agent_now: watch::Receiver<AgentState>,
    /// Answers to requests made with an `Idempotency-Key`.
    pub idempotency: async_nats::jetstream::kv::Store,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub agent_id: &'static str,
    pub agent_name: &'static str,
    pub agent_type: &'static str,
    /// `active`, `paused` or `stopped`.
    pub status: &'static str,
    pub role: &'static str,
    pub department: &'static str,
    pub version: &'static str,
    pub metrics: crate::bus::StatusMetrics,
    /// When the agent last did something, RFC 3339; null before any activity.
    pub last_activity: Option<String>,
    pub uptime_hours: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CommandRequest {
    pub command: String,
    #[serde(default)]
    pub parameters: Value,
}

/// The seed's trigger-lead body: the landing page's form fields.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TriggerLead {
    pub fname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub what_kind_of_office_space_are_you_interested_in: Option<String>,
    pub message: Option<String>,
    pub campaignid: Option<String>,
    /// Call even if this number had a lead inside the resubmit window (recorded in the activity log).
    #[serde(default)]
    pub force: bool,
    /// Sandbox only: how the simulated lead answers (`qualified`, `unqualified`, `voicemail`,
    /// `busy`, `no_answer`, `silence`, or a list of answers). Refused when Twilio is live.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub sandbox_callee: Option<Callee>,
    /// Any other form fields, kept as extras.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, Value>,
}

/// How a lead that did not come through the inbox is queued.
#[derive(Debug, Default, Clone, Copy)]
pub struct Intake {
    /// The lead's id when the request names it (an idempotency key, a webhook's body); else new.
    pub lead_id: Option<Uuid>,
    /// Call even if the number had a lead inside the resubmit window.
    pub force: bool,
}

impl Cmo {
    /// The key's name when `presented` is a live key allowed from `address` (no address: the
    /// request came over NATS, where the server's own user auth is the network boundary).
    pub async fn check_key(&self, presented: Option<&str>, address: Option<IpAddr>) -> Result<String, CmoError> {
        let presented = presented.ok_or_else(|| CmoError::Unauthorized("missing X-API-Key".into()))?;
        match self.api_keys.check(presented, address).await? {
            KeyCheck::Valid(name) => Ok(name),
            KeyCheck::Unknown => Err(CmoError::Unauthorized("invalid API key".into())),
            KeyCheck::Revoked => Err(CmoError::Unauthorized("this API key was revoked".into())),
            KeyCheck::RateLimited(wait) => Err(CmoError::rate_limited("this API key is over its rate limit", wait)),
            KeyCheck::AddressNotAllowed => Err(CmoError::Forbidden(format!(
                "this API key is not allowed from {}",
                address.map(|a| a.to_string()).unwrap_or_default()
            ))),
        }
    }

    fn store(&self) -> Result<&Store, CmoError> {
        self.store
            .as_ref()
            .ok_or_else(|| CmoError::Unavailable("this process keeps no records".into()))
    }

    async fn figures(&self, period: Period) -> Result<Figures, CmoError> {
        let since = period.start(OffsetDateTime::now_utc(), &self.settings.calling_hours.fallback);
        Ok(self.store()?.figures(since).await?)
    }

    pub async fn status(&self) -> Result<StatusBody, CmoError> {
        let state = *self.agent_now.borrow();
        let today = self.figures(Period::Today).await?;
        Ok(StatusBody {
            agent_id: AGENT_ID,
            agent_name: AGENT_NAME,
            agent_type: "lead_qualification",
            status: state.as_status(),
            role: "account_executive",
            department: "cmo",
            version: env!("CARGO_PKG_VERSION"),
            metrics: today.as_status_metrics(),
            last_activity: today.last_activity,
            uptime_hours: (self.started.elapsed().as_secs_f64() / 3600.0 * 100.0).round() / 100.0,
        })
    }

    /// Sets the state, then waits (briefly) until this process's view has it, so a status asked
    /// right after the command answers with the new state.
    async fn set_state(&self, state: AgentState) -> Result<(), CmoError> {
        self.agent_state.set(state).await?;
        let mut now = self.agent_now.clone();
        if tokio::time::timeout(std::time::Duration::from_secs(1), now.wait_for(|s| *s == state))
            .await
            .is_err()
        {
            tracing::warn!(?state, "the agent state watch has not caught up after 1 s");
        }
        Ok(())
    }

    /// One command; `actor` names who sent it in the activity log.
    pub async fn command(&self, actor: &str, request: CommandRequest) -> Result<Value, CmoError> {
        let (message, data) = match request.command.as_str() {
            "start" | "resume" => {
                self.set_state(AgentState::Running).await?;
                (
                    if request.command == "start" {
                        "Agent started"
                    } else {
                        "Agent resumed"
                    },
                    None,
                )
            }
            "pause" => {
                self.set_state(AgentState::Paused).await?;
                ("Agent paused", None)
            }
            "stop" => {
                self.set_state(AgentState::Stopped).await?;
                ("Agent stopped", None)
            }
            "get_status" => (
                "Agent status",
                Some(serde_json::to_value(self.status().await?).unwrap_or_default()),
            ),
            "get_metrics" => (
                "Agent metrics",
                Some(report_body(&self.figures(Period::Today).await?, Period::Today)),
            ),
            other => {
                return Err(CmoError::BadRequest(format!(
                    "unknown command `{other}`; valid commands: {}",
                    COMMANDS.join(", ")
                )));
            }
        };
        if data.is_none() {
            let mut entry = Activity::new("agent.command", actor, message);
            entry.detail = json!({ "command": request.command, "parameters": request.parameters });
            self.bus.record(&entry).await;
        }
        let mut body = json!({ "status": "success", "message": message, "command": request.command });
        if let Some(data) = data {
            body["data"] = data;
        }
        Ok(body)
    }

    /// Queues a lead given as form fields: the body as sent, so a repeated `Idempotency-Key` can
    /// be told apart from a reused one.
    pub async fn trigger(&self, actor: &str, key: Option<&IdempotencyKey>, body: &[u8]) -> Result<Value, CmoError> {
        let request: TriggerLead =
            serde_json::from_slice(body).map_err(|e| CmoError::BadRequest(format!("malformed request body: {e}")))?;
        idempotency::once(&self.idempotency, key, body, |lead_id| {
            self.queue_lead(actor, request, lead_id)
        })
        .await
    }

    async fn queue_lead(&self, actor: &str, request: TriggerLead, lead_id: Option<Uuid>) -> Result<Value, CmoError> {
        let (force, callee) = (request.force, request.sandbox_callee);
        let known = [
            ("fname", request.fname),
            ("email", request.email),
            ("phone", request.phone),
            (
                "what_kind_of_office_space_are_you_interested_in",
                request.what_kind_of_office_space_are_you_interested_in,
            ),
            ("message", request.message),
            ("campaignid", request.campaignid),
        ];
        let mut fields: Vec<(String, String)> = known
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect();
        fields.extend(request.extra.into_iter().map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        }));
        let lead =
            Lead::from_form(fields, PageDetails::default(), self.settings.default_region).map_err(|err| match err {
                LeadError::Invalid { field, detail } => CmoError::InvalidField { field, detail },
                LeadError::NotALead(detail) => CmoError::BadRequest(detail),
            })?;
        if let Some(callee) = &callee {
            self.sandbox_callee(lead.phone.as_str(), callee)?;
        }
        let intake = Intake { lead_id, force };
        let received = self.enqueue(lead, LeadSource::CmoTrigger, actor, intake).await?;
        Ok(json!({
            "status": "success",
            "message": "Lead queued for processing",
            "task_id": received.lead_id,
            "lead": { "name": received.lead.name, "phone": received.lead.phone },
        }))
    }

    /// Tells the sandbox how the lead at `phone` will answer; refused unless the calls go to the
    /// sandbox.
    pub fn sandbox_callee(&self, phone: &str, callee: &Callee) -> Result<(), CmoError> {
        match &self.sandbox {
            Some(sandbox) if sandbox.modes().0 == Mode::Sandboxed => {
                sandbox.set_callee(phone, callee);
                Ok(())
            }
            _ => Err(CmoError::InvalidBody {
                field: "sandbox_callee",
                detail: "only for the sandbox, and Twilio is live: this lead would get a real call".into(),
            }),
        }
    }

    /// Puts a lead that did not come through the inbox on `lead.received`, and logs who did it.
    pub async fn enqueue(
        &self,
        lead: Lead,
        source: LeadSource,
        actor: &str,
        intake: Intake,
    ) -> Result<LeadReceived, CmoError> {
        let now = OffsetDateTime::now_utc();
        let lead_id = intake.lead_id.unwrap_or_else(Uuid::now_v7);
        let received_at = lead.received_at.or(Some(now));
        let mut received = LeadReceived::new(
            lead_id,
            source,
            Lead { received_at, ..lead },
            IntakeTimestamps {
                inbox_at: None,
                seen_at: now,
                published_at: now,
            },
        );
        received.force = intake.force;
        self.bus.publish(&received).await.map_err(|err| {
            tracing::warn!(%err, "lead not queued");
            CmoError::Unavailable("the lead could not be queued (NATS is unavailable); try again".into())
        })?;
        let (kind, summary) = match source {
            LeadSource::AdminTestEmail => ("lead.test_email", "test email queued as a lead"),
            LeadSource::UnbounceWebhook => ("lead.webhook", "form submission received from Unbounce"),
            _ => ("lead.triggered", "lead queued by the CMO agent"),
        };
        let mut entry = Activity::new(kind, actor, summary);
        entry.lead_id = Some(lead_id);
        self.bus.record(&entry).await;
        if intake.force {
            let mut entry = Activity::new(
                "lead.forced",
                actor,
                "called on purpose even if the number was called inside the resubmit window",
            );
            entry.lead_id = Some(lead_id);
            self.bus.record(&entry).await;
        }
        Ok(received)
    }

    /// What the agent can do.
    pub fn capabilities() -> Value {
        json!({
            "agent_id": AGENT_ID,
            "agent_name": AGENT_NAME,
            "agent_type": "lead_qualification",
            "role": "account_executive",
            "department": "cmo",
            "version": env!("CARGO_PKG_VERSION"),
            "capabilities": CAPABILITIES,
            "commands": COMMANDS,
            "report_periods": ["today", "week", "month"],
        })
    }

    /// A period's report (`today`, `week`, `month`).
    pub async fn report(&self, period: &str) -> Result<Value, CmoError> {
        let period = Period::parse(period)
            .ok_or_else(|| CmoError::BadRequest(format!("unknown period `{period}`; use today, week or month")))?;
        let mut body = report_body(&self.figures(period).await?, period);
        if let Some(ab_test) = self.ab_test().await? {
            body["ab_test"] = ab_test;
        }
        Ok(body)
    }

    /// The script's A/B test, side by side, once calls of either variant were made.
    pub async fn ab_test(&self) -> Result<Option<Value>, CmoError> {
        let variants = self.store()?.variant_figures().await?;
        let of = |name: &str| variants.iter().find(|v| v.variant == name).cloned().unwrap_or_default();
        let (a, b) = (of("a"), of("b"));
        Ok((a.calls + b.calls > 0).then(|| crate::domain::experiment::comparison(&a, &b)))
    }
}

/// The seed's report shape.
fn report_body(figures: &Figures, period: Period) -> Value {
    json!({
        "period": period.as_str(),
        "total_leads": figures.total_leads,
        "qualified_leads": figures.qualified_leads,
        "calls_made": figures.calls_made,
        "sms_sent": figures.sms_sent,
        "average_speed_to_lead": figures.average_speed_to_lead,
        "conversion_rate": figures.conversion_rate(),
        "booked_leads": figures.booked_leads,
        "booking_rate": figures.booking_rate(),
        "median_secs_to_booking": figures.median_secs_to_booking,
        "transferred_leads": figures.transferred_leads,
    })
}
