//! Distillation into a q4 export (`trainer.distill_from` with `trainer.quant_aware=q4`): the
//! student's q4 folder follows the teacher's f32 predictions more closely than the teacher's own
//! q4 folder does, on held-out images (mean KL divergence of the next-token distributions
//! along the teacher's greedy captions: 3.9e-4 plain, 9.9e-5 distilled when this was written),
//! and a student on a kept grid of block scales (`trainer.block_scales`) closer still, with the
//! export writing exactly the scales it trained with.

mod common;

use std::path::Path;

use candle_core::Device;
use caption_model::weights::read_safetensors;
use native::bench::agreement::agreement;
use native::caption::collect_inputs;
use native::load::{load_any, load_model};

fn export_q4(ckpt: &Path, tokenizer: &Path, out: &Path) {
    common::run_native(&[
        "export".into(),
        "--checkpoint".into(),
        ckpt.display().to_string(),
        "--tokenizer".into(),
        tokenizer.display().to_string(),
        "--quant".into(),
        "q4".into(),
        "--out".into(),
        out.display().to_string(),
    ]);
}

#[test]
fn a_distilled_q4_export_follows_the_teacher_more_closely_than_plain_rounding() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synth_images(&data, 320, 16, 40, 5);
    let exp = tmp.path().join("runs");
    let train = |extra: &[String]| common::train_synth(&data, &exp, extra);
    train(&["trainer.epochs=5".into()]);
    let teacher = exp.join("synth/checkpoints/last.safetensors");
    let student_args = |name: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            format!("name={name}"),
            "trainer.epochs=3".into(),
            format!("pretrained_name={}", teacher.display()),
            format!("+trainer.distill_from={}", teacher.display()),
            "+trainer.quant_aware=q4".into(),
            // The student may move every tensor the export rounds, the frozen tower included.
            "model.vision.trainable=true".into(),
            "model.optimizer.lr=1e-4".into(),
            "model.optimizer.weight_decay=0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    train(&student_args("student", &[]));
    // Kept grids: the searched scales of the start, then those scales trained too.
    train(&student_args("fixed", &["+trainer.block_scales=fixed"]));
    train(&student_args(
        "learned",
        &["+trainer.block_scales=learned", "+trainer.block_scale_lr=0.1"],
    ));
    let student = exp.join("student/checkpoints/last.safetensors");
    // The run reports its distillation loss (a KL divergence, small and finite) for validation.
    let val = common::logged(&exp.join("student"), "val_loss");
    assert_eq!(val.len(), 3, "{val:?}");
    assert!(
        val.values().all(|&v| v.is_finite() && (0.0..0.5).contains(&v)),
        "{val:?}"
    );

    let tokenizer = data.join("tokenizer.json");
    let (plain, distilled) = (tmp.path().join("plain-q4"), tmp.path().join("distilled-q4"));
    export_q4(&teacher, &tokenizer, &plain);
    export_q4(&student, &tokenizer, &distilled);
    let kept = |name: &str| {
        let ckpt = exp.join(format!("{name}/checkpoints/last.safetensors"));
        let folder = tmp.path().join(format!("{name}-q4"));
        export_q4(&ckpt, &tokenizer, &folder);
        the_export_writes_the_trained_scales(&ckpt, &folder);
        folder
    };
    let (fixed, learned) = (kept("fixed"), kept("learned"));
    let dev = Device::Cpu;
    let reference = load_model(&teacher, None, &dev).unwrap();
    let files = collect_inputs(&[data.join("images/test")]).unwrap();
    let measure = |folder: &Path| {
        let (model, _) = load_any(folder, None, &dev).unwrap();
        agreement(&reference, &model, &files, 20).unwrap()
    };
    let (a, b) = (measure(&plain), measure(&distilled));
    println!("plain q4: {a}\ndistilled q4: {b}");
    for (name, folder) in [("fixed", &fixed), ("learned", &learned)] {
        let c = measure(folder);
        println!("{name} grid q4: {c}");
        assert!(
            c.mean_kl() < 0.5 * a.mean_kl(),
            "a {name} grid should at least halve the KL divergence: {} vs {}",
            c.mean_kl(),
            a.mean_kl()
        );
        // A grid that holds still lets the student settle closer than the per-step search
        // (5.7e-5 and 5.3e-5 against 9.9e-5 when this was written).
        assert!(c.mean_kl() < b.mean_kl(), "{name}: {c}\nsearch: {b}");
    }
    assert!(
        b.mean_kl() < 0.5 * a.mean_kl(),
        "distillation should at least halve the KL divergence: {} vs {}",
        b.mean_kl(),
        a.mean_kl()
    );
    // The KL comparisons above are over the same, non-empty set of positions: every test image,
    // along the teacher's own greedy captions. (Top-1 agreement cannot separate the two on this
    // small model, both agree at every position, so the KL is what is asserted.)
    assert_eq!((a.images, b.images), (files.len(), files.len()));
    assert!(a.positions >= files.len(), "{a}");
    assert_eq!(a.positions, b.positions, "plain: {a}\ndistilled: {b}");
}

/// Every trained matrix of a `block_scales=fixed|learned` checkpoint has its scales, and the q4
/// folder's blocks carry exactly those (as f16), not the exporter's own search.
fn the_export_writes_the_trained_scales(ckpt: &Path, folder: &Path) {
    let dev = Device::Cpu;
    let ckpt = read_safetensors(ckpt, &dev).unwrap();
    let stored = read_safetensors(&folder.join("model.safetensors"), &dev).unwrap();
    let blocks: Vec<&String> = stored.keys().filter(|k| k.ends_with(".q4_0")).collect();
    assert!(blocks.len() > 10, "{blocks:?}");
    for entry in blocks {
        let scales = &ckpt[&format!("{entry}_scale")];
        let want: Vec<u16> = scales
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&s| half::f16::from_f32(s).to_bits())
            .collect();
        let bytes = stored[entry].flatten_all().unwrap().to_vec1::<u8>().unwrap();
        // Q4_0 blocks: an f16 scale, then 16 bytes of nibbles.
        let got: Vec<u16> = bytes
            .chunks_exact(18)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(got, want, "{entry}");
    }
}
