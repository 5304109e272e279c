//! diffkeeper-sidecar: see `diffkeeper_sidecar::app` (the crate is a library so integration
//! tests can reach its modules).

// Only exported (as memcpy/memmove) in the x86_64 musl build; tested on any x86_64.
#[cfg(target_arch = "x86_64")]
#[cfg_attr(
    not(all(target_arch = "x86_64", target_env = "musl")),
    allow(dead_code)
)]
mod fastcopy;

fn main() -> std::process::ExitCode {
    diffkeeper_sidecar::app::main()
}
