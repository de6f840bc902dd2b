//! A real Dovecot IMAP server on a loopback port, with a throwaway Maildir and one password-file
//! user, run in the foreground by the test (no systemd) and killed on drop.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;

pub const USER: &str = "leads";
pub const PASSWORD: &str = "inbox-password";

pub struct Dovecot {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Dovecot {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Dovecot's unprivileged processes must reach the Maildir inside it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let chown = Command::new("chown")
            .args(["-R", "dovecot:dovecot"])
            .arg(dir.path().join("mail"))
            .status();
        assert!(chown.expect("chown").success(), "chown the Maildir to dovecot");
        std::fs::write(dir.path().join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).expect("passwd");
        let mut dovecot = Self {
            child: None,
            dir,
            port: crate::helpers::free_port(),
        };
        dovecot.write_config();
        dovecot.restart();
        dovecot
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let port = self.port;
        let config = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
             log_path = {d}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\ndefault_login_user = dovenull\ndefault_internal_user = dovecot\nfirst_valid_uid = 1\n\
             mail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={d}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
               inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n"
        );
        std::fs::write(self.dir.path().join("dovecot.conf"), config).expect("config");
    }

    /// Starts (again) on the same port and Maildir.
    pub fn restart(&mut self) {
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dovecot (scripts/test installs dovecot-imapd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "dovecot did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "dovecot still listening after stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The inbox Maildir; a file written into `new/` is mail delivered while no one is connected.
    pub fn inbox(&self) -> PathBuf {
        self.dir.path().join("mail").join(USER)
    }

    /// Delivers a message straight into the Maildir, as a local delivery agent would.
    pub fn deliver_file(&self, raw: &[u8], name: &str) {
        let new = self.inbox().join("new");
        std::fs::create_dir_all(&new).expect("mkdir new");
        let path = new.join(format!("{name}.leadq-test"));
        std::fs::write(&path, raw).expect("write mail");
        let _ = Command::new("chown")
            .args(["-R", "dovecot:dovecot"])
            .arg(self.inbox())
            .status();
    }

    pub fn settings(&self, settings: &mut leadq::config::Settings, fallback: Duration) {
        settings.imap = Some(leadq::config::ImapSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: false,
            username: USER.into(),
            password: PASSWORD.to_owned().into(),
            auth: leadq::config::ImapAuth::Password,
            mailbox: "INBOX".into(),
            fallback_interval: fallback,
            idle_timeout: Duration::from_secs(25 * 60),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(500),
        });
    }

    /// A signed-in session with INBOX selected (the benchmark APPENDs through one).
    pub async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect imap");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.expect("greeting");
        let mut session = client.login(USER, PASSWORD).await.map_err(|(e, _)| e).expect("login");
        if let Err(err) = session.select("INBOX").await {
            panic!("select: {err}; dovecot log: {}", self.log());
        }
        session
    }

    /// IMAP APPEND, as mail arriving while the poller watches.
    pub async fn append(&self, raw: &[u8]) {
        let mut session = self.session().await;
        session.append("INBOX", None, None, raw).await.expect("append");
        session.logout().await.expect("logout");
    }

    /// Message-ID (or, without one, the Subject) of every message, with whether it is `\Seen`.
    pub async fn seen_flags(&self) -> HashMap<String, bool> {
        let mut session = self.session().await;
        let fetches: Vec<_> = session
            .fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])")
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("collect");
        let mut out = HashMap::new();
        for fetch in fetches {
            let seen = fetch.flags().any(|f| matches!(f, async_imap::types::Flag::Seen));
            let header = String::from_utf8_lossy(fetch.header().unwrap_or_default()).to_string();
            let key = header
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Message-ID: ")
                        .or_else(|| l.strip_prefix("Message-Id: "))
                })
                .or_else(|| header.lines().find_map(|l| l.strip_prefix("Subject: ")))
                .unwrap_or("")
                .trim()
                .trim_matches(['<', '>'])
                .to_owned();
            out.insert(key, seen);
        }
        session.logout().await.expect("logout");
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/emails")
            .join(name),
    )
    .expect("fixture")
}
