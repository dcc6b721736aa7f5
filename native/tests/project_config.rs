//! The original config.yaml with the original's command-line overrides.

use std::path::PathBuf;

use native::train::config::{Mode, ProjectConfig};

fn original_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/original"))
}

fn load(overrides: &[&str]) -> anyhow::Result<ProjectConfig> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    ProjectConfig::load(&original_dir(), "config.yaml", &o)
}

#[test]
fn original_file_and_command_line_are_accepted() {
    let cfg = load(&[
        "name=coco-run",
        "mode=train",
        "dataset.train_ds.visual_dir=/data/train2017",
        "dataset.train_ds.json_path=/data/train2017.json",
        "trainer.exp_dir=/tmp/exp",
        "model.optimizer.lr=3e-4",
        "model.text.xattn.freq=2",
        "dataset.sign_languages=[en, de]",
    ])
    .unwrap();
    assert_eq!(cfg.mode, Mode::Train);
    assert_eq!(
        cfg.trainer.exp_name, "coco-run",
        "${{name}} is resolved after overrides"
    );
    assert_eq!(cfg.run_dir().unwrap(), PathBuf::from("/tmp/exp/coco-run"));
    assert_eq!(
        cfg.dataset.train_ds.visual_dir.as_deref(),
        Some("/data/train2017")
    );
    assert_eq!(
        cfg.dataset.validation_ds.visual_dir, None,
        "??? stays missing until given"
    );
    assert_eq!(cfg.model.optimizer.as_ref().unwrap().lr, 3e-4);
    assert_eq!(cfg.model.text.xattn.freq, 2);
    assert_eq!(cfg.dataset.sign_languages, vec!["en", "de"]);
    assert_eq!(cfg.trainer.test.beam_width, 5);
    assert_eq!(cfg.trainer.checkpoint_callback_params.monitor, "val_loss");
}

#[test]
fn unknown_override_keys_are_named_and_plus_adds() {
    let err = load(&["trainer.epoch=3"]).unwrap_err();
    assert!(format!("{err:#}").contains("trainer.epoch"), "{err:#}");
    // seed is ours, not in the original file: it needs the + form.
    let err = load(&["+trainer.max_steps=7", "trainer.seed=3"]).unwrap_err();
    assert!(format!("{err:#}").contains("trainer.seed"), "{err:#}");
    let cfg = load(&["+trainer.max_steps=7", "+trainer.seed=3"]).unwrap();
    assert_eq!((cfg.trainer.max_steps, cfg.trainer.seed), (Some(7), 3));
}

#[test]
fn a_bad_value_is_an_error_naming_the_field() {
    let err = format!("{:#}", load(&["mode=serve"]).unwrap_err());
    assert!(err.contains("serve"), "{err}");
    let err = format!("{:#}", load(&["model.mapper.mapper_type=lstm"]).unwrap_err());
    assert!(err.contains("lstm"), "{err}");
}

#[test]
fn block_scale_settings_that_cannot_work_are_refused_in_words() {
    use native::train::qat::block_grid::{check_grid, BlockScales};
    let cfg = load(&[]).unwrap();
    assert_eq!(cfg.trainer.block_scales, BlockScales::Search);
    check_grid(&cfg.trainer, false, 1e-3).unwrap();
    let learned = load(&["+trainer.block_scales=learned"]).unwrap();
    assert_eq!(learned.trainer.block_scales, BlockScales::Learned);
    let err = |r: anyhow::Result<()>| format!("{:#}", r.unwrap_err());
    assert!(err(check_grid(&learned.trainer, false, 0.0)).contains("trainer.quant_aware"));
    assert!(err(check_grid(&learned.trainer, true, 1e-3)).contains("weight_decay=0"));
    check_grid(&learned.trainer, true, 0.0).unwrap();
    let fixed = load(&["+trainer.block_scales=fixed"]).unwrap();
    check_grid(&fixed.trainer, true, 1e-3).unwrap();
    let bad_lr = load(&["+trainer.block_scales=learned", "+trainer.block_scale_lr=-1"]).unwrap();
    assert!(err(check_grid(&bad_lr.trainer, true, 0.0)).contains("block_scale_lr"));
    let e = format!("{:#}", load(&["+trainer.block_scales=sometimes"]).unwrap_err());
    assert!(e.contains("sometimes"), "{e}");
}

#[test]
fn references_that_multiply_are_refused_not_expanded() {
    // Each level refers 8 times to the one before: 8^11 values if it were expanded.
    let mut yaml = String::from("l0: [a, b, c, d, e, f, g, h]\n");
    for i in 1..12 {
        let refs = vec![format!("\"${{l{}}}\"", i - 1); 8].join(", ");
        yaml.push_str(&format!("l{i}: [{refs}]\n"));
    }
    let err = ProjectConfig::from_yaml(&yaml, &[]).unwrap_err().to_string();
    assert!(err.contains("interpolations expand to more than"), "{err}");
}

#[test]
fn the_shipped_copy_of_the_original_config_is_verbatim() {
    // README's GPU walk uses configs/original/config.yaml on machines without ../shared.
    let shipped = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/original/config.yaml"
    ));
    assert_eq!(
        std::fs::read(&shipped).unwrap(),
        std::fs::read(original_dir().join("config.yaml")).unwrap()
    );
}
