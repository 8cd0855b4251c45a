//! The real `portcullis` command line, built inside the tests crate so that the e2e suite can
//! spawn it through `CARGO_BIN_EXE_portcullis-e2e` (cargo only exposes binaries of the package
//! under test to its integration tests).
fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
