//! The `lossc` command.

fn main() {
    // Deeply nested sources are rejected by the parser, but the stages recurse over what it
    // accepts: give them a generous stack.
    let child = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(lossc::cli::main)
        .expect("spawning the main thread");
    let code = child.join().unwrap_or(101);
    std::process::exit(code);
}
