//! A warm transfer on the call's entry: offered after the last question, accepted or declined by
//! the lead, answered or declined by the rep, and ended by Twilio's `<Dial>` action. Each
//! transition changes the entry only from the phase before it, so a repeated webhook leaves it as
//! it was and gets the same TwiML again.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CallState;
use crate::domain::roster::Rep;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferPhase {
    /// The lead was asked whether to be connected.
    Offered,
    LeadDeclined,
    /// The rep's phone is ringing (or they hear the whisper).
    Ringing,
    /// The rep took the call after the whisper; the `<Dial>` bridges the two.
    RepAccepted,
    /// The lead and the rep talked.
    Connected,
    RepDeclined,
    /// No answer, busy or failed on the rep's side.
    RepMissed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub rep_name: String,
    pub rep_phone: String,
    pub phase: TransferPhase,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub rep_accepted_at: Option<OffsetDateTime>,
    /// Twilio's `DialCallStatus`.
    #[serde(default)]
    pub dial_status: Option<String>,
    /// From the rep taking the call to the `<Dial>`'s end.
    #[serde(default)]
    pub talked_secs: Option<u64>,
}

impl Transfer {
    /// What became of it, as the lead's record says: `transferred`, `lead_declined`,
    /// `rep_declined`, `rep_no_answer`, or `abandoned` (the call ended before the transfer did).
    pub fn outcome(&self) -> &'static str {
        match self.phase {
            TransferPhase::Connected => "transferred",
            TransferPhase::LeadDeclined => "lead_declined",
            TransferPhase::RepDeclined => "rep_declined",
            TransferPhase::RepMissed => "rep_no_answer",
            TransferPhase::Offered | TransferPhase::Ringing | TransferPhase::RepAccepted => "abandoned",
        }
    }
}

impl CallState {
    /// The lead is asked whether to be put through to `rep`; once per call.
    pub fn offer_transfer(&mut self, rep: &Rep) -> bool {
        if self.transfer.is_some() {
            return false;
        }
        self.transfer = Some(Transfer {
            rep_name: rep.name.clone(),
            rep_phone: rep.phone.clone(),
            phase: TransferPhase::Offered,
            rep_accepted_at: None,
            dial_status: None,
            talked_secs: None,
        });
        true
    }

    /// The lead said yes (`true`) or anything else to the offer.
    pub fn transfer_reply(&mut self, yes: bool) -> bool {
        match self.transfer.as_mut() {
            Some(transfer) if transfer.phase == TransferPhase::Offered => {
                transfer.phase = if yes {
                    TransferPhase::Ringing
                } else {
                    TransferPhase::LeadDeclined
                };
                true
            }
            _ => false,
        }
    }

    /// The rep, after the whisper, took the call or declined it.
    pub fn rep_reply(&mut self, accepts: bool, at: OffsetDateTime) -> bool {
        match self.transfer.as_mut() {
            Some(transfer) if transfer.phase == TransferPhase::Ringing => {
                if accepts {
                    transfer.phase = TransferPhase::RepAccepted;
                    transfer.rep_accepted_at = Some(at);
                } else {
                    transfer.phase = TransferPhase::RepDeclined;
                }
                true
            }
            _ => false,
        }
    }

    /// The `<Dial>` ended with Twilio's `DialCallStatus`. Connected only when the rep took the call
    /// after the whisper and Twilio did not say the legs were never bridged: a declined whisper
    /// also ends `completed` on the rep's leg.
    pub fn transfer_ended(&mut self, dial_status: &str, bridged: Option<bool>, at: OffsetDateTime) -> bool {
        let Some(transfer) = self.transfer.as_mut() else {
            return false;
        };
        let talked = matches!(dial_status, "completed" | "answered") && bridged != Some(false);
        let phase = match transfer.phase {
            TransferPhase::RepAccepted if talked => TransferPhase::Connected,
            TransferPhase::Ringing | TransferPhase::RepAccepted => TransferPhase::RepMissed,
            _ => return false,
        };
        transfer.phase = phase;
        transfer.dial_status = Some(dial_status.to_owned());
        if phase == TransferPhase::Connected {
            transfer.talked_secs = transfer
                .rep_accepted_at
                .map(|since| (at - since).whole_seconds().max(0) as u64);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn offered() -> CallState {
        let mut state = CallState::queued(Uuid::nil(), "+14155550142", Some("Ada"));
        let rep = Rep {
            name: "Sam".into(),
            phone: "+12125550199".into(),
            days: "daily".into(),
            hours: "00:00-24:00".into(),
        };
        assert!(state.offer_transfer(&rep));
        assert!(!state.offer_transfer(&rep), "offered once");
        state
    }

    fn outcome(state: &CallState) -> &'static str {
        state.transfer.as_ref().map(Transfer::outcome).unwrap_or("none")
    }

    #[test]
    fn a_yes_and_a_rep_who_takes_it_is_a_transfer_with_its_length() {
        let now = OffsetDateTime::now_utc();
        let mut state = offered();
        assert!(state.transfer_reply(true));
        assert!(!state.transfer_reply(false), "a repeat of the reply changes nothing");
        assert!(state.rep_reply(true, now));
        assert!(state.transfer_ended("completed", Some(true), now + time::Duration::seconds(95)));
        assert!(
            !state.transfer_ended("completed", Some(true), now),
            "a repeat of the end"
        );
        assert_eq!(outcome(&state), "transferred");
        assert_eq!(state.transfer.as_ref().and_then(|t| t.talked_secs), Some(95));
    }

    #[test]
    fn a_rep_who_declines_or_never_answers_is_not_a_transfer() {
        let now = OffsetDateTime::now_utc();
        let mut declined = offered();
        declined.transfer_reply(true);
        declined.rep_reply(false, now);
        assert!(
            !declined.transfer_ended("completed", None, now),
            "already ended by the rep"
        );
        assert_eq!(outcome(&declined), "rep_declined");
        let mut missed = offered();
        missed.transfer_reply(true);
        missed.transfer_ended("no-answer", None, now);
        assert_eq!(outcome(&missed), "rep_no_answer");
        // Twilio says completed, but the legs were never bridged.
        let mut unbridged = offered();
        unbridged.transfer_reply(true);
        unbridged.rep_reply(true, now);
        unbridged.transfer_ended("completed", Some(false), now);
        assert_eq!(outcome(&unbridged), "rep_no_answer");
        let mut no = offered();
        no.transfer_reply(false);
        assert!(!no.rep_reply(true, now) && !no.transfer_ended("completed", None, now));
        assert_eq!(outcome(&no), "lead_declined");
    }
}
