//! The Web Worker that holds the model (trunk builds it with `data-type="worker"`).

fn main() {
    #[cfg(target_arch = "wasm32")]
    web::worker::start();
}
