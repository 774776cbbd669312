//! `culex`: parse the command line, load the configuration, start the shards, wait for a
//! signal. Nothing else lives here.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    println!("culex {}", env!("CARGO_PKG_VERSION"));
}
