//! Thin binary: all behaviour lives in the library so integration tests drive the same code.
fn main() -> std::process::ExitCode {
    archy::main_entry()
}
