//! `culex-bench`: runs scenarios against Culex and its peers and writes `results/`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    println!("culex-bench {}", env!("CARGO_PKG_VERSION"));
}
