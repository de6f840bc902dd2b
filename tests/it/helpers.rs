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

/// A three-node JetStream cluster on loopback (distinct server names, store dirs and routes), as
/// production runs it; a node can be killed and started again on the same ports and store.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    _dir: tempfile::TempDir,
}

struct ClusterNode {
    args: Vec<String>,
    /// The node's output, kept across restarts so a failure can show it.
    log: PathBuf,
    pub port: u16,
    monitor: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three nodes on free ports. A free port can be taken by another test between
    /// choosing it and the node binding it; then the whole cluster is tried again on new ports
    /// (the route list names every node's port, so one node cannot move alone).
    pub fn start() -> Self {
        let mut last_failure = String::new();
        for _ in 0..3 {
            let mut cluster = Self::on_free_ports();
            match (0..3).try_for_each(|i| cluster.try_start_node(i)) {
                Ok(()) => return cluster,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("the cluster did not start in three tries: {last_failure}");
    }

    fn on_free_ports() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, route, _)| format!("nats-route://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route, monitor))| {
                let store = dir.path().join(format!("n{i}"));
                let args = [
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-m",
                    &monitor.to_string(),
                    "-n",
                    &format!("n{i}"),
                    "-js",
                    "-sd",
                    &store.display().to_string(),
                    "--cluster_name",
                    "leadq",
                    "--cluster",
                    &format!("nats://127.0.0.1:{route}"),
                    "--routes",
                    &routes,
                ]
                .map(str::to_owned)
                .to_vec();
                ClusterNode {
                    args,
                    log: dir.path().join(format!("n{i}.log")),
                    port: *port,
                    monitor: *monitor,
                    child: None,
                }
            })
            .collect();
        Self { nodes, _dir: dir }
    }

    /// Starts node `i` (again, on the same ports and store) and waits until it listens.
    pub fn start_node(&mut self, i: usize) {
        if let Err(failure) = self.try_start_node(i) {
            panic!("{failure}");
        }
    }

    /// Starts node `i` with its output appended to its log; an error carries the log's end.
    fn try_start_node(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        let err_log = log.try_clone().expect("node log");
        let mut child = Command::new(nats_server_bin())
            .args(&node.args)
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                return Err(format!(
                    "cluster node n{i} did not listen on {} ({}); its log ends: {}",
                    node.port,
                    exited.map_or("still starting".to_owned(), |status| format!("exited, {status}")),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        node.child = Some(child);
        Ok(())
    }

    /// SIGKILLs node `i`, as a machine lost.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `i` as an operator would before maintenance: lame-duck mode first (the node
    /// hands the leadership of every stream and consumer it leads to a peer, then waits a
    /// second), then the process ends. Its clients reconnect to the other nodes.
    pub fn stop_node_planned(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        let status = Command::new(nats_server_bin())
            .args(["--signal", &format!("ldm={}", child.id())])
            .status()
            .expect("nats-server --signal ldm");
        assert!(status.success(), "lame-duck signal to node n{i} failed");
        // The server steps down, waits a second, then shuts JetStream down; the rest of lame
        // duck is closing client connections over 30 s or more, which the kill shortens.
        std::thread::sleep(Duration::from_secs(2));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether node `i` says its JetStream is current (`/healthz`): what a rolling restart
    /// checks before it stops the next node.
    pub async fn is_current(&self, i: usize) -> bool {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].monitor);
        reqwest::get(&url).await.is_ok_and(|r| r.status().is_success())
    }

    /// Every node, as `LEADQ_NATS_URL` lists them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Settings for R3 streams and buckets on this cluster.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_tests(&self.url());
        settings.bus.replicas = 3;
        settings
    }

    /// A connection once JetStream has a meta leader (a fresh cluster elects one in a few seconds).
    pub async fn bus(&self) -> Bus {
        let bus = Bus::connect(&self.url(), "leadq tests")
            .await
            .expect("connect to the cluster");
        let deadline = Instant::now() + Duration::from_secs(30);
        while bus.ping().await.is_err() {
            assert!(Instant::now() < deadline, "the cluster's JetStream did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bus
    }

    /// How many messages node `i`'s own replica of `stream` holds (its monitoring `/jsz`).
    pub async fn messages_on_node(&self, i: usize, stream: &str) -> Option<u64> {
        let url = format!("http://127.0.0.1:{}/jsz?streams=true", self.nodes[i].monitor);
        let jsz: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|account| account["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|detail| detail["name"] == stream)
            .and_then(|detail| detail["state"]["messages"].as_u64())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

/// A SurrealDB server (`surreal start`, the version of leadq's SDK, built by `scripts/test` into
/// the cargo target directory's `tools/`) on a free loopback port, killed on drop.
pub struct SurrealServer {
    child: Option<Child>,
    pub port: u16,
    /// `memory`, or `surrealkv://DIR` for a server whose data outlives a restart.
    storage: String,
    /// Where an on-disk server's own log goes (appended across restarts), for a failed run.
    log: Option<PathBuf>,
}

pub const SURREAL_USER: &str = "root";
pub const SURREAL_PASS: &str = "leadq-tests";

fn surreal_bin() -> PathBuf {
    let bin = std::env::var("LEADQ_SURREAL").map(PathBuf::from).unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/leadq-target")
        });
        // scripts/lib.sh's SURREAL_BUILD.
        PathBuf::from(target).join("tools/surreal-3.3.5-2")
    });
    assert!(
        bin.exists(),
        "no SurrealDB server at {}: run the tests with `scripts/test`, which builds it",
        bin.display()
    );
    bin
}

impl SurrealServer {
    /// In memory.
    pub fn start() -> Self {
        Self::start_with("memory".into(), None)
    }

    /// On disk in `dir`: its data survives [`SurrealServer::restart`].
    pub fn start_on_disk(dir: &std::path::Path) -> Self {
        Self::start_with(
            format!("surrealkv://{}", dir.display()),
            Some(dir.with_extension("log")),
        )
    }

    fn start_with(storage: String, log: Option<PathBuf>) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            storage,
            log,
        };
        server.restart();
        server
    }

    /// Kills the server, as a crash or a restart's first half does; `restart` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (if running) and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        let child = Command::new(surreal_bin())
            .args([
                "start",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--user",
                SURREAL_USER,
                "--pass",
                SURREAL_PASS,
            ])
            .arg(&self.storage)
            .env("SURREAL_LOG", "info")
            .env("SURREAL_SLOW_QUERY_LOG_THRESHOLD", "100ms")
            .stdout(Stdio::null())
            .stderr(self.log.as_ref().map_or_else(Stdio::null, |path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_or_else(|_| Stdio::null(), Stdio::from)
            }))
            .spawn()
            .expect("spawn surreal");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "surreal did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Points `settings` at this server.
    pub fn configure(&self, settings: &mut Settings) {
        settings.db = leadq::config::DbLocation::Server(self.url().parse().expect("url"));
        settings.db_user = Some(SURREAL_USER.into());
        settings.db_pass = Some(SURREAL_PASS.to_owned().into());
    }
}

impl Drop for SurrealServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// What the code under test logs, shown with a failing test's output, so a failure that shows
/// only under CI's load comes with leadq's own account. `LEADQ_TEST_LOG` is the filter.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("LEADQ_TEST_LOG").unwrap_or_else(|_| "leadq=warn".into());
        // Another test may have set a subscriber first; then that one is kept.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
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
    let users = leadq::security::users::Users::open(&bus.js).await.expect("users");
    users
        .upsert("boss", leadq::security::users::UserRole::Admin, PASSWORD.into())
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
