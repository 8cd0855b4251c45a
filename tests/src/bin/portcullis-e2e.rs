//! The real `portcullis` command line, built inside the tests crate so that the e2e suite can
//! spawn it through `CARGO_BIN_EXE_portcullis-e2e` (cargo only exposes binaries of the package
//! under test to its integration tests). Same global allocator as the shipped binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
