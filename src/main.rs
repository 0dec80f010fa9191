//! The `hooksign` binary: everything lives in the library so tests can run the real thing.

fn main() -> std::process::ExitCode {
    hooksign::cli::main()
}
