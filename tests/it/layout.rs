//! The layout rules the code keeps: each role under `src/roles/` knows the domain, the bus, the
//! clients, the store, the security module and the settings (the api also the CMO operations),
//! never the composition root that starts it or another role; and no two top-level modules
//! import each other, even through others.

use std::path::{Path, PathBuf};

/// What any role may use besides its own files and what `src/roles/mod.rs` holds for all.
const OPEN_TO_ROLES: [&str; 7] = ["domain", "bus", "clients", "store", "security", "config", "telemetry"];

/// The paths a source file names after `crate::`, each cut to its first two segments and with
/// grouped imports spread out: `use crate::{bus, roles::{api, sms::Deps}}` names `bus`,
/// `roles::api` and `roles::sms`.
fn crate_paths(source: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in source.match_indices("crate::") {
        spread(&source[at + "crate::".len()..], Vec::new(), &mut paths);
    }
    paths.retain(|path| !path.is_empty());
    paths
}

/// Reads one path tree from the start of `text` (after a `::`) onto `prefix`.
fn spread(text: &str, prefix: Vec<String>, into: &mut Vec<Vec<String>>) {
    if prefix.len() == 2 {
        into.push(prefix);
        return;
    }
    let Some(group) = text.strip_prefix('{') else {
        let ident: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let rest = &text[ident.len()..];
        let mut path = prefix;
        if !ident.is_empty() && ident != "self" {
            path.push(ident);
        }
        match rest.strip_prefix("::") {
            Some(rest) if path.len() < 2 => spread(rest, path, into),
            _ => into.push(path),
        }
        return;
    };
    // The members of the group: after `{` and after each `,` outside inner braces.
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
    for start in starts {
        spread(group[start..].trim_start(), prefix.clone(), into);
    }
}

/// The top-level modules a file imports.
fn crate_modules(source: &str) -> Vec<String> {
    let mut modules: Vec<String> = crate_paths(source).into_iter().map(|path| path[0].clone()).collect();
    modules.dedup();
    modules
}

/// Each role (a file or a directory under `src/roles/`) with its source files.
fn roles(src: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let mut roles = Vec::new();
    for entry in std::fs::read_dir(src.join("roles")).expect("src/roles").flatten() {
        let path = entry.path();
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            roles.push((name, files));
        } else if name != "mod" {
            roles.push((name, vec![path]));
        }
    }
    roles.sort();
    roles
}

/// The names a role file reaches in `src/roles/mod.rs` through `super::` (`super::sms` from
/// `roles/caller.rs`, `super::super::sms` from `roles/api/views.rs`): another role, if it is one.
fn roles_reached_through_super(file: &Path, src: &Path, source: &str) -> Vec<String> {
    let depth = file
        .strip_prefix(src.join("roles"))
        .map_or(0, |r| r.components().count());
    // `roles/x.rs` and `roles/x/mod.rs` are one level below roles; `roles/x/y.rs` two.
    let levels = if file.file_name().is_some_and(|n| n == "mod.rs") {
        depth - 1
    } else {
        depth
    };
    let prefix = "super::".repeat(levels);
    source
        .match_indices(&prefix)
        .map(|(at, _)| {
            let rest = &source[at + prefix.len()..];
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty() && name != "super")
        .collect()
}

#[test]
fn no_role_imports_the_composition_root_or_another_role() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let roles = roles(&src);
    let names: Vec<&str> = roles.iter().map(|(name, _)| name.as_str()).collect();
    for expected in ["activity", "api", "caller", "finalizer", "poller", "sms", "status"] {
        assert!(
            names.contains(&expected),
            "src/roles/ has the {expected} role: {names:?}"
        );
    }
    let mut found = Vec::new();
    for (role, files) in &roles {
        for file in files {
            let source = std::fs::read_to_string(file).expect("a role's source");
            let shown = file.strip_prefix(&src).unwrap_or(file).display().to_string();
            for path in crate_paths(&source) {
                let allowed = match path[0].as_str() {
                    "roles" => path
                        .get(1)
                        .is_none_or(|second| second == role || !names.contains(&second.as_str())),
                    "cmo" => role == "api",
                    top => OPEN_TO_ROLES.contains(&top),
                };
                if !allowed {
                    found.push(format!("src/{shown} uses crate::{}", path.join("::")));
                }
            }
            for name in roles_reached_through_super(file, &src, &source) {
                if name != *role && names.contains(&name.as_str()) {
                    found.push(format!("src/{shown} reaches the {name} role through super::"));
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
            if matches!(module.as_str(), "roles" | "app") {
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
    let paths = crate_paths("use crate::bus::{self, Bus};\nlet x = crate::app::Role::Api;");
    assert_eq!(paths, [vec!["bus"], vec!["bus", "Bus"], vec!["app", "Role"]]);
    let grouped = crate_paths("use crate::{\n    bus,\n    roles::{api, sms::Deps},\n    store::Store,\n};");
    assert_eq!(
        grouped,
        [
            vec!["bus"],
            vec!["roles", "api"],
            vec!["roles", "sms"],
            vec!["store", "Store"]
        ]
    );
    assert_eq!(crate_modules("use crate::{bus, roles::{api, sms}};"), ["bus", "roles"]);
}

#[test]
fn a_role_reaching_a_sibling_through_super_is_seen() {
    let src = Path::new("/x/src");
    let file = Path::new("/x/src/roles/api/views.rs");
    let reached = roles_reached_through_super(file, src, "use super::super::sms::Deps;\nuse super::auth;");
    assert_eq!(reached, ["sms"]);
    let single = roles_reached_through_super(Path::new("/x/src/roles/caller.rs"), src, "use super::OutboundError;");
    assert_eq!(single, ["OutboundError"]);
}

/// The top-level module a source file belongs to (`src/roles/api/views.rs` is `roles`); `None` for the
/// crate roots.
fn module_of(file: &Path, src: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
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
