//! diffkeeper-sidecar: see `diffkeeper_sidecar::app` (the crate is a library so integration
//! tests can reach its modules).

fn main() -> std::process::ExitCode {
    diffkeeper_sidecar::app::main()
}
