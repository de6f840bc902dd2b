//! `surreal`, as SurrealDB's own binary starts it (`surreal start ...`).

fn main() -> std::process::ExitCode {
    surrealdb_server::init(surrealdb_server::core::CommunityComposer())
}
