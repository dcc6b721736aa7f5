//! Reuse of intermediate buffers: a forward pass allocates one output per op, and
//! creating GPU buffers costs far more than the small kernels of a decode step. Dropped
//! outputs go back to a free list by size class and are handed out again. Reuse is safe
//! because all work runs in one queue, in order: a later kernel writing a recycled buffer
//! runs after every earlier kernel that read it.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most bytes kept in free lists (beyond that, dropped buffers are freed): enough for a decode
/// step's intermediates, small next to a model (the GPU memory budget is 1.5x the folder).
const MAX_POOLED_BYTES: u64 = 32 << 20;

/// Free buffers by size, each with its id (see [`GpuBuffer::id`]).
#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<(u64, wgpu::Buffer)>>,
    bytes: u64,
}

/// Shared handle to a device's pool.
pub(crate) type PoolRef = Arc<Mutex<Pool>>;

/// The size class of a request: rounded up to a quarter of its power of two (at most 25%
/// waste), so that buffers of nearby sizes (a growing key cache) are shared.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let step = (bytes.next_power_of_two() / 8).max(4);
    bytes.next_multiple_of(step)
}

impl Pool {
    /// A free buffer of exactly `size` bytes and its id, if any.
    pub(crate) fn take(&mut self, size: u64) -> Option<(u64, wgpu::Buffer)> {
        let b = self.free.get_mut(&size)?.pop()?;
        self.bytes -= size;
        Some(b)
    }
}

/// Bytes of storage buffers a device holds (weights, activations, pooled buffers), and the
/// most it has held; the buffers' ids, and those of the buffers freed since the bind group
/// cache last looked (its entries that name them must go, or they would keep them alive).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    live: AtomicU64,
    peak: AtomicU64,
    next_id: AtomicU64,
    freed: Mutex<Vec<u64>>,
}

impl Memory {
    /// A new buffer id (never 0, which the parameter ring uses).
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The ids of the buffers freed since the last call.
    pub(crate) fn take_freed(&self) -> Vec<u64> {
        self.freed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }

    /// Counts a newly created buffer.
    pub(crate) fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The most bytes held at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// A storage buffer that returns to its device's pool when dropped (weights and other
/// uploads are not pooled).
pub struct GpuBuffer {
    id: u64,
    buf: Option<wgpu::Buffer>,
    pool: Option<PoolRef>,
    memory: Arc<Memory>,
}

impl GpuBuffer {
    /// Wraps `buf` (whose id is `id`), counted in `memory` until freed; it goes back to
    /// `pool` on drop when one is given (and stays counted there).
    pub(crate) fn new(id: u64, buf: wgpu::Buffer, pool: Option<PoolRef>, memory: Arc<Memory>) -> Self {
        Self {
            id,
            buf: Some(buf),
            pool,
            memory,
        }
    }

    /// The buffer's id: unique among the device's buffers, kept while the pool recycles it
    /// (the bind group cache's key).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Deref for GpuBuffer {
    type Target = wgpu::Buffer;

    fn deref(&self) -> &wgpu::Buffer {
        // Only `drop` takes the buffer out.
        self.buf.as_ref().expect("buffer present until dropped")
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else {
            return;
        };
        let size = buf.size();
        if let Some(Ok(mut p)) = self.pool.take().as_ref().map(|p| p.lock()) {
            if p.bytes + size <= MAX_POOLED_BYTES {
                p.bytes += size;
                p.free.entry(size).or_default().push((self.id, buf));
                return;
            }
        }
        self.memory.live.fetch_sub(size, Ordering::Relaxed);
        if let Ok(mut freed) = self.memory.freed.lock() {
            freed.push(self.id);
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuBuffer({} bytes)",
            self.buf.as_ref().map_or(0, |b| b.size())
        )
    }
}
