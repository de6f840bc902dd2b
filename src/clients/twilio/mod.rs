//! Twilio's REST API (2010-04-01): place a call, send an SMS, list recent ones to a number. The
//! base URL is a setting, so tests point this same client at the stand-in.

pub mod signature;
pub mod twiml;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::config::TwilioSettings;

/// After the client's own quick retries, a failed request waits this long for the next delivery.
pub const LATER: std::time::Duration = std::time::Duration::from_secs(30);

/// How a request failed, as far as retrying is concerned.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    #[error("Twilio is not configured: {0}")]
    NotConfigured(&'static str),
    /// 429 or 5xx: the request did nothing; try again later.
    #[error("Twilio answered {status}: {message}")]
    Transient { status: u16, message: String },
    /// 4xx: this request will never succeed.
    #[error("Twilio refused the request ({status}, code {code}): {message}")]
    Rejected { status: u16, code: i64, message: String },
    /// No answer after the request may have reached Twilio: it may or may not have acted.
    #[error("no answer from Twilio (it may have acted): {0}")]
    Ambiguous(String),
    /// The request never left (connection refused): it did nothing.
    #[error("cannot reach Twilio: {0}")]
    Unreachable(String),
}

/// A request that may have gone through is looked up at Twilio this soon on the next delivery: a
/// lead whose call never left should not wait the full [`LATER`].
pub const RECONCILE_SOON: std::time::Duration = std::time::Duration::from_secs(5);

impl TwilioError {
    /// How long a delivery that met this error waits before the next try.
    pub fn retry_after(&self) -> std::time::Duration {
        match self {
            Self::Ambiguous(_) => RECONCILE_SOON,
            _ => LATER,
        }
    }
}

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// The parts of Twilio's Call resource leadq reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CallResource {
    pub sid: String,
    pub to: String,
    pub status: String,
    #[serde(default)]
    pub date_created: Option<String>,
    /// Seconds from answer to hang-up, once ended (Twilio sends it as a string).
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub answered_by: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CallList {
    calls: Vec<CallResource>,
}

/// The parts of Twilio's Message resource leadq reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MessageResource {
    pub sid: String,
    pub to: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Deserialize)]
struct MessageList {
    messages: Vec<MessageResource>,
}

/// The parts of Twilio's Account resource a connection test shows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AccountResource {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: String,
    /// active, suspended or closed.
    #[serde(default)]
    pub status: String,
}

/// What a new outbound call needs.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    pub to: &'a str,
    /// TwiML for the answered call (`call-start`).
    pub url: &'a str,
    pub status_callback: &'a str,
    /// Where Twilio posts the answering-machine detection result, which comes after the call is
    /// answered (asynchronous detection: the lead hears the greeting at once).
    pub amd_callback: &'a str,
}

/// Quick retries of a 429/5xx answer before the caller of the client decides what to do.
const QUICK_RETRIES: u32 = 3;
const QUICK_RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Clone, Debug)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: Url,
    account_sid: String,
    auth_token: SecretString,
    from: String,
    /// `Calls.json` requests in flight at once (`twilio.max_in_flight`).
    calls_in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl TwilioClient {
    pub fn new(settings: &TwilioSettings) -> Result<Self, TwilioError> {
        let account_sid = settings
            .account_sid
            .clone()
            .ok_or(TwilioError::NotConfigured("LEADQ_TWILIO__ACCOUNT_SID"))?;
        let auth_token = settings
            .auth_token
            .clone()
            .ok_or(TwilioError::NotConfigured("LEADQ_TWILIO__AUTH_TOKEN"))?;
        let from = settings
            .from_number
            .clone()
            .ok_or(TwilioError::NotConfigured("LEADQ_TWILIO__FROM_NUMBER"))?;
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| TwilioError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: settings.api_base.clone(),
            account_sid,
            auth_token,
            from,
            calls_in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
        })
    }

    fn url(&self, resource: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.base.as_str().trim_end_matches('/'),
            self.account_sid
        )
    }

    /// Sends, retrying 429 and 5xx a few times at once: Twilio guarantees those did nothing.
    async fn send<T: for<'de> Deserialize<'de>>(&self, request: reqwest::RequestBuilder) -> Result<T, TwilioError> {
        let mut attempt = 0;
        loop {
            let Some(this_try) = request.try_clone() else {
                return self.send_once(request).await;
            };
            match self.send_once(this_try).await {
                Err(TwilioError::Transient { status, message }) if attempt < QUICK_RETRIES => {
                    attempt += 1;
                    tracing::warn!(status, %message, attempt, "Twilio busy; retrying");
                    // Jittered, so a burst that met a 429 together does not retry together.
                    let step = QUICK_RETRY_BASE * 2u32.pow(attempt);
                    tokio::time::sleep(step / 2 + step.mul_f64(rand::random::<f64>() / 2.0)).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, TwilioError> {
        let response = request
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    TwilioError::Unreachable(e.to_string())
                } else {
                    TwilioError::Ambiguous(e.to_string())
                }
            })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return response
                .json()
                .await
                .map_err(|e| TwilioError::Ambiguous(format!("unreadable answer: {e}")));
        }
        let body: ErrorBody = response.json().await.unwrap_or(ErrorBody {
            code: 0,
            message: String::new(),
        });
        if status == 429 || status >= 500 {
            Err(TwilioError::Transient {
                status,
                message: body.message,
            })
        } else {
            Err(TwilioError::Rejected {
                status,
                code: body.code,
                message: body.message,
            })
        }
    }

    /// `POST Calls.json`: dials `to`, with asynchronous answering-machine detection (the call's
    /// TwiML is fetched on answer, the detection's result posted to `amd_callback` later) and
    /// every status event.
    pub async fn create_call(&self, call: &NewCall<'_>) -> Result<CallResource, TwilioError> {
        let form: Vec<(&str, &str)> = vec![
            ("To", call.to),
            ("From", &self.from),
            ("Url", call.url),
            ("Method", "POST"),
            ("StatusCallback", call.status_callback),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            // Detection waits for a machine's greeting to end, so the voicemail lands after the beep.
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", call.amd_callback),
            ("AsyncAmdStatusCallbackMethod", "POST"),
            ("Timeout", "30"),
        ];
        // Twilio queues calls above the account's calls per second; this bounds open requests.
        let _slot = self.calls_in_flight.acquire().await;
        self.send(self.http.post(self.url("Calls.json")).form(&form)).await
    }

    /// `POST Calls/{Sid}.json` with `Url`: the live call leaves its TwiML for this document (how
    /// a machine detected after the greeting began gets the voicemail instead).
    pub async fn redirect_call(&self, call_sid: &str, url: &str) -> Result<CallResource, TwilioError> {
        let form = [("Url", url), ("Method", "POST")];
        self.send(self.http.post(self.url(&format!("Calls/{call_sid}.json"))).form(&form))
            .await
    }

    /// `POST Calls/{Sid}.json` with `Status=completed`: ends a live call (a fax answered).
    pub async fn hang_up(&self, call_sid: &str) -> Result<CallResource, TwilioError> {
        let form = [("Status", "completed")];
        self.send(self.http.post(self.url(&format!("Calls/{call_sid}.json"))).form(&form))
            .await
    }

    /// `POST Messages.json`: one SMS from the configured number.
    pub async fn send_sms(&self, to: &str, body: &str) -> Result<MessageResource, TwilioError> {
        let form = [("To", to), ("From", self.from.as_str()), ("Body", body)];
        self.send(self.http.post(self.url("Messages.json")).form(&form)).await
    }

    /// `GET Messages.json?To=`: messages to `to`, newest first; reconciles an ambiguous send.
    pub async fn messages_to(&self, to: &str) -> Result<Vec<MessageResource>, TwilioError> {
        let list: MessageList = self
            .send(
                self.http
                    .get(self.url("Messages.json"))
                    .query(&[("To", to), ("PageSize", "20")]),
            )
            .await?;
        Ok(list.messages)
    }

    /// `GET Calls/{Sid}.json`: one call as Twilio knows it (its end, when the status callback was lost).
    pub async fn call(&self, call_sid: &str) -> Result<CallResource, TwilioError> {
        self.send(self.http.get(self.url(&format!("Calls/{call_sid}.json"))))
            .await
    }

    /// `GET Accounts/{Sid}.json`: whether these credentials open the account (a connection test).
    pub async fn account(&self) -> Result<AccountResource, TwilioError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}.json",
            self.base.as_str().trim_end_matches('/'),
            self.account_sid
        );
        self.send(self.http.get(url)).await
    }

    /// `GET Calls.json?To=`: calls to `to`, newest first; how an ambiguous request is reconciled.
    pub async fn calls_to(&self, to: &str) -> Result<Vec<CallResource>, TwilioError> {
        let list: CallList = self
            .send(
                self.http
                    .get(self.url("Calls.json"))
                    .query(&[("To", to), ("PageSize", "20")]),
            )
            .await?;
        Ok(list.calls)
    }
}

/// The URL of one of leadq's Twilio webhooks for a lead's call: the caller hands these to Twilio
/// and the webhooks hand on to the next ones, so both build them here. Twilio signs its requests
/// over exactly this URL.
pub fn webhook_url(public_url: &url::Url, path: &str, lead_id: uuid::Uuid) -> String {
    format!(
        "{}/webhooks/twilio/{path}?lead={lead_id}",
        public_url.as_str().trim_end_matches('/')
    )
}
