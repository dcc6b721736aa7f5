//! Batches prepared ahead of the step: while a step runs, a feeder thread reads, decodes,
//! preprocesses and tokenises the next batches (images on `dataset.train_ds.num_workers`
//! threads, or feature-cache reads and their f16→f32 conversion), in the epoch's order, at most
//! [`QUEUE_DEPTH`] batches ahead so memory stays flat. With `num_workers=0` each batch is
//! prepared on the step's own thread when it is asked for, as before.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::Device;

use super::forward::{prepare, Prepared};
use crate::data::feature_cache::FeatureCache;
use crate::data::{BatchBuilder, Dataset, Skipped};

/// Prepared batches waiting in the queue at most (one more is being prepared).
pub const QUEUE_DEPTH: usize = 2;

/// What batches are prepared from: the samples, the host-side batch builder and the cache.
#[derive(Clone)]
pub struct BatchSource {
    /// The split the steps draw from.
    pub data: Arc<Dataset>,
    /// Builds the tensors on the CPU (the step moves them to its device).
    pub builder: BatchBuilder,
    /// CLIP features, when the run reads them from the cache.
    pub cache: Option<Arc<FeatureCache>>,
}

/// One step's samples: their positions in the split and the caption picked for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepJob {
    /// Positions in the split.
    pub idx: Vec<usize>,
    /// Caption index of each sample.
    pub picks: Vec<usize>,
}

/// A batch as the step receives it.
pub struct FedBatch {
    /// The samples it was made of.
    pub job: StepJob,
    /// Its inputs; `None` when no sample could be read.
    pub inputs: Option<Prepared>,
    /// Samples left out, and why.
    pub skipped: Vec<Skipped>,
    /// How long the step waited for it.
    pub waited: Duration,
}

type Made = (StepJob, Result<(Option<Prepared>, Vec<Skipped>)>);

/// The batches of a run of steps, in order.
pub enum BatchFeed {
    /// Prepared when asked for, on the caller's thread.
    Inline {
        /// Where batches come from (boxed: a builder is large beside a channel).
        source: Box<BatchSource>,
        /// Steps not yet prepared.
        jobs: VecDeque<StepJob>,
    },
    /// Prepared ahead by a feeder thread.
    Ahead {
        /// Prepared batches, in order; `None` once the feed is shut.
        rx: Option<Receiver<Made>>,
        /// The feeder thread.
        handle: Option<JoinHandle<()>>,
    },
}

impl BatchSource {
    /// Reads one job's samples into host tensors.
    fn make(&self, job: &StepJob) -> Result<(Option<Prepared>, Vec<Skipped>)> {
        let samples: Vec<_> = job.idx.iter().map(|&i| &self.data.samples[i]).collect();
        prepare(
            &self.builder,
            self.cache.as_deref(),
            &samples,
            &job.picks,
            &Device::Cpu,
        )
    }
}

impl BatchFeed {
    /// Starts feeding `jobs` in order: inline when `workers` is 0, else from a feeder thread
    /// whose batch builder decodes on `workers` threads.
    pub fn start(mut source: BatchSource, jobs: Vec<StepJob>, workers: usize) -> Self {
        if workers == 0 {
            return Self::Inline {
                source: Box::new(source),
                jobs: jobs.into(),
            };
        }
        source.builder = source.builder.with_threads(workers);
        let (tx, rx) = sync_channel::<Made>(QUEUE_DEPTH);
        let handle = std::thread::spawn(move || {
            for job in jobs {
                let made = source.make(&job);
                let failed = made.is_err();
                // The step side hung up (the run stopped early): stop preparing.
                if tx.send((job, made)).is_err() || failed {
                    return;
                }
            }
        });
        Self::Ahead {
            rx: Some(rx),
            handle: Some(handle),
        }
    }

    /// The next batch, `None` after the last; an error is the preparation's (a setup problem,
    /// not a bad sample: those are in [`FedBatch::skipped`]).
    pub fn next_batch(&mut self) -> Result<Option<FedBatch>> {
        let started = Instant::now();
        let (job, made) = match self {
            Self::Inline { source, jobs } => match jobs.pop_front() {
                Some(job) => {
                    let made = source.make(&job);
                    (job, made)
                }
                None => return Ok(None),
            },
            Self::Ahead { rx, .. } => match rx.as_ref().and_then(|rx| rx.recv().ok()) {
                Some(made) => made,
                None => {
                    self.shut()?;
                    return Ok(None);
                }
            },
        };
        let (inputs, skipped) = made?;
        Ok(Some(FedBatch {
            job,
            inputs,
            skipped,
            waited: started.elapsed(),
        }))
    }

    /// Stops the feeder and waits for it; a panic in it becomes an error.
    pub fn shut(&mut self) -> Result<()> {
        if let Self::Ahead { rx, handle } = self {
            // Hanging up first unblocks a feeder waiting for room in the queue.
            rx.take();
            if let Some(h) = handle.take() {
                h.join()
                    .map_err(|_| anyhow::anyhow!("the batch feeder thread panicked"))?;
            }
        }
        Ok(())
    }
}

impl Drop for BatchFeed {
    fn drop(&mut self) {
        // An early stop (max_steps, an error) drops the feed; its thread must not outlive it.
        let _ = self.shut();
    }
}
