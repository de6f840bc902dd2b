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

/// The CMO operations serve REST and NATS alike: they know neither transport, nor the root.
#[test]
fn the_cmo_operations_import_no_transport() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("cmo"), &mut files);
    assert!(!files.is_empty(), "src/cmo has the operations");
    let mut found = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a source file");
        for module in crate_modules(&source) {
            if NEVER.contains(&module.as_str()) {
                found.push(format!("{} uses crate::{module}", file.display()));
            }
        }
        if source.contains("axum::") || source.contains("async_nats::service") {
            found.push(format!("{} uses a transport's types", file.display()));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_import_reader_sees_paths_grouped_imports_and_code() {
    let modules = crate_modules("use crate::bus::{self, Bus};\nlet x = crate::runtime::Role::Api;");
    assert_eq!(modules, ["bus", "runtime"]);
    let grouped = crate_modules("use crate::{\n    activity,\n    calls::{CallBook, Claim},\n    http::Auth,\n};");
    assert_eq!(grouped, ["activity", "calls", "http"]);
}

/// The top-level module a source file belongs to (`src/http/admin.rs` is `http`); `None` for the
/// crate roots.
fn module_of(file: &Path, src: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every cycle of top-level modules that import one another, each as `a -> b -> a`.
fn import_cycles(edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Vec<String> {
    let mut cycles = Vec::new();
    // A path from `start` back to itself through modules after it in order: each cycle once.
    fn walk(
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        let Some(next) = edges.get(path.last().expect("a path")) else {
            return;
        };
        for module in next {
            if module == start {
                cycles.push(format!("{} -> {start}", path.join(" -> ")));
            } else if module.as_str() > start && !path.contains(module) {
                path.push(module.clone());
                walk(edges, start, path, cycles);
                path.pop();
            }
        }
    }
    for start in edges.keys() {
        walk(edges, start, &mut vec![start.clone()], &mut cycles);
    }
    cycles
}

#[test]
fn no_two_top_level_modules_import_each_other_even_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for file in &files {
        let Some(module) = module_of(file, &src) else {
            continue;
        };
        let source = std::fs::read_to_string(file).expect("a source file");
        let imports = edges.entry(module.clone()).or_default();
        imports.extend(crate_modules(&source).into_iter().filter(|m| *m != module));
    }
    let cycles = import_cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import circles among src/ modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_circle_through_a_third_module_and_none_in_a_tree() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut edges = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        for (from, to) in pairs {
            edges.entry((*from).into()).or_default().insert((*to).into());
        }
        edges
    };
    assert_eq!(
        import_cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        ["a -> b -> c -> a"]
    );
    assert!(import_cycles(&graph(&[("a", "b"), ("a", "c"), ("b", "c")])).is_empty());
}
