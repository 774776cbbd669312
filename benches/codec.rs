//! Codec benchmark: filled in by the codec issue.
fn main() {}
