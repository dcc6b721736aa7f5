//! Deterministic data order and caption choice: pure functions of (seed, epoch, index), so a
//! resumed run reproduces the batches of the interrupted one.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood 2014), written out here rather than
//! taken from a crate so that the order can never change with a dependency's version.

/// Separates the streams drawn from one (seed, epoch): the order and the caption choice.
const STREAM_ORDER: u64 = 0x6f72_6465_7200_0001;
const STREAM_CAPTION: u64 = 0x6361_7074_696f_6e02;
const STREAM_DROPOUT: u64 = 0x6472_6f70_6f75_7403;

/// SplitMix64's output function: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64: a tiny, fast, well-distributed generator (not cryptographic).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A value in `0..n` (`n > 0`) by multiply-shift; the bias is below n / 2^64.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// A 64-bit key for (seed, epoch, stream): every argument changes the result.
fn key(seed: u64, epoch: u64, stream: u64) -> u64 {
    mix64(mix64(mix64(seed) ^ epoch) ^ stream)
}

/// The order in which the `n` samples are visited in `epoch`: a permutation of `0..n` drawn
/// (Fisher-Yates) from a generator seeded by (`seed`, `epoch`). The same arguments always give
/// the same order, on every platform; another epoch or seed gives another order.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(key(seed, epoch, STREAM_ORDER));
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// Which of a sample's `n_captions` captions is used in `epoch`: uniform over `0..n_captions`,
/// a pure function of (`seed`, `epoch`, `sample`) where `sample` is the index in the dataset
/// (not the position in the epoch). 0 when `n_captions` is 0 or 1.
pub fn caption_index(seed: u64, epoch: u64, sample: usize, n_captions: usize) -> usize {
    if n_captions <= 1 {
        return 0;
    }
    let mut rng = SplitMix64(key(seed, epoch, STREAM_CAPTION) ^ mix64(sample as u64));
    rng.below(n_captions)
}

/// The seed of a training step's dropout masks: a pure function of (`seed`, `step`).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    key(seed, step, STREAM_DROPOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (the reference C implementation).
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn caption_choice_is_roughly_uniform() {
        let mut counts = [0usize; 5];
        for s in 0..5000 {
            counts[caption_index(7, 3, s, 5)] += 1;
        }
        assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
    }
}
