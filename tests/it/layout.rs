//! The layout rules the code keeps: a role knows the bus, the store, the clients and the domain,
//! never the composition root that starts it, the HTTP edge, or another role.

use std::path::Path;

/// The worker roles and the modules they are made of.
const ROLES: [(&str, &[&str]); 6] = [
    ("caller", &["caller.rs"]),
    ("sms", &["sms.rs"]),
    ("finalizer", &["finalizer.rs"]),
    ("poller", &["poller/mod.rs", "poller/intake.rs"]),
    ("activity", &["activity.rs"]),
    ("status", &["status.rs"]),
];

/// What no role may reach for: the root, the api's modules, and (below) every other role.
const NEVER: [&str; 3] = ["runtime", "http", "cmo_service"];

/// The top-level modules a file names after `crate::`: in paths (`crate::bus::Bus`), and in
/// grouped imports (`use crate::{bus, runtime::Context}`), whose every top-level name counts.
fn crate_modules(source: &str) -> Vec<String> {
    let ident = |text: &str| -> String { text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut modules = Vec::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            modules.push(ident(rest));
            continue;
        };
        // The names at the group's top level: after `{` and after each `,` outside inner braces.
        let mut depth = 0;
        let mut starts = vec![0];
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => starts.push(i + 1),
                _ => {}
            }
        }
        modules.extend(starts.into_iter().map(|start| ident(group[start..].trim_start())));
    }
    modules.retain(|name| !name.is_empty());
    modules
}

#[test]
fn no_role_imports_the_composition_root_the_api_or_another_role() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (role, files) in ROLES {
        for file in files {
            let source = std::fs::read_to_string(src.join(file)).expect("a role's source");
            for module in crate_modules(&source) {
                let other_role = ROLES.iter().any(|(r, _)| *r == module && *r != role);
                if other_role || NEVER.contains(&module.as_str()) {
                    found.push(format!("src/{file} uses crate::{module}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "roles reaching outside their room:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_import_reader_sees_paths_grouped_imports_and_code() {
    let modules = crate_modules("use crate::bus::{self, Bus};\nlet x = crate::runtime::Role::Api;");
    assert_eq!(modules, ["bus", "runtime"]);
    let grouped = crate_modules("use crate::{\n    activity,\n    calls::{CallBook, Claim},\n    http::Auth,\n};");
    assert_eq!(grouped, ["activity", "calls", "http"]);
}
