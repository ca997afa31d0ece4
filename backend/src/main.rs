//! `radlens`: attention maps and robustness studies for medical vision-language models.

fn main() -> std::process::ExitCode {
    radlens::run_main()
}
