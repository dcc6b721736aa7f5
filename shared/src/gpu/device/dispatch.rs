//! Recording work on the device: the pipeline cache, dispatches batched into one open compute
//! pass, submission, and the copies that readbacks map.

use candle_core::Result;

use super::{gpu_err, lock, GpuDevice};
use crate::gpu::counters::Counters;
use crate::gpu::kernels::Kernel;
use crate::gpu::pool::GpuBuffer;

/// Dispatches recorded before the pending encoder is submitted even without a readback, so
/// that the GPU starts working during long forward passes.
const SUBMIT_EVERY: usize = 64;
/// Words of dispatch parameters (the kernels' uniform block).
const PARAM_WORDS: usize = 64;
/// Workgroups per grid dimension that every adapter allows.
pub(crate) const MAX_GROUPS: u32 = 65535;

/// A compute pipeline and its bind group layout (looked up once, not per dispatch).
#[derive(Clone)]
pub(super) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Dispatches recorded but not yet submitted.
#[derive(Default)]
pub(super) struct Pending {
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

impl GpuDevice {
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
        let start = Counters::clock();
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
        self.0.counters.upload((PARAM_WORDS * 4) as u64);
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
        self.0.counters.bind_group();
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
        self.0.counters.dispatch();
        self.0.counters.recorded(start);
        if pending.passes >= SUBMIT_EVERY {
            self.submit(&mut pending);
        }
        Ok(())
    }

    /// Submits the recorded passes.
    fn submit(&self, pending: &mut Pending) {
        let start = Counters::clock();
        pending.pass = None;
        if let Some(encoder) = pending.encoder.take() {
            self.0.queue.submit([encoder.finish()]);
        }
        pending.passes = 0;
        let used = std::mem::take(&mut pending.uniforms_in_use);
        pending.uniforms_free.extend(used);
        self.0.counters.recorded(start);
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
