//! Reading results back to the host: blocking natively (the tests, the native app), and
//! awaitable for the browser, whose event loop resolves the mapping (it cannot block).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use candle_core::Result;

use super::device::{gpu_err, GpuDevice};

/// The outcome of `map_async`, filled in by its callback.
#[derive(Default)]
struct MapState {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// Resolves when the staging buffer is mapped.
struct Mapped(Arc<Mutex<MapState>>);

impl Future for Mapped {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Ok(mut s) = self.0.lock() else {
            return Poll::Ready(Err(gpu_err("readback state poisoned by a panic")));
        };
        match s.result.take() {
            Some(r) => Poll::Ready(r.map_err(|e| gpu_err(format!("mapping the readback buffer: {e}")))),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Starts mapping `staging`; the returned future resolves when it is mapped.
fn map(staging: &wgpu::Buffer) -> Mapped {
    let state = Arc::new(Mutex::new(MapState::default()));
    let cb_state = state.clone();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        if let Ok(mut s) = cb_state.lock() {
            s.result = Some(r);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    });
    Mapped(state)
}

/// The contents of a mapped staging buffer.
fn take(staging: wgpu::Buffer) -> Result<Vec<u8>> {
    let data = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| gpu_err(format!("reading the readback buffer: {e}")))?
        .to_vec();
    staging.unmap();
    Ok(data)
}

impl GpuDevice {
    /// The first `bytes` of `buffer`, after all recorded work (blocks; native only: the
    /// browser cannot block on the GPU, use [`GpuDevice::read_async`] there).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn read(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.copy_to_staging(buffer, bytes)?;
        let mapped = map(&staging);
        self.wgpu_device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err(format!("waiting for the GPU: {e}")))?;
        pollster::block_on(mapped)?;
        self.check_error()?;
        take(staging)
    }

    /// Blocking readback is impossible in the browser: use [`GpuDevice::read_async`].
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn read(&self, _buffer: &wgpu::Buffer, _bytes: u64) -> Result<Vec<u8>> {
        Err(gpu_err(
            "blocking readback is not available in the browser: use the async readers",
        ))
    }

    /// The first `bytes` of `buffer`, after all recorded work, without blocking in the
    /// browser. Natively it blocks and is ready at once, as the blocking decoders need: a
    /// device shared between threads may run this mapping's callback on another thread's
    /// poll, so a poll here does not guarantee the mapping is done when it returns.
    pub(crate) async fn read_async(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.read(buffer, bytes)
        }
        #[cfg(target_arch = "wasm32")]
        {
            if bytes == 0 {
                return Ok(Vec::new());
            }
            let staging = self.copy_to_staging(buffer, bytes)?;
            // The browser drives the mapping's callback itself.
            map(&staging).await?;
            self.check_error()?;
            take(staging)
        }
    }
}
