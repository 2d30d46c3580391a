//! The `lsoftmax` command: a thin entry into [`lsoftmax_host::cli`].
fn main() -> std::process::ExitCode {
    lsoftmax_host::cli::main()
}
