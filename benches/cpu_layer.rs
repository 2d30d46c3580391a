//! CPU layer bench (filled in with the foundation bench).
fn main() {}
