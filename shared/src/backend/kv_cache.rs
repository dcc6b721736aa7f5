//! The keys and values a self-attention layer has seen, kept between decoding steps.

use candle_core::Result;

use super::Backend;

/// Cached keys and values of one self-attention layer, [N, H, C, Dh] each, of which the first
/// `len` positions along C are filled. The candle engine keeps exactly the rows and positions
/// (N = rows, C = len; grown by concatenation, reordered by selecting rows). The WebGPU engine
/// keeps room for more positions and writes new ones in place, and reorders rows lazily: `rows`
/// then says which stored row holds each position of each row.
#[derive(Debug, Clone)]
pub struct KvCache<T: Backend> {
    pub(crate) kv: Option<(T, T)>,
    pub(crate) len: usize,
    /// Per row, the stored row holding each cached position; empty: row b is stored row b.
    // Only the WebGPU engine keeps a row map.
    #[cfg_attr(not(feature = "webgpu"), allow(dead_code))]
    pub(crate) rows: Vec<Vec<u32>>,
}

impl<T: Backend> Default for KvCache<T> {
    fn default() -> Self {
        Self {
            kv: None,
            len: 0,
            rows: Vec::new(),
        }
    }
}

impl<T: Backend> KvCache<T> {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends new keys/values [B, H, S, Dh] by concatenation and returns the whole cached
    /// sequence (the cache must hold exactly `len` positions, as the candle engine's does).
    pub fn append(&mut self, k: T, v: T) -> Result<(T, T)> {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (T::cat(&[&pk, &k], 2)?, T::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.len = k.dim(2)?;
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Keeps/duplicates batch rows: new row i is old row `rows[i]`.
    pub fn select_rows(&mut self, rows: &T::Ids) -> Result<()> {
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((k.index_select(rows)?, v.index_select(rows)?));
        }
        Ok(())
    }
}
