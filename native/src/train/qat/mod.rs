//! Quantization-aware training and distillation into an export: a second model rounded exactly
//! as the q8/q4 export will store it ([`rounded`]), optionally on kept grids of block scales
//! ([`block_grid`]), trained toward the targets or toward a frozen teacher ([`distill`]).

pub mod block_grid;
pub mod distill;
pub mod rounded;
