//! Recording work on the device: the pipeline cache, dispatches batched into one open compute
//! pass, their parameters and bind groups, submission, and the copies that readbacks map.
//!
//! A step of decoding records the same few hundred dispatches over and over, so nothing is
//! created per dispatch once the first step has run: pipelines and their layouts are cached;
//! bind groups are cached by the buffers they bind (the pool hands a step the same buffers as
//! the last one); the parameters go into one persistent uniform buffer, a 256-byte slot per
//! dispatch bound at a dynamic offset, and reach the GPU in one write per submission.
//! (Browsers have no push constants; a dynamic offset works everywhere.)

use std::collections::HashMap;

use candle_core::Result;

use super::{gpu_err, lock, GpuDevice};
use crate::gpu::counters::Counters;
use crate::gpu::kernels::Kernel;
use crate::gpu::pool::GpuBuffer;

/// Dispatches recorded before the pending encoder is submitted even without a readback, so
/// that the GPU starts working during long forward passes; also the parameter ring's slots.
pub(super) const SUBMIT_EVERY: usize = 64;
/// Words of dispatch parameters (the kernels' uniform block).
const PARAM_WORDS: usize = 64;
/// Bytes of a parameter slot: the block, at the uniform offset alignment every adapter
/// supports (WebGPU's `minUniformBufferOffsetAlignment` is at most 256).
pub(super) const SLOT_BYTES: u64 = 256;
/// Workgroups per grid dimension that every adapter allows.
pub(crate) const MAX_GROUPS: u32 = 65535;
/// Most storage buffers a kernel binds (WebGPU's default `maxStorageBuffersPerShaderStage`).
const MAX_BINDINGS: usize = 8;
/// Cached bind groups beyond which the cache starts afresh (a decoding step needs a few
/// hundred; shapes that change every step would otherwise grow it without bound).
const MAX_CACHED_BIND_GROUPS: usize = 4096;

/// A pipeline's key: kernel, entry point, specialisation word (see [`Kernel::constants`]).
type PipelineKey = (Kernel, &'static str, u32);

/// A compute pipeline and its bind group layout (looked up once, not per dispatch).
#[derive(Clone)]
pub(super) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// A bind group's key: the pipeline and the ids of the buffers bound at 1, 2, ...
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: PipelineKey,
    buffers: [u64; MAX_BINDINGS],
}

/// Dispatches recorded but not yet submitted, and the bind groups of earlier ones.
pub(super) struct Pending {
    /// The open compute pass: consecutive dispatches share one (wgpu orders them); it is
    /// ended before copies and submission. Declared first so it drops before the encoder.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    /// Dispatches recorded since the last submission (each owns the parameter slot of its
    /// index).
    passes: usize,
    /// The parameter slots of the recorded dispatches, written to `ring` at submission.
    params: Vec<u8>,
    /// The uniform buffer of [`SUBMIT_EVERY`] parameter slots.
    ring: wgpu::Buffer,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
}

impl Pending {
    /// Nothing recorded, the ring created on `device`.
    pub(super) fn new(device: &wgpu::Device) -> Self {
        Self {
            pass: None,
            encoder: None,
            passes: 0,
            params: Vec::with_capacity(SUBMIT_EVERY * SLOT_BYTES as usize),
            ring: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: SUBMIT_EVERY as u64 * SLOT_BYTES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            bind_groups: HashMap::new(),
        }
    }

    /// Whether work is recorded but not submitted (a queue write now would land before it).
    pub(super) fn has_work(&self) -> bool {
        self.encoder.is_some()
    }

    /// Records a copy of the first `bytes` of `src` into `dst` after the recorded work.
    pub(super) fn copy(&mut self, device: &wgpu::Device, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) {
        // A copy cannot be recorded inside a compute pass.
        self.pass = None;
        let encoder = self
            .encoder
            .get_or_insert_with(|| device.create_command_encoder(&Default::default()));
        encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
    }
}

/// The explicit bind group layout of a kernel entry binding `n` storage buffers: the
/// parameter slot at a dynamic offset, then the storage buffers as the module declares them.
fn bind_group_layout(device: &wgpu::Device, kernel: Kernel, n: usize) -> Result<wgpu::BindGroupLayout> {
    let writable = kernel.storage_bindings();
    if n > writable.len() {
        return Err(gpu_err(format!(
            "{}: {n} buffers for {} bindings",
            kernel.name(),
            writable.len()
        )));
    }
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(SLOT_BYTES),
        },
        count: None,
    }];
    for (i, &w) in writable[..n].iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: !w },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    Ok(device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(kernel.name()),
        entries: &entries,
    }))
}

impl GpuDevice {
    /// The cached pipeline for `entry` of `kernel` specialised by `spec` (its override
    /// constants, [`Kernel::constants`]), binding `n` storage buffers.
    fn pipeline(&self, key: PipelineKey, n: usize) -> Result<Pipeline> {
        if let Some(p) = lock(&self.0.pipelines)?.get(&key) {
            return Ok(p.clone());
        }
        let (kernel, entry, spec) = key;
        let device = &self.0.device;
        let module = {
            let mut modules = lock(&self.0.modules)?;
            modules
                .entry(kernel)
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.name()),
                        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                    })
                })
                .clone()
        };
        let layout = bind_group_layout(device, kernel, n)?;
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let constants = kernel.constants(spec);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                ..Default::default()
            },
            cache: None,
        });
        let p = Pipeline { pipeline, layout };
        lock(&self.0.pipelines)?.insert(key, p.clone());
        Ok(p)
    }

    /// The bind group of `buffers` for `pipeline`, from the cache or made (and cached).
    fn bind_group(
        &self,
        pending: &mut Pending,
        key: PipelineKey,
        pipeline: &Pipeline,
        buffers: &[&GpuBuffer],
    ) -> wgpu::BindGroup {
        // Entries naming a freed buffer would keep its memory alive: they go first.
        let freed = self.0.memory.take_freed();
        if !freed.is_empty() {
            pending
                .bind_groups
                .retain(|k, _| !k.buffers.iter().any(|id| freed.contains(id)));
        }
        let mut ids = [0; MAX_BINDINGS];
        for (slot, b) in ids.iter_mut().zip(buffers) {
            *slot = b.id();
        }
        let bind_key = BindKey {
            pipeline: key,
            buffers: ids,
        };
        if let Some(bg) = pending.bind_groups.get(&bind_key) {
            return bg.clone();
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &pending.ring,
                offset: 0,
                size: wgpu::BufferSize::new(SLOT_BYTES),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bg = self.0.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        self.0.counters.bind_group();
        if pending.bind_groups.len() >= MAX_CACHED_BIND_GROUPS {
            pending.bind_groups.clear();
        }
        pending.bind_groups.insert(bind_key, bg.clone());
        bg
    }

    /// Records one dispatch of `groups` workgroups (x, y) of `entry` specialised by `spec`
    /// (the weight format, see [`Kernel::constants`]) with `params` at binding 0 and `buffers`
    /// at bindings 1, 2, ...; submits every [`SUBMIT_EVERY`] dispatches.
    pub(crate) fn dispatch(
        &self,
        kernel: Kernel,
        entry: &'static str,
        spec: u32,
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
        if params.len() > PARAM_WORDS || buffers.len() > MAX_BINDINGS {
            return Err(gpu_err(format!(
                "{entry}: {} parameter words, {} buffers",
                params.len(),
                buffers.len()
            )));
        }
        let start = Counters::clock();
        let key = (kernel, entry, spec);
        let pipeline = self.pipeline(key, buffers.len())?;
        let mut pending = lock(&self.0.pending)?;
        let bind_group = self.bind_group(&mut pending, key, &pipeline, buffers);
        let slot = pending.passes as u64 * SLOT_BYTES;
        pending.params.extend_from_slice(bytemuck::cast_slice(params));
        pending.params.resize((slot + SLOT_BYTES) as usize, 0);
        let device = &self.0.device;
        if pending.pass.is_none() {
            let encoder = pending
                .encoder
                .get_or_insert_with(|| device.create_command_encoder(&Default::default()));
            pending.pass = Some(encoder.begin_compute_pass(&Default::default()).forget_lifetime());
        }
        if let Some(pass) = pending.pass.as_mut() {
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[slot as u32]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        pending.passes += 1;
        self.0.counters.dispatch();
        self.0.counters.recorded(start);
        if pending.passes >= SUBMIT_EVERY {
            self.submit(&mut pending);
        }
        Ok(())
    }

    /// Writes the recorded dispatches' parameters and submits them.
    fn submit(&self, pending: &mut Pending) {
        let start = Counters::clock();
        pending.pass = None;
        if !pending.params.is_empty() {
            // Lands before this submission's work, after every earlier submission's.
            self.0.queue.write_buffer(&pending.ring, 0, &pending.params);
            self.0.counters.upload(pending.params.len() as u64);
            pending.params.clear();
        }
        if let Some(encoder) = pending.encoder.take() {
            self.0.queue.submit([encoder.finish()]);
        }
        pending.passes = 0;
        self.0.counters.submitted(start);
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
        pending.copy(device, buffer, &staging, bytes);
        self.0.counters.read_back(bytes);
        self.submit(&mut pending);
        Ok(staging)
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
