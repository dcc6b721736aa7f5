//! bf16 mixed precision (`trainer.precision=bf16`): bf16 compute follows the f32 loss curve
//! closely and the checkpoint keeps f32 master weights.

mod common;

use common::{logged, run_native, synth_images, synth_train_args};

#[test]
fn bf16_compute_tracks_f32_and_keeps_f32_masters() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_images(&data, 64, 8, 4, 7);
    let exp = tmp.path().join("exp");
    let run = |name: &str, precision: &str| {
        let extra = [
            format!("name={name}"),
            format!("+trainer.precision={precision}"),
            "+trainer.max_steps=8".into(),
        ];
        run_native(&synth_train_args(&data, &exp, &extra));
        logged(&exp.join(name), "train_loss")
    };
    let f32_losses = run("full", "f32");
    let bf16_losses = run("mixed", "bf16");
    assert_eq!((f32_losses.len(), bf16_losses.len()), (8, 8));
    for (step, a) in &f32_losses {
        let b = bf16_losses[step];
        assert!((a - b).abs() <= 2e-3 * a, "step {step}: f32 {a}, bf16 {b}");
    }
    assert!(bf16_losses[&8] < bf16_losses[&1], "bf16 training lowers the loss");
    let ckpt = native::train::checkpoint::load(
        &exp.join("mixed/checkpoints/last.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(!ckpt.weights.is_empty());
    for (name, t) in &ckpt.weights {
        assert_eq!(t.dtype(), candle_core::DType::F32, "{name}");
    }
}
