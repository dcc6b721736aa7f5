//! The WGSL kernel families and how their sources are assembled.

/// Bindings and helpers every kernel starts with.
const COMMON: &str = include_str!("shaders/common.wgsl");
/// The weight-matrix binding and decoders, for the kernels that read matrices.
const WEIGHTS: &str = include_str!("shaders/weights.wgsl");
/// Activation functions (elementwise kernel, matmul epilogue).
const ACTIVATION: &str = include_str!("shaders/activation.wgsl");
/// Layer-norm statistics (layer norm, and the kernels that normalise their own input).
const NORM: &str = include_str!("shaders/norm.wgsl");
/// The few-rows product (matmul, projected attention).
const MATVEC: &str = include_str!("shaders/matvec.wgsl");
/// One query row's attention (attention, projected attention).
const ATTEND: &str = include_str!("shaders/attend_core.wgsl");

/// One WGSL module (a kernel family, one `.wgsl` file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    /// Activations and affine.
    Elementwise,
    /// Broadcast add / mul.
    Binary,
    /// Strided copies and row selection.
    Copy,
    /// Embedding rows from a weight table.
    Gather,
    /// `x W^T + b`.
    Matmul,
    /// Layer normalisation.
    LayerNorm,
    /// Mean over a dimension.
    Mean,
    /// Per-head attention over strided operands, appending to a KV cache in place.
    Attention,
    /// Per-head attention with the query's norm and projection inside.
    ProjectedAttention,
    /// The k largest values per row, with the log-sum-exp (greedy: k = 1; beam search).
    TopK,
}

impl Kernel {
    /// The module's label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Elementwise => "elementwise",
            Kernel::Binary => "binary",
            Kernel::Copy => "copy",
            Kernel::Gather => "gather",
            Kernel::Matmul => "matmul",
            Kernel::LayerNorm => "layer_norm",
            Kernel::Mean => "mean",
            Kernel::Attention => "attention",
            Kernel::ProjectedAttention => "projected_attention",
            Kernel::TopK => "topk",
        }
    }

    /// Whether the module reads a weight matrix (and so takes the `FMT` constant).
    pub(crate) fn reads_weights(self) -> bool {
        matches!(self, Kernel::Gather | Kernel::Matmul | Kernel::ProjectedAttention)
    }

    /// The override constants of a pipeline specialised by `spec`: the weight format `FMT`
    /// (bits 0..8) for the kernels that read matrices, and the matmul's input mode `NORM`
    /// (bits 8..16: rows as stored, normalised in workgroup memory, normalised where read),
    /// given only when not 0 (the entries that do not use it keep its default).
    pub(crate) fn constants(self, spec: u32) -> Vec<(&'static str, f64)> {
        let mut c = Vec::new();
        if self.reads_weights() {
            c.push(("FMT", (spec & 0xff) as f64));
        }
        if self == Kernel::Matmul && spec >> 8 != 0 {
            c.push(("NORM", (spec >> 8) as f64));
        }
        c
    }

    /// The storage bindings 1, 2, ... the module declares, in order: whether each is
    /// writable (`read_write`). Read from the source, so the layouts cannot drift from it.
    pub(crate) fn storage_bindings(self) -> Vec<bool> {
        let source = self.source();
        let mut found: Vec<(u32, bool)> = source
            .lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("@group(0) @binding(")?;
                let (n, decl) = rest.split_once(')')?;
                let n: u32 = n.parse().ok()?;
                decl.contains("var<storage")
                    .then(|| (n, decl.contains("read_write")))
            })
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, w)| w).collect()
    }

    /// The full WGSL source.
    pub(crate) fn source(self) -> String {
        let body = match self {
            Kernel::Elementwise => include_str!("shaders/elementwise.wgsl"),
            Kernel::Binary => include_str!("shaders/binary.wgsl"),
            Kernel::Copy => include_str!("shaders/copy.wgsl"),
            Kernel::Gather => include_str!("shaders/gather.wgsl"),
            Kernel::Matmul => include_str!("shaders/matmul.wgsl"),
            Kernel::LayerNorm => include_str!("shaders/layer_norm.wgsl"),
            Kernel::Mean => include_str!("shaders/mean.wgsl"),
            Kernel::Attention => include_str!("shaders/attention.wgsl"),
            Kernel::ProjectedAttention => include_str!("shaders/projected_attention.wgsl"),
            Kernel::TopK => include_str!("shaders/topk.wgsl"),
        };
        // The shared pieces each module uses (WGSL resolves names module-wide).
        let parts: &[&str] = match self {
            Kernel::Elementwise => &[ACTIVATION],
            Kernel::LayerNorm => &[NORM],
            Kernel::Matmul => &[WEIGHTS, ACTIVATION, NORM, MATVEC],
            Kernel::Gather => &[WEIGHTS],
            Kernel::Attention => &[ATTEND],
            Kernel::ProjectedAttention => &[WEIGHTS, NORM, MATVEC, ATTEND],
            _ => &[],
        };
        format!("{COMMON}\n{}\n{body}", parts.join("\n"))
    }
}
