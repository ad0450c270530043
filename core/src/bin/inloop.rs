//! The `inloop` command: see [`inloop_core::cli`].

fn main() {
    // Lossy, not `std::env::args()`, which panics on an argument that is not valid UTF-8.
    let args = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(inloop_core::cli::main_with_args(args));
}
