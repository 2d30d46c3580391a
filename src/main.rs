//! The `lsoftmax` command: a thin entry into [`lsoftmax::cli`].
fn main() -> std::process::ExitCode {
    lsoftmax::cli::main()
}
