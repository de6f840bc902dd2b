//! Runs the stand-ins by hand, for trying leadq end to end without the real services.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Twilio stand-in for local leadq runs: point LEADQ_TWILIO_API_BASE at it")]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// The Account SID it accepts (Basic auth user).
    #[arg(long, env = "LEADQ_TWILIO__ACCOUNT_SID")]
    account_sid: String,
    /// The auth token it accepts and signs webhooks with.
    #[arg(long, env = "LEADQ_TWILIO__AUTH_TOKEN", hide_env_values = true)]
    auth_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let standin = standins::twilio::TwilioStandIn::start(&args.account_sid, &args.auth_token, args.port).await?;
    println!(
        "Twilio stand-in on {}; every callee answers \"yes\"",
        standin.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
