//! `culex-loadgen`: the capacity-planning MQTT load generator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    println!("culex-loadgen {}", env!("CARGO_PKG_VERSION"));
}
