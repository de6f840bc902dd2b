//! The settings read from defaults, a TOML file and `LEADQ_*` variables, and refused when wrong.

use super::*;
use figment::Jail;
use secrecy::ExposeSecret;

// figment's `Jail` takes closures that return its own (large) error type.
#[allow(clippy::result_large_err)]
fn load_with(jail_setup: impl FnOnce(&mut Jail)) -> Result<Settings, ConfigError> {
    let mut out = None;
    Jail::expect_with(|jail| {
        jail_setup(jail);
        out = Some(Settings::load(None));
        Ok(())
    });
    out.expect("jail ran")
}

#[test]
fn defaults_are_valid_and_use_the_data_dir() {
    let s = load_with(|_| {}).expect("defaults load");
    assert_eq!(s.http_addr.to_string(), "127.0.0.1:8000");
    assert_eq!(s.db, DbLocation::File(PathBuf::from("./data/db")));
    assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8000/");
}

#[test]
fn the_sandbox_switch_reads_as_people_write_it() {
    for (written, expected) in [
        ("0", Some(false)),
        ("1", Some(true)),
        ("true", Some(true)),
        ("off", Some(false)),
    ] {
        let s = load_with(|jail| jail.set_env("LEADQ_SANDBOX", written)).expect("loads");
        assert_eq!(s.sandbox, expected, "LEADQ_SANDBOX={written}");
    }
    assert_eq!(load_with(|_| {}).expect("loads").sandbox, None);
    let refused = load_with(|jail| jail.set_env("LEADQ_SANDBOX", "maybe")).expect_err("not a switch");
    assert!(refused.to_string().contains("LEADQ_SANDBOX"), "{refused}");
}

#[test]
#[allow(clippy::result_large_err)] // figment's `Jail` closure returns its own large error.
fn environment_overrides_the_file() {
    let mut out = None;
    Jail::expect_with(|jail| {
        jail.create_file("leadq.toml", "http_addr = \"0.0.0.0:9000\"\n[bus]\nmax_deliver = 7\n")?;
        jail.set_env("LEADQ_DB", "mem://");
        jail.set_env("LEADQ_HTTP_ADDR", "127.0.0.1:9100");
        out = Some(Settings::load(Some(Path::new("leadq.toml"))));
        Ok(())
    });
    let s = out.expect("jail ran").expect("settings load");
    assert_eq!(s.http_addr.port(), 9100);
    assert_eq!(s.bus.max_deliver, 7);
    assert_eq!(s.db, DbLocation::Memory);
}

#[test]
fn bad_values_name_the_setting() {
    let cases = [
        ("LEADQ_HTTP_ADDR", "not-an-address", "LEADQ_HTTP_ADDR"),
        ("LEADQ_DB", "postgres://x", "LEADQ_DB"),
        ("LEADQ_DB", "nonsense", "LEADQ_DB"),
        ("LEADQ_PUBLIC_URL", "::", "LEADQ_PUBLIC_URL"),
        ("LEADQ_BUS__MAX_DELIVER", "2", "LEADQ_BUS__MAX_DELIVER"),
        ("LEADQ_BUS__MAX_DELIVER", "many", "LEADQ_BUS__MAX_DELIVER"),
        ("LEADQ_LOG_FORMAT", "xml", "LEADQ_LOG_FORMAT"),
        ("LEADQ_DEFAULT_REGION", "Atlantis", "LEADQ_DEFAULT_REGION"),
        // Shorter than four tries of the 15 s Twilio timeout: slow answers would be cut short.
        ("LEADQ_BUS__MAX_HANDLING", "30s", "LEADQ_BUS__MAX_HANDLING"),
        ("LEADQ_RESUBMIT_WINDOW", "365days", "LEADQ_RESUBMIT_WINDOW"),
        ("LEADQ_RESUBMIT_WINDOW", "soon", "LEADQ_RESUBMIT_WINDOW"),
        // Read by serde into their types: the layer's error still names the variable.
        ("LEADQ_ADMIN__TOKEN_TTL", "forever", "LEADQ_ADMIN__TOKEN_TTL"),
        ("LEADQ_IMAP__IDLE_TIMEOUT", "3", "LEADQ_IMAP__IDLE_TIMEOUT"),
        ("LEADQ_CALENDLY_URL", "nope", "LEADQ_CALENDLY_URL"),
        ("LEADQ_TWILIO_API_BASE", "::", "LEADQ_TWILIO_API_BASE"),
        ("LEADQ_ADMIN__CORS_ORIGINS", "[nonsense]", "LEADQ_ADMIN__CORS_ORIGINS"),
        ("LEADQ_BUS__BACKOFF", "[\"1ms\"]", "LEADQ_BUS__BACKOFF"),
        ("LEADQ_IMAP__HOST", "imap.example.com", "LEADQ_IMAP__USERNAME"),
        ("LEADQ_CALLING_HOURS__START", "8 o'clock", "LEADQ_CALLING_HOURS__START"),
        ("LEADQ_CALLING_HOURS__END", "07:00", "LEADQ_CALLING_HOURS__END"),
        (
            "LEADQ_CALLING_HOURS__TIMEZONE",
            "Mars/Olympus",
            "LEADQ_CALLING_HOURS__TIMEZONE",
        ),
    ];
    for (var, value, named) in cases {
        let err = load_with(|jail| jail.set_env(var, value)).expect_err(var);
        let line = err.to_string();
        assert!(line.contains(named), "{var}={value}: `{line}` does not name {named}");
        assert!(!line.contains('\n'), "{var}: error spans lines: {line}");
    }
}

#[test]
fn numbers_and_secrets_that_look_numeric_stay_text() {
    let s = load_with(|jail| {
        jail.set_env("LEADQ_TWILIO__FROM_NUMBER", "+15005550006");
        jail.set_env("LEADQ_TWILIO__AUTH_TOKEN", "12345");
        jail.set_env("LEADQ_DB_PASS", "true");
    })
    .expect("load");
    assert_eq!(s.twilio.from_number.as_deref(), Some("+15005550006"));
    assert_eq!(
        s.twilio
            .auth_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
            .as_deref(),
        Some("12345")
    );
}

#[test]
fn plain_imap_is_refused_to_a_remote_host() {
    let err = load_with(|jail| {
        jail.set_env("LEADQ_IMAP__HOST", "imap.gmail.com");
        jail.set_env("LEADQ_IMAP__TLS", "false");
        jail.set_env("LEADQ_IMAP__USERNAME", "leads@example.com");
        jail.set_env("LEADQ_IMAP__PASSWORD", "app-password");
    })
    .expect_err("plain to gmail");
    assert!(err.to_string().contains("LEADQ_IMAP__TLS"), "{err}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let s = load_with(|jail| jail.set_env("LEADQ_DB_PASS", "hunter2-very-secret")).expect("load");
    assert!(!format!("{s:?}").contains("hunter2-very-secret"));
}

#[test]
fn the_transfer_roster_reads_from_one_variable_and_names_it_when_wrong() {
    let s = load_with(|jail| {
        jail.set_env(
            "LEADQ_TRANSFER__ROSTER",
            "Sam Rivera +14155550142 mon-fri 09:00-17:00; Kim +12125550199 sat,sun 10:00-16:00",
        );
        jail.set_env("LEADQ_TRANSFER__RING_SECS", "25");
    })
    .expect("loads");
    assert_eq!(s.transfer.reps.len(), 2);
    assert_eq!(s.transfer.reps[1].phone, "+12125550199");
    assert_eq!(s.transfer.ring_secs, 25);
    assert!(
        load_with(|_| {}).expect("loads").transfer.reps.is_empty(),
        "nobody by default"
    );
    for (var, value) in [
        ("LEADQ_TRANSFER__ROSTER", "Sam +14155550142 someday 09:00-17:00"),
        ("LEADQ_TRANSFER__RING_SECS", "500"),
        ("LEADQ_TRANSFER__TIME_ZONE", "Mars/Olympus"),
    ] {
        let refused = load_with(|jail| jail.set_env(var, value)).expect_err(value);
        assert!(refused.to_string().contains(var), "{var}: {refused}");
    }
}

#[test]
#[allow(clippy::result_large_err)] // figment's `Jail` closure returns its own large error.
fn the_documented_example_file_loads_as_it_is() {
    let mut out = None;
    Jail::expect_with(|jail| {
        jail.create_file("leadq.toml", include_str!("../../leadq.example.toml"))?;
        out = Some(Settings::load(Some(Path::new("leadq.toml"))));
        Ok(())
    });
    let settings = out.expect("jail ran").expect("leadq.example.toml loads");
    assert_eq!(settings.transfer.ring_secs, 20);
    assert_eq!(settings.followups.len(), 2);
}
