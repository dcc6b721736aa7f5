//! What the engine asks of the GPU, counted: dispatches, bind groups created, bytes uploaded
//! and read back, and the CPU time spent recording work and submitting it. `native bench webgpu`
//! prints them per generated token; a test bounds the dispatches of a decoding step.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the device was opened (see [`GpuCounters`] for a snapshot).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    dispatches: AtomicU64,
    bind_groups: AtomicU64,
    uploaded: AtomicU64,
    read_back: AtomicU64,
    record_ns: AtomicU64,
    submit_ns: AtomicU64,
}

/// A snapshot of a device's counters; subtract two with [`GpuCounters::since`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuCounters {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Bind groups created (the rest were reused from the cache).
    pub bind_groups: u64,
    /// Bytes written to the GPU: buffer uploads and parameter blocks.
    pub bytes_uploaded: u64,
    /// Bytes read back to the host.
    pub bytes_read_back: u64,
    /// CPU nanoseconds spent recording dispatches: parameters, bind groups, commands (0 in
    /// the browser, which has no monotonic clock in `std`).
    pub record_ns: u64,
    /// CPU nanoseconds spent in submissions (on lavapipe, a CPU driver, this includes running
    /// the work; 0 in the browser).
    pub submit_ns: u64,
}

impl GpuCounters {
    /// The counts from `earlier` to `self`; 0 where `earlier` counted more (the difference of
    /// two runs' timings can be negative: `bench webgpu` subtracts a short caption's from a
    /// long one's).
    pub fn since(&self, earlier: &GpuCounters) -> GpuCounters {
        GpuCounters {
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            bind_groups: self.bind_groups.saturating_sub(earlier.bind_groups),
            bytes_uploaded: self.bytes_uploaded.saturating_sub(earlier.bytes_uploaded),
            bytes_read_back: self.bytes_read_back.saturating_sub(earlier.bytes_read_back),
            record_ns: self.record_ns.saturating_sub(earlier.record_ns),
            submit_ns: self.submit_ns.saturating_sub(earlier.submit_ns),
        }
    }
}

impl Counters {
    /// Counts one dispatch.
    pub(crate) fn dispatch(&self) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a bind group created.
    pub(crate) fn bind_group(&self) {
        self.bind_groups.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes written to the GPU.
    pub(crate) fn upload(&self, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts bytes read back.
    pub(crate) fn read_back(&self, bytes: u64) {
        self.read_back.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds the time since `start` (from [`Counters::clock`]) to the recording time.
    pub(crate) fn recorded(&self, start: Clock) {
        self.record_ns.fetch_add(start.elapsed_ns(), Ordering::Relaxed);
    }

    /// Adds the time since `start` to the submission time.
    pub(crate) fn submitted(&self, start: Clock) {
        self.submit_ns.fetch_add(start.elapsed_ns(), Ordering::Relaxed);
    }

    /// The current totals.
    pub(crate) fn snapshot(&self) -> GpuCounters {
        GpuCounters {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            bind_groups: self.bind_groups.load(Ordering::Relaxed),
            bytes_uploaded: self.uploaded.load(Ordering::Relaxed),
            bytes_read_back: self.read_back.load(Ordering::Relaxed),
            record_ns: self.record_ns.load(Ordering::Relaxed),
            submit_ns: self.submit_ns.load(Ordering::Relaxed),
        }
    }

    /// A start time for [`Counters::recorded`].
    pub(crate) fn clock() -> Clock {
        Clock {
            #[cfg(not(target_arch = "wasm32"))]
            at: std::time::Instant::now(),
        }
    }
}

/// A start time: natively an `Instant`; nothing in the browser, whose `std` has no clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    #[cfg(not(target_arch = "wasm32"))]
    at: std::time::Instant,
}

impl Clock {
    /// Nanoseconds since the start (0 in the browser).
    fn elapsed_ns(self) -> u64 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.at.elapsed().as_nanos() as u64;
        #[cfg(target_arch = "wasm32")]
        0
    }
}

#[cfg(test)]
mod tests {
    use super::GpuCounters;

    #[test]
    fn since_gives_the_differences_and_0_where_the_earlier_count_is_larger() {
        let earlier = GpuCounters {
            dispatches: 10,
            record_ns: 5_000,
            submit_ns: 7,
            ..Default::default()
        };
        let later = GpuCounters {
            dispatches: 124,
            record_ns: 4_000,
            submit_ns: 9,
            ..Default::default()
        };
        let d = later.since(&earlier);
        assert_eq!((d.dispatches, d.record_ns, d.submit_ns), (114, 0, 2));
    }
}
