//! Epochs of batches over a dataset, in a reproducible order that can start at any batch.

use super::batch::{Batch, BatchBuilder};
use super::order::{caption_index, epoch_order};
use super::{Dataset, Skipped};

/// Iterates a dataset in batches: the order of epoch e is [`epoch_order`]`(n, seed, e)` (or
/// the file order without shuffling) and sample i uses caption [`caption_index`]`(seed, e, i,
/// ..)`, so batch k of epoch e is the same in every run with the same seed. The last batch of
/// an epoch may be smaller (nothing is dropped, as PyTorch's `DataLoader` by default).
#[derive(Debug, Clone)]
pub struct Loader<'a> {
    dataset: &'a Dataset,
    builder: &'a BatchBuilder,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
}

/// One step's data: where it sits in the epoch and what was loaded.
#[derive(Debug, Clone)]
pub struct LoadedBatch {
    /// The epoch.
    pub epoch: u64,
    /// Index of this batch within the epoch (0-based).
    pub index: usize,
    /// Dataset indices of the batch's samples, skipped ones included.
    pub samples: Vec<usize>,
    /// The batch, `None` when every sample of it was skipped.
    pub batch: Option<Batch>,
    /// Samples of this batch left out because their content could not be decoded.
    pub skipped: Vec<Skipped>,
}

impl<'a> Loader<'a> {
    /// A loader of `batch_size` (at least 1) samples per batch; `shuffle` false keeps the
    /// dataset order in every epoch (validation, test).
    pub fn new(
        dataset: &'a Dataset,
        builder: &'a BatchBuilder,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(batch_size > 0, "batch_size must be at least 1");
        Ok(Self {
            dataset,
            builder,
            batch_size,
            seed,
            shuffle,
        })
    }

    /// Batches in one epoch: `ceil(len / batch_size)`.
    pub fn batches_per_epoch(&self) -> usize {
        self.dataset.len().div_ceil(self.batch_size)
    }

    /// The order in which `epoch` visits the dataset.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        if self.shuffle {
            epoch_order(self.dataset.len(), self.seed, epoch)
        } else {
            (0..self.dataset.len()).collect()
        }
    }

    /// The caption that sample `sample` uses in `epoch`.
    pub fn caption_pick(&self, epoch: u64, sample: usize) -> usize {
        let n = self.dataset.samples.get(sample).map_or(0, |s| s.captions.len());
        caption_index(self.seed, epoch, sample, n)
    }

    /// The batches of `epoch` from batch `start_batch` on (to resume a run); loading happens as
    /// the iterator advances. Each item is an error only for the fatal cases of
    /// [`BatchBuilder::build`].
    pub fn epoch(&self, epoch: u64, start_batch: usize) -> EpochBatches<'a> {
        EpochBatches {
            loader: self.clone(),
            epoch,
            order: self.order(epoch),
            next: start_batch,
        }
    }

    /// Loads batch `index` of `epoch` from a precomputed `order`.
    fn load(&self, epoch: u64, order: &[usize], index: usize) -> anyhow::Result<LoadedBatch> {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(order.len());
        let indices = order[start..end].to_vec();
        let samples: Vec<_> = indices.iter().map(|&i| &self.dataset.samples[i]).collect();
        let picks: Vec<usize> = indices.iter().map(|&i| self.caption_pick(epoch, i)).collect();
        let (batch, skipped) = self.builder.build(&samples, &picks)?;
        Ok(LoadedBatch {
            epoch,
            index,
            samples: indices,
            batch,
            skipped,
        })
    }
}

/// The batches of one epoch, from [`Loader::epoch`].
#[derive(Debug)]
pub struct EpochBatches<'a> {
    loader: Loader<'a>,
    epoch: u64,
    order: Vec<usize>,
    next: usize,
}

impl Iterator for EpochBatches<'_> {
    type Item = anyhow::Result<LoadedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.loader.batches_per_epoch() {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.loader.load(self.epoch, &self.order, index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.batches_per_epoch().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches<'_> {}
