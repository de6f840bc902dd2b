//! A reference CMO agent client for leadq: follows `agent.status`, sends the CMO operations over
//! the NATS service, and falls back to the REST routes when NATS cannot be reached.
//!
//! ```sh
//! cargo run --example cmo_client -- --key lq_… status
//! cargo run --example cmo_client -- --key lq_… command pause
//! cargo run --example cmo_client -- --key lq_… report week
//! cargo run --example cmo_client -- --key lq_… trigger-lead '{"fname":"Ada","phone":"+14155550142"}'
//! cargo run --example cmo_client -- watch        # the current status at once, then every change
//! ```
//! `--nats` (LEADQ_NATS_URL) and `--api` (LEADQ_API_URL) say where leadq is; `--key` (LEADQ_API_KEY)
//! is a key from `leadq admin api-key create`. Answers are printed as JSON on stdout; which path
//! answered (NATS or REST) goes to stderr.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};

const AGENT_ID: &str = "lead-qualification-agent-001";

#[derive(Parser)]
#[command(about = "Talk to leadq as the CMO agent does: NATS first, REST as the fallback")]
struct Args {
    #[arg(long, env = "LEADQ_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    #[arg(long, env = "LEADQ_API_URL", default_value = "http://127.0.0.1:8000")]
    api: String,
    #[arg(long, env = "LEADQ_API_KEY", default_value = "")]
    key: String,
    /// How long to wait for NATS before falling back to REST.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    operation: Operation,
}

#[derive(Subcommand)]
enum Operation {
    /// The agent's status and today's figures.
    Status,
    /// start, stop, pause, resume, get_status or get_metrics.
    Command { name: String },
    /// Queue a lead: the JSON body of trigger-lead.
    TriggerLead { body: String },
    /// today, week or month.
    Report { period: String },
    /// What the agent can do.
    Capabilities,
    /// Print the last published status at once, then each new one (NATS only).
    Watch,
}

impl Operation {
    /// The service operation, its JSON body, and the REST method and path.
    fn request(&self) -> anyhow::Result<(&'static str, Value, reqwest::Method, String)> {
        use reqwest::Method;
        Ok(match self {
            Self::Status => ("status", json!({}), Method::GET, "/api/cmo/status".into()),
            Self::Command { name } => (
                "command",
                json!({ "command": name }),
                Method::POST,
                "/api/cmo/command".into(),
            ),
            Self::TriggerLead { body } => (
                "trigger-lead",
                serde_json::from_str(body).context("trigger-lead takes a JSON object")?,
                Method::POST,
                "/api/cmo/trigger-lead".into(),
            ),
            Self::Report { period } => (
                "report",
                json!({ "period": period }),
                Method::GET,
                format!("/api/cmo/report/{period}"),
            ),
            Self::Capabilities => ("capabilities", json!({}), Method::GET, "/api/cmo/capabilities".into()),
            Self::Watch => bail!("watch is not a request"),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = tokio::time::timeout(
        args.timeout,
        async_nats::ConnectOptions::new()
            .name("cmo reference client")
            .connect(&args.nats),
    )
    .await
    .ok()
    .and_then(Result::ok);
    if let Operation::Watch = args.operation {
        let client = nats.with_context(|| format!("watch needs NATS, and {} cannot be reached", args.nats))?;
        return watch(client).await;
    }
    let (operation, body, method, path) = args.operation.request()?;
    if let Some(client) = nats {
        match ask_nats(&client, operation, &body, &args.key, args.timeout).await {
            Ok(answer) => return print(answer, "NATS"),
            Err(err) => eprintln!("NATS did not answer ({err:#}); trying REST"),
        }
    } else {
        eprintln!("NATS at {} cannot be reached; trying REST", args.nats);
    }
    let answer = ask_rest(&args.api, method, &path, &body, &args.key).await?;
    print(answer, "REST")
}

fn print((ok, answer): (bool, Value), via: &str) -> anyhow::Result<()> {
    eprintln!("answered over {via}");
    println!("{answer}");
    if !ok {
        bail!("leadq refused: {}", answer["error"]);
    }
    Ok(())
}

async fn ask_nats(
    client: &async_nats::Client,
    operation: &str,
    body: &Value,
    key: &str,
    timeout: Duration,
) -> anyhow::Result<(bool, Value)> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-API-Key", key);
    let subject = format!("cmo.{AGENT_ID}.{operation}");
    let reply = tokio::time::timeout(
        timeout,
        client.request_with_headers(subject, headers, body.to_string().into()),
    )
    .await
    .context("timed out")??;
    let refused = reply
        .headers
        .as_ref()
        .is_some_and(|h| h.get("Nats-Service-Error-Code").is_some());
    Ok((
        !refused,
        serde_json::from_slice(&reply.payload).context("the answer is not JSON")?,
    ))
}

async fn ask_rest(
    api: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
    key: &str,
) -> anyhow::Result<(bool, Value)> {
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", api.trim_end_matches('/')))
        .header("X-API-Key", key);
    if method == reqwest::Method::POST {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("REST at {api} cannot be reached either"))?;
    let ok = response.status().is_success();
    Ok((ok, response.json().await.context("the answer is not JSON")?))
}

/// The STATUS stream keeps the last status per subject, so a client that starts late still sees
/// the current state at once; live updates follow on the plain subject.
async fn watch(client: async_nats::Client) -> anyhow::Result<()> {
    let mut live = client.subscribe("agent.status").await?;
    let js = async_nats::jetstream::new(client);
    if let Ok(stream) = js.get_stream("STATUS").await
        && let Ok(last) = stream.get_last_raw_message_by_subject("agent.status").await
    {
        println!("{}", String::from_utf8_lossy(&last.payload));
    }
    while let Some(message) = live.next().await {
        println!("{}", String::from_utf8_lossy(&message.payload));
    }
    Ok(())
}
