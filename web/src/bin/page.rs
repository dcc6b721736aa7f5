//! The page's wasm module (trunk builds one main app per page): everything the page does, in
//! Rust (`web::page`); the model runs in the `worker` binary.

fn main() {
    #[cfg(target_arch = "wasm32")]
    web::page::start();
}
