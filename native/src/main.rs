//! `native`: caption, verify and benchmark from the command line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::Device;
use caption_model::frame_sampling::{frame_count, model_max_frames};
use caption_model::tokenizer::Tokenizer;
use clap::Parser;
use native::bench::batch::BatchBenchOptions;
use native::bench::caption::CaptionBenchOptions;
use native::bench::train::TrainBenchOptions;
use native::cli::{BenchCommand, CaptionArgs, Cli, Command, DataCommand, EngineName, TrainArgs};
use native::data::coco_download::{download_coco, CocoDownload};
use native::export::ExportArgs;
use native::synth::word_tokenizer::write_word_tokenizer;
use native::synth::SynthArgs;
use native::train::config::{Mode, ProjectConfig};
use native::train::precision::Precision;
use native::train::run::Trainer;
use native::{bench, caption, export, load, verify};

fn main() -> ExitCode {
    let cli = Cli::parse();
    set_thread_count(cli.threads);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Fixes the CPU thread count for the whole run, before any tensor work: `--threads`, else
/// CANDLE_NUM_THREADS, else RAYON_NUM_THREADS, else one per physical core. candle's pool reads
/// CANDLE_NUM_THREADS once; its matmul and rayon read RAYON_NUM_THREADS, and without it candle
/// counts the physical cores from /proc/cpuinfo on every matmul (about 15 % of a quantized
/// decoding step).
fn set_thread_count(threads: Option<usize>) {
    let from_env = || std::env::var("CANDLE_NUM_THREADS").ok()?.parse::<usize>().ok();
    let n = threads
        .or_else(from_env)
        .unwrap_or_else(candle_core::utils::get_num_threads)
        .max(1)
        .to_string();
    std::env::set_var("CANDLE_NUM_THREADS", &n);
    std::env::set_var("RAYON_NUM_THREADS", &n);
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Caption(args) => run_caption(args),
        Command::Verify { dir, device } => run_verify(&dir, &device.open()?),
        Command::Train(args) => run_train(&args),
        Command::Score { cases } => run_score(&cases),
        Command::Synth(args) => run_synth(&args),
        Command::Bench { which } => run_bench(which),
        Command::Data { which } => run_data(which),
        Command::Export(args) => run_export(&args),
        Command::Inspect { dir } => {
            print!("{}", export::inspect(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Success when `ok`, failure (exit code 1) otherwise.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `verify`: one line per compared output, then PASSED or FAILED.
fn run_verify(dir: &Path, device: &Device) -> Result<ExitCode> {
    let report = verify::verify_dir(dir, device).with_context(|| format!("verifying {}", dir.display()))?;
    for line in report.lines() {
        println!("{line}");
    }
    let passed = report.passed();
    println!("verify: {}", if passed { "PASSED" } else { "FAILED" });
    Ok(exit_code(passed))
}

/// `train`: the original's run.py, in `mode=train` or `mode=test`.
fn run_train(args: &TrainArgs) -> Result<ExitCode> {
    native::train::heap::keep_freed_memory();
    let device = args.device.open()?;
    let cfg = ProjectConfig::load(&args.config_path, &args.config_name, &args.overrides)?;
    match cfg.mode {
        Mode::Train => {
            let mut trainer = Trainer::new(cfg, &device)?;
            trainer.run()?;
            let s = trainer.state();
            println!(
                "trained {} steps over {} epochs; {} unreadable samples skipped",
                s.step, s.epoch, s.skipped
            );
        }
        Mode::Test => run_test(&cfg, &device)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `score`: caption metrics for a JSON file of cases.
fn run_score(cases: &Path) -> Result<ExitCode> {
    let text = std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let scores =
        native::metrics::score_cases_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", cases.display()))?;
    println!("{}", serde_json::to_string_pretty(&scores)?);
    Ok(ExitCode::SUCCESS)
}

/// `synth`: a synthetic dataset and its word-level tokenizer.
fn run_synth(args: &SynthArgs) -> Result<ExitCode> {
    let summary = native::synth::generate_dataset(&args.options())?;
    let tokenizer = write_word_tokenizer(&args.out)?;
    println!("{summary}");
    println!("word-level tokenizer: {}", tokenizer.display());
    Ok(ExitCode::SUCCESS)
}

/// `bench`: the chosen benchmark's figures.
fn run_bench(which: BenchCommand) -> Result<ExitCode> {
    match which {
        BenchCommand::Caption {
            timing: t,
            quant,
            precision,
            device,
        } => bench::bench_caption(&CaptionBenchOptions {
            iters: t.iters.max(1),
            tokens: t.tokens.max(1),
            beam_width: t.beam_width,
            quant: quant.parse()?,
            dtype: Precision::parse(&precision)?.dtype(),
            device: device.open()?,
        })?,
        BenchCommand::Webgpu { timing: t, quant } => {
            let quants = quant.iter().map(|q| q.parse()).collect::<Result<Vec<_>, _>>()?;
            run_bench_webgpu(t.iters.max(1), t.tokens.max(1), t.beam_width, &quants)?
        }
        BenchCommand::Batch {
            images,
            batch_size,
            quant,
            tokens,
            backend,
        } => bench::batch::bench_batch(&BatchBenchOptions {
            images: images.max(1),
            batch_sizes: batch_size,
            quants: quant.iter().map(|q| q.parse()).collect::<Result<Vec<_>, _>>()?,
            tokens: tokens.max(1),
            webgpu: match backend.as_str() {
                "cpu" => false,
                "webgpu" => true,
                other => anyhow::bail!("--backend {other}: expected cpu or webgpu"),
            },
        })?,
        BenchCommand::Train {
            batch,
            steps,
            tokens,
            device,
            precision,
            paths,
        } => {
            native::train::heap::keep_freed_memory();
            bench::train::bench_train(&TrainBenchOptions {
                batch_sizes: batch,
                steps,
                tokens,
                device: device.open()?,
                precision: Precision::parse(&precision)?,
                paths: paths.iter().map(|p| p.parse()).collect::<Result<_>>()?,
            })?;
        }
        BenchCommand::Memory { mb, threads, iters } => {
            let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            bench::memory::bench_memory(mb, n, iters)?;
        }
        BenchCommand::Curves {
            reference,
            candidate,
            window,
            first_tol,
            window_tol,
        } => {
            let c = bench::curves::compare_runs(&reference, &candidate, window)?;
            print!("{c}");
            let ok = c.passes(first_tol, window_tol);
            println!(
                "curves: {} (first step within {first_tol}, every {window}-step mean within {window_tol})",
                if ok { "AGREE" } else { "DIFFER" }
            );
            return Ok(exit_code(ok));
        }
        BenchCommand::Pointing {
            model,
            scenes,
            split,
            limit,
            methods,
            tokenizer,
            max_length,
        } => {
            let (model, folder_tokenizer) = load::load_any(&model, None, &Device::Cpu)?;
            let tokenizer = match (tokenizer, folder_tokenizer) {
                (Some(path), _) => Tokenizer::from_file(&path)?,
                (None, Some(t)) => t,
                (None, None) => anyhow::bail!("a checkpoint carries no tokenizer: pass --tokenizer"),
            };
            let opts = bench::pointing::PointingOptions {
                scenes,
                split,
                limit,
                methods,
                max_length,
            };
            println!("{}", bench::pointing::pointing(&model, &tokenizer, &opts)?);
        }
        BenchCommand::Agreement {
            reference,
            candidate,
            inputs,
            max_length,
            device,
        } => {
            let device = device.open()?;
            let files = caption::collect_inputs(&inputs)?;
            let (reference_model, _) = load::load_any(&reference, None, &device)?;
            for path in &candidate {
                let (model, _) = load::load_any(path, None, &device)?;
                let a = bench::agreement::agreement(&reference_model, &model, &files, max_length)?;
                println!("{}: {a}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `data`: a dataset downloaded into the original's layout.
fn run_data(which: DataCommand) -> Result<ExitCode> {
    match which {
        DataCommand::Coco {
            out,
            splits,
            base_url,
            keep_zips,
        } => {
            let summary = download_coco(&CocoDownload {
                out,
                base_url,
                splits,
                keep_zips,
                progress: true,
            })?;
            println!("{summary}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `export`: a model folder, then what was written.
fn run_export(args: &ExportArgs) -> Result<ExitCode> {
    let manifest = export::export(args)?;
    println!(
        "wrote {} ({} tensors, {}, {} with the manifest)",
        args.out.display(),
        manifest.tensors.len(),
        manifest.quant,
        export::human(folder_size(&args.out)?)
    );
    Ok(ExitCode::SUCCESS)
}

/// Total size of the files directly inside `dir`.
fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

fn run_caption(args: CaptionArgs) -> Result<ExitCode> {
    let path = args
        .model
        .as_ref()
        .or(args.checkpoint.as_ref())
        .context("pass --model <folder> or --checkpoint <file>")?;
    if args.backend == EngineName::Webgpu {
        anyhow::ensure!(
            !args.device.is_cuda(),
            "--backend webgpu picks its own GPU adapter; drop --cuda/--device, which are for the candle engine"
        );
        return run_caption_webgpu(path, &args);
    }
    let device = args.device.open()?;
    let (model, own_tokenizer) = load::load_any(path, args.config.as_deref(), &device)?;
    let maps = args.attention_maps.clone();
    caption_with(&model, own_tokenizer, &args, |tokenizer, results| match &maps {
        Some(dir) => {
            let frames = frame_count(args.frames, model_max_frames(model.config()));
            native::maps::write_all(&model, tokenizer, results, args.map_method, frames, dir)
        }
        None => Ok(()),
    })
}

/// `caption --backend webgpu`: a model folder on the first WebGPU adapter.
#[cfg(feature = "webgpu")]
fn run_caption_webgpu(path: &std::path::Path, args: &CaptionArgs) -> Result<ExitCode> {
    use caption_model::gpu::{GpuDevice, GpuTensor};
    anyhow::ensure!(
        load::is_model_folder(path),
        "--backend webgpu takes a model folder (--model); export a checkpoint with `native export` first"
    );
    anyhow::ensure!(
        args.attention_maps.is_none(),
        "--attention-maps runs on the candle engine: drop --backend webgpu (the maps' rollout is generic, but this command computes them on the CPU)"
    );
    let gpu = GpuDevice::new_blocking()?;
    eprintln!("WebGPU adapter: {}", gpu.adapter_name());
    let folder = load::read_folder_dir(path, |files| {
        caption_model::weights::load_folder_on::<GpuTensor>(files, &gpu)
    })?;
    caption_with(&folder.model, Some(folder.tokenizer), args, |_, _| Ok(()))
}

/// Without the engine compiled in, `--backend webgpu` says how to get it.
#[cfg(not(feature = "webgpu"))]
fn run_caption_webgpu(_: &std::path::Path, _: &CaptionArgs) -> Result<ExitCode> {
    anyhow::bail!("this binary was built without the WebGPU engine (build with --features webgpu)")
}

/// Captions the inputs of `args` with a loaded model, on whichever engine holds it.
fn caption_with<T: caption_model::backend::Backend>(
    model: &caption_model::CaptionModel<T>,
    own_tokenizer: Option<Tokenizer>,
    args: &CaptionArgs,
    after: impl FnOnce(&Tokenizer, &mut [caption::CaptionResult]) -> Result<()>,
) -> Result<ExitCode> {
    let tokenizer = match (&args.tokenizer, own_tokenizer) {
        (Some(path), _) => Tokenizer::from_file(path)?,
        (None, Some(t)) => t,
        (None, None) => Tokenizer::gpt2()?,
    };
    let opts = args.decode.options(model)?;
    let files = caption::collect_media(&args.inputs)?;
    anyhow::ensure!(!files.is_empty(), "no images or videos found in the given inputs");
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let json = args.json;
    let mut results = caption::caption_media(
        model,
        &tokenizer,
        &files,
        &opts,
        args.batch_size,
        args.frames,
        |r| {
            bar.inc(1);
            if !json {
                bar.suspend(|| match (&r.caption, &r.error) {
                    (Some(c), _) => println!("{}\t{c}", r.file),
                    (_, Some(e)) => eprintln!("{}: error: {e}", r.file),
                    _ => {}
                });
            }
        },
    )?;
    bar.finish_and_clear();
    after(&tokenizer, &mut results)?;
    if json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &results)?;
        writeln!(out)?;
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        eprintln!("{failed} of {} file(s) could not be captioned", results.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `mode=test`: caption the test split with `pretrained_name` and score it.
fn run_test(cfg: &ProjectConfig, device: &Device) -> Result<()> {
    use native::metrics::evaluate;
    use native::train::session;
    let ckpt = cfg
        .pretrained_name
        .as_deref()
        .context("mode=test needs pretrained_name=<checkpoint>")?;
    let model = load::load_model(std::path::Path::new(ckpt), None, device)?;
    let tokenizer = session::tokenizer_for(cfg)?;
    let data = session::load_split(cfg, session::Split::Test)?;
    let predictions = evaluate::predict(&model, &tokenizer, &data, cfg, device)?;
    let scores = evaluate::score(&predictions)?;
    let dir = cfg.run_dir()?;
    evaluate::write_results(&dir, &predictions, &scores)?;
    println!("{}", serde_json::to_string_pretty(&scores)?);
    println!("predictions and scores written to {}", dir.display());
    Ok(())
}

/// `bench webgpu`, in a build with the WebGPU engine.
#[cfg(feature = "webgpu")]
fn run_bench_webgpu(
    iters: usize,
    tokens: usize,
    beam: usize,
    quants: &[caption_model::weights::Quant],
) -> anyhow::Result<()> {
    bench::bench_webgpu(iters, tokens, beam, quants)
}

/// `bench webgpu` in a build without the engine: says how to get it.
#[cfg(not(feature = "webgpu"))]
fn run_bench_webgpu(_: usize, _: usize, _: usize, _: &[caption_model::weights::Quant]) -> anyhow::Result<()> {
    anyhow::bail!("this binary was built without the WebGPU engine (build with --features webgpu)")
}
