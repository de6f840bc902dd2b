//! Real services for the tests: a throwaway `nats-server -js` per test on a free loopback port,
//! and the `leadq` binary built by cargo.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadq::bus::Bus;
use leadq::config::Settings;

/// The pinned nats-server: `LEADQ_NATS_SERVER`, else where `scripts/test` installs it.
fn nats_server_bin() -> PathBuf {
    if let Ok(path) = std::env::var("LEADQ_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = PathBuf::from(home).join(".cache/leadq/nats-venv/bin/nats-server");
    assert!(
        path.exists(),
        "no nats-server at {}: run the tests with `scripts/test`, which installs it",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A JetStream server with its own store directory, killed on drop.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        // A free port can be taken by another test's server before ours binds it: then ours exits,
        // and the port answers for the wrong server. Try again on another port.
        let mut store = Some(store);
        for _ in 0..5 {
            match Self::start_on(free_port(), store.take().expect("store")) {
                Ok(server) => return server,
                Err(back) => store = Some(back),
            }
        }
        panic!("nats-server did not start on any of five free ports");
    }

    fn start_on(port: u16, store: tempfile::TempDir) -> Result<Self, tempfile::TempDir> {
        let mut child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !matches!(child.try_wait(), Ok(None)) {
                return Err(store); // It exited: the port was not free after all.
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Listening, and still ours: a server that lost the port would have exited by now.
        std::thread::sleep(Duration::from_millis(50));
        if !matches!(child.try_wait(), Ok(None)) {
            return Err(store);
        }
        Ok(Self { child, port, store })
    }

    /// Where JetStream keeps its files: what a test reads to see what is stored raw.
    pub fn store_dir(&self) -> &std::path::Path {
        self.store.path()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn settings(&self) -> Settings {
        Settings::for_tests(&self.url())
    }

    pub async fn bus(&self) -> Bus {
        Bus::connect(&self.url(), "leadq tests")
            .await
            .expect("connect to test nats")
    }

    /// Connects and creates the topology, as every role does on start.
    pub async fn ready_bus(&self) -> Bus {
        let bus = self.bus().await;
        leadq::bus::setup(&bus.js, &self.settings().bus).await.expect("setup");
        bus
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.store;
    }
}

/// Runs the built `leadq` with a clean `LEADQ_*` environment plus `env`.
pub fn leadq(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadq"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADQ_")) {
        cmd.env_remove(key);
    }
    cmd.args(args).envs(env.iter().copied()).output().expect("run leadq")
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every payload of type `P` stored on `stream`, oldest first.
pub async fn on_stream<P: leadq::bus::Payload>(bus: &Bus, stream: &str) -> Vec<P> {
    let mut stream = bus.js.get_stream(stream).await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(message) = stream.get_raw_message(seq).await
            && message.subject.as_str() == P::SUBJECT
        {
            out.push(leadq::bus::decode(&message.payload).expect("a payload of the subject's type"));
        }
    }
    out
}

/// Points `settings` at a free loopback port, public URL included; returns the base URL.
pub fn on_free_port(settings: &mut Settings) -> String {
    let port = free_port();
    settings.http_addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let base = format!("http://127.0.0.1:{port}");
    settings.public_url = base.parse().expect("url");
    base
}

/// Builds a context with the store and serves the api role's HTTP routes until `shutdown`.
pub async fn serve_api(settings: Settings, shutdown: &tokio_util::sync::CancellationToken) -> leadq::runtime::Context {
    // Boxed: the store's connect future is large, and tests run on small thread stacks.
    let ctx = Box::pin(leadq::runtime::Context::build(settings, true))
        .await
        .expect("context");
    let server = leadq::http::HttpServer::bind(ctx.clone()).await.expect("bind");
    tokio::spawn(server.serve(shutdown.clone()));
    ctx
}

/// A durable consumer's state as the server reports it (pending, unacked, ack floor, config).
pub async fn consumer_info(
    bus: &Bus,
    stream: &str,
    consumer: &str,
) -> Result<async_nats::jetstream::consumer::Info, async_nats::Error> {
    let mut handle = bus
        .js
        .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(consumer, stream)
        .await?;
    Ok(handle.info().await?.clone())
}

/// Makes an admin-page admin in the `users` bucket and signs in through the API; the bearer token.
pub async fn admin_token(bus: &Bus, http: &reqwest::Client, base: &str) -> String {
    const PASSWORD: &str = "correct horse battery staple";
    let users = leadq::users::Users::open(&bus.js).await.expect("users");
    users
        .upsert("boss", leadq::users::UserRole::Admin, PASSWORD.into())
        .await
        .expect("user");
    let login: serde_json::Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({ "username": "boss", "password": PASSWORD }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    login["access_token"].as_str().expect("access_token").to_owned()
}
