/// mimalloc instead of glibc's malloc: Pingora allocates and frees several buffers and header maps
/// per request. Measured (benches/README.md, "Where the S2 − S2b gap is"): 14 % fewer
/// instructions per proxied request than glibc (jemalloc: 10 %), peak RSS +2 MiB; its v2 (the
/// workspace's `mimalloc` features) another 3 % over v3, which took a fresh page per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
