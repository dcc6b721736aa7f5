//! The wgpu device: adapter and queue, the pipeline cache, buffer allocation within the
//! adapter's limits, batched command encoding and readback.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use candle_core::{Error, Result};
use wgpu::util::DeviceExt;

use super::kernels::Kernel;
use super::pool::{size_class, GpuBuffer, Memory, PoolRef};

/// Dispatches recorded before the pending encoder is submitted even without a readback, so
/// that the GPU starts working during long forward passes.
const SUBMIT_EVERY: usize = 64;
/// Words of dispatch parameters (the kernels' uniform block).
const PARAM_WORDS: usize = 64;
/// Workgroups per grid dimension that every adapter allows.
pub(crate) const MAX_GROUPS: u32 = 65535;

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
    /// The first error the device reported on its own (validation, out of memory): wgpu's
    /// default would panic natively and only log in the browser; readbacks return it instead.
    error: Arc<Mutex<Option<String>>>,
}

/// A compute pipeline and its bind group layout (looked up once, not per dispatch).
#[derive(Clone)]
struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Dispatches recorded but not yet submitted.
#[derive(Default)]
struct Pending {
    /// The open compute pass: consecutive dispatches share one (wgpu orders them); it is
    /// ended before copies and submission. Declared first so it drops before the encoder.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    passes: usize,
    /// Parameter blocks of the recorded dispatches: reusable once submitted (a queue write
    /// lands before the next submission, so it must not touch a block still to be read).
    uniforms_in_use: Vec<wgpu::Buffer>,
    /// Parameter blocks free for the next dispatches.
    uniforms_free: Vec<wgpu::Buffer>,
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
            .map_err(|e| gpu_err(format!("no WebGPU adapter: {e}")))?;
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
        Ok(Self(Arc::new(Inner {
            _instance: instance,
            adapter,
            info,
            limits,
            device,
            queue,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pending: Mutex::default(),
            pool: PoolRef::default(),
            memory: Arc::default(),
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
        let buf = match recycled {
            Some(b) => b,
            None => {
                self.0.memory.add(size);
                self.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }
        };
        Ok(Arc::new(GpuBuffer::new(
            buf,
            Some(self.0.pool.clone()),
            self.0.memory.clone(),
        )))
    }

    /// A storage buffer holding `words` (written at creation, so no queue ordering applies).
    pub(crate) fn upload(&self, words: &[u32], what: &str) -> Result<Arc<GpuBuffer>> {
        self.check_size(words.len() as u64 * 4, what)?;
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
        Ok(Arc::new(GpuBuffer::new(buf, None, self.0.memory.clone())))
    }

    /// The cached pipeline for `entry` of `kernel` with the weight format constant `fmt`.
    fn pipeline(&self, kernel: Kernel, entry: &'static str, fmt: u32) -> Result<Pipeline> {
        let key = (kernel, entry, fmt);
        if let Some(p) = lock(&self.0.pipelines)?.get(&key) {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = lock(&self.0.modules)?;
            modules
                .entry(kernel)
                .or_insert_with(|| {
                    self.0.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.name()),
                        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                    })
                })
                .clone()
        };
        let constants = [("FMT", fmt as f64)];
        let pipeline = self
            .0
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: if kernel.reads_weights() { &constants } else { &[] },
                    ..Default::default()
                },
                cache: None,
            });
        let layout = pipeline.get_bind_group_layout(0);
        let p = Pipeline { pipeline, layout };
        lock(&self.0.pipelines)?.insert(key, p.clone());
        Ok(p)
    }

    /// Records one dispatch of `groups` workgroups (x, y) with `params` at binding 0 and
    /// `buffers` at bindings 1, 2, ...; submits every [`SUBMIT_EVERY`] dispatches.
    pub(crate) fn dispatch(
        &self,
        kernel: Kernel,
        entry: &'static str,
        fmt: u32,
        params: &[u32],
        buffers: &[&GpuBuffer],
        groups: (u32, u32),
    ) -> Result<()> {
        if groups.0 == 0 || groups.1 == 0 {
            return Ok(());
        }
        if groups.0 > MAX_GROUPS || groups.1 > MAX_GROUPS {
            return Err(gpu_err(format!(
                "{entry}: grid {groups:?} over {MAX_GROUPS} workgroups per dimension"
            )));
        }
        if params.len() > PARAM_WORDS {
            return Err(gpu_err(format!("{entry}: {} parameter words", params.len())));
        }
        let pipeline = self.pipeline(kernel, entry, fmt)?;
        let mut words = [0u32; PARAM_WORDS];
        words[..params.len()].copy_from_slice(params);
        let device = &self.0.device;
        let mut pending = lock(&self.0.pending)?;
        let uniform = match pending.uniforms_free.pop() {
            Some(u) => u,
            None => device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: (PARAM_WORDS * 4) as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        self.0
            .queue
            .write_buffer(&uniform, 0, bytemuck::cast_slice(&words));
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        if pending.pass.is_none() {
            let encoder = pending
                .encoder
                .get_or_insert_with(|| device.create_command_encoder(&Default::default()));
            pending.pass = Some(encoder.begin_compute_pass(&Default::default()).forget_lifetime());
        }
        if let Some(pass) = pending.pass.as_mut() {
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        pending.uniforms_in_use.push(uniform);
        pending.passes += 1;
        if pending.passes >= SUBMIT_EVERY {
            self.submit(&mut pending);
        }
        Ok(())
    }

    /// Submits the recorded passes.
    fn submit(&self, pending: &mut Pending) {
        pending.pass = None;
        if let Some(encoder) = pending.encoder.take() {
            self.0.queue.submit([encoder.finish()]);
        }
        pending.passes = 0;
        let used = std::mem::take(&mut pending.uniforms_in_use);
        pending.uniforms_free.extend(used);
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) -> Result<()> {
        let mut pending = lock(&self.0.pending)?;
        self.submit(&mut pending);
        Ok(())
    }

    /// A mappable copy of the first `bytes` of `buffer`, taken after all recorded work;
    /// everything recorded is submitted.
    pub(crate) fn copy_to_staging(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<wgpu::Buffer> {
        let device = &self.0.device;
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut pending = lock(&self.0.pending)?;
        // A copy cannot be recorded inside a compute pass.
        pending.pass = None;
        let encoder = pending
            .encoder
            .get_or_insert_with(|| device.create_command_encoder(&Default::default()));
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.submit(&mut pending);
        Ok(staging)
    }

    /// The wgpu device (natively, for waiting on mapped buffers).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wgpu_device(&self) -> &wgpu::Device {
        &self.0.device
    }
}

/// A grid of at least `n` workgroups within the per-dimension limit (kernels recover the
/// linear index as x + y * groups_x and ignore the excess).
pub(crate) fn grid(n: usize) -> (u32, u32) {
    let max = MAX_GROUPS as usize;
    if n <= max {
        (n as u32, 1)
    } else {
        (max as u32, n.div_ceil(max) as u32)
    }
}
