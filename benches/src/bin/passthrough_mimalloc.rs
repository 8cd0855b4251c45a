//! S2b-mi of the load benchmark: the bare Pingora passthrough (`passthrough.rs`) with the global
//! allocator the gateway ships (mimalloc), so that S2 / S2b-mi compares our own code like for like,
//! while S2b stays Pingora as it comes (glibc malloc).
//!
//! Usage: as `passthrough`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "passthrough.rs"]
mod passthrough;

fn main() -> std::process::ExitCode {
    passthrough::main()
}
