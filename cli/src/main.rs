//! The `interlock` command (see `interlock --help`).

fn main() {
    std::process::exit(interlock_cli::run(std::env::args_os()));
}
