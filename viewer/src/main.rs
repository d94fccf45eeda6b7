//! Entry point of the wasm binary: everything lives in the library so it can be tested natively.

fn main() {
    memlens_viewer::mount();
}
