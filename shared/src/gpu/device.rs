//! The wgpu device: adapter and queue, buffer allocation within the adapter's limits, memory
//! accounting and error capture; recording work on it is in `dispatch`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use candle_core::{Error, Result};
use wgpu::util::DeviceExt;

use super::counters::{Counters, GpuCounters};
use super::kernels::Kernel;
use super::pool::{size_class, GpuBuffer, Memory, PoolRef};

mod dispatch;

pub(crate) use dispatch::{grid, MAX_GROUPS};
use dispatch::{Pending, Pipeline};

/// A WebGPU device and its state; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct GpuDevice(Arc<Inner>);

struct Inner {
    // Kept alive for the device's lifetime (the adapter and device borrow nothing from it,
    // but dropping the instance first is not guaranteed safe on every backend).
    _instance: wgpu::Instance,
    adapter: wgpu::Adapter,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    device: wgpu::Device,
    queue: wgpu::Queue,
    modules: Mutex<HashMap<Kernel, wgpu::ShaderModule>>,
    /// Pipelines with their (derived) bind group layout, by kernel, entry point and format.
    pipelines: Mutex<HashMap<(Kernel, &'static str, u32), Pipeline>>,
    pending: Mutex<Pending>,
    pool: PoolRef,
    memory: Arc<Memory>,
    /// A 4-byte buffer bound where a kernel's optional input is absent.
    placeholder: Arc<GpuBuffer>,
    counters: Counters,
    /// The first error the device reported on its own (validation, out of memory): wgpu's
    /// default would panic natively and only log in the browser; readbacks return it instead.
    error: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuDevice({} via {:?})", self.0.info.name, self.0.info.backend)
    }
}

/// An error in the engine, as candle's error type (what the `Backend` trait returns).
pub(crate) fn gpu_err(msg: impl Into<String>) -> Error {
    Error::Msg(msg.into())
}

/// Locks a mutex, reporting poisoning as an error rather than panicking again.
fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| gpu_err("gpu device state poisoned by a panic"))
}

impl GpuDevice {
    /// Opens the default high-performance adapter, asking for its full limits (so buffers
    /// above the WebGPU defaults work where the hardware allows them).
    pub async fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                // wgpu lists every backend it was built without; in a browser only one matters.
                if cfg!(target_arch = "wasm32") {
                    gpu_err("no WebGPU adapter: this browser has no WebGPU, or it is switched off")
                } else {
                    gpu_err(format!("no WebGPU adapter: {e}"))
                }
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("caption-model"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err(format!("WebGPU device on {}: {e}", info.name)))?;
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut first) = slot.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }));
        let pending = Pending::new(&device);
        let memory = Arc::<Memory>::default();
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("placeholder"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        memory.add(4);
        let placeholder = Arc::new(GpuBuffer::new(memory.new_id(), placeholder, None, memory.clone()));
        Ok(Self(Arc::new(Inner {
            _instance: instance,
            adapter,
            info,
            limits,
            device,
            queue,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pending: Mutex::new(pending),
            pool: PoolRef::default(),
            memory,
            placeholder,
            counters: Counters::default(),
            error,
        })))
    }

    /// [`GpuDevice::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// Fails with the first error the device reported since it was opened, if any (the work
    /// it concerns produced nothing usable).
    pub(crate) fn check_error(&self) -> Result<()> {
        match lock(&self.0.error)?.as_ref() {
            Some(e) => Err(gpu_err(format!("the GPU reported an error: {e}"))),
            None => Ok(()),
        }
    }

    /// The adapter's name and graphics API, e.g. "llvmpipe (LLVM 15.0.6, 256 bits), Vulkan".
    pub fn adapter_name(&self) -> String {
        // Browsers may hide the adapter's name; the driver or the API then says what it is.
        let info = &self.0.info;
        let name = [&info.name, &info.driver, &info.driver_info]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("unnamed adapter", |s| s.as_str());
        format!("{name}, {:?}", info.backend)
    }

    /// Bytes of storage buffers held now: weights, activations and the reuse pool.
    pub fn allocated_bytes(&self) -> u64 {
        self.0.memory.live()
    }

    /// The most bytes of storage buffers held at once since the device was opened.
    pub fn peak_bytes(&self) -> u64 {
        self.0.memory.peak()
    }

    /// What the engine has asked of the GPU since the device was opened (dispatches, bind
    /// groups, bytes moved, CPU time recording); subtract two snapshots to count a span.
    pub fn counters(&self) -> GpuCounters {
        self.0.counters.snapshot()
    }

    /// The adapter's description (name, backend, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }

    /// The adapter the device was opened on.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.0.adapter
    }

    /// The limits the device was created with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }

    /// Whether two handles are the same device.
    pub fn same_device(&self, other: &GpuDevice) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The largest buffer a kernel may bind.
    pub fn max_binding_bytes(&self) -> u64 {
        let l = &self.0.limits;
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    /// Checks that `bytes` fit one storage binding; `what` names the tensor in the error.
    pub fn check_size(&self, bytes: u64, what: &str) -> Result<()> {
        let l = &self.0.limits;
        if bytes > l.max_storage_buffer_binding_size || bytes > l.max_buffer_size {
            return Err(gpu_err(format!(
                "{what} needs {bytes} bytes on the GPU, more than the adapter allows in one buffer \
                 (max_storage_buffer_binding_size {}, max_buffer_size {})",
                l.max_storage_buffer_binding_size, l.max_buffer_size
            )));
        }
        Ok(())
    }

    /// An uninitialised storage buffer of at least `bytes` (at least 4: empty bindings are
    /// invalid), recycled from the pool when one of its size class is free.
    pub(crate) fn storage(&self, bytes: u64, what: &str) -> Result<Arc<GpuBuffer>> {
        self.check_size(bytes, what)?;
        let class = size_class(bytes);
        // Rounding up must not push a buffer that fits over the binding limit.
        let size = if class <= self.max_binding_bytes() {
            class
        } else {
            bytes.max(4).next_multiple_of(4)
        };
        let recycled = lock(&self.0.pool)?.take(size);
        let (id, buf) = match recycled {
            Some(b) => b,
            None => {
                self.0.memory.add(size);
                let buf = self.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (self.0.memory.new_id(), buf)
            }
        };
        Ok(Arc::new(GpuBuffer::new(
            id,
            buf,
            Some(self.0.pool.clone()),
            self.0.memory.clone(),
        )))
    }

    /// A storage buffer holding `words` that lives about as long as a decoding step (ids, an
    /// attention mask): recycled from the pool, so that the next step binds the same buffer
    /// (and its cached bind groups). With nothing recorded it is written through the queue;
    /// otherwise a queue write would land before recorded work that may still read the
    /// recycled buffer, so the words are copied in by the encoder, in order.
    pub(crate) fn upload_transient(&self, words: &[u32], what: &str) -> Result<Arc<GpuBuffer>> {
        let buf = self.storage(words.len() as u64 * 4, what)?;
        if words.is_empty() {
            return Ok(buf);
        }
        self.0.counters.upload(words.len() as u64 * 4);
        let bytes: &[u8] = bytemuck::cast_slice(words);
        let mut pending = lock(&self.0.pending)?;
        if !pending.has_work() {
            self.0.queue.write_buffer(&buf, 0, bytes);
            return Ok(buf);
        }
        let staging = self
            .0
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("upload"),
                contents: bytes,
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        pending.copy(&self.0.device, &staging, &buf, bytes.len() as u64);
        Ok(buf)
    }

    /// A storage buffer holding `words` (written at creation, so no queue ordering applies).
    pub(crate) fn upload(&self, words: &[u32], what: &str) -> Result<Arc<GpuBuffer>> {
        self.check_size(words.len() as u64 * 4, what)?;
        self.0.counters.upload(words.len() as u64 * 4);
        let pad = [0u32];
        let contents: &[u32] = if words.is_empty() { &pad } else { words };
        let buf = self
            .0
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(contents),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            });
        self.0.memory.add(buf.size());
        Ok(Arc::new(GpuBuffer::new(
            self.0.memory.new_id(),
            buf,
            None,
            self.0.memory.clone(),
        )))
    }

    /// A 4-byte buffer to bind where a kernel's optional input is absent (never written).
    pub(crate) fn placeholder(&self) -> &GpuBuffer {
        &self.0.placeholder
    }

    /// The wgpu device (natively, for waiting on mapped buffers).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wgpu_device(&self) -> &wgpu::Device {
        &self.0.device
    }
}
