//! `radlens`: attention maps and robustness studies for medical vision-language models.

// Counts heap bytes so `radlens bench` can report peak memory.
#[global_allocator]
static ALLOC: radlens::alloc_stats::CountingAlloc = radlens::alloc_stats::CountingAlloc;

fn main() -> std::process::ExitCode {
    radlens::run_main()
}
