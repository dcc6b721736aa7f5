#!/usr/bin/env bash
# Builds the page's shipped default model (web/model): a model trained from scratch with this
# project's own trainer on its synthetic data (rendered shape scenes AND moving-shape clips),
# distilled into its q8 export, exported q8. Reproducible: same seeds, same data, same steps.
#
#   web/make-default-model.sh            # defaults below (a few minutes on one core)
#   IMAGES=6000 CLIPS=800 EPOCHS=30 web/make-default-model.sh   # longer, better captions
#
# The vision tower stays at its seeded random init (frozen), so each image and clip is encoded
# once into the trainer's feature cache; everything else trains from scratch. Then a copy of the
# trained checkpoint is distilled toward it through the q8 rounding (DISTILL_EPOCHS, 0 skips it),
# so the shipped q8 folder gives the f32 model's captions more often than plain rounding does
# (BENCHMARKS.md, "Distillation into the export").
# Needs ffmpeg (the clips are mp4). Work files go to $WORK (default target/default-model).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGES=${IMAGES:-3000}
CLIPS=${CLIPS:-400}
EPOCHS=${EPOCHS:-8}
DISTILL_EPOCHS=${DISTILL_EPOCHS:-6}
SEED=${SEED:-7}
THREADS=${THREADS:-1}
WORK=${WORK:-target/default-model}
OUT=${OUT:-web/model}

cargo build --release -p native
NATIVE=target/release/native

rm -rf "$WORK"
mkdir -p "$WORK"
DATA="$WORK/data"
"$NATIVE" synth --out "$DATA" --seed "$SEED" \
  --train "$IMAGES" --val $((IMAGES / 20 + 1)) --test 1 \
  --videos-train "$CLIPS" --videos-val $((CLIPS / 20 + 1)) --videos-test 1

# One JSON Lines list per split holding the images and the clips (paths relative to $DATA).
for split in train val test; do
  { cat "$DATA/$split.jsonl"; sed 's#"video":"#"video":"videos/#' "$DATA/videos/$split.jsonl"; } \
    > "$DATA/mixed-$split.jsonl"
done

DATASET=(dataset.name=jsonl dataset.tokenizer="$DATA/tokenizer.json"
  dataset.train_ds.visual_dir="$DATA" dataset.train_ds.json_path="$DATA/mixed-train.jsonl"
  dataset.validation_ds.visual_dir="$DATA" dataset.validation_ds.json_path="$DATA/mixed-val.jsonl"
  dataset.test_ds.visual_dir="$DATA" dataset.test_ds.json_path="$DATA/mixed-test.jsonl")
TRAIN=("$NATIVE" --threads "$THREADS" train --config-path configs --config-name synth.yaml
  trainer.exp_dir="$WORK/runs" trainer.seed="$SEED" "${DATASET[@]}")

"${TRAIN[@]}" name=default model.vision.trainable=false trainer.epochs="$EPOCHS"
CKPT="$WORK/runs/default/checkpoints/last.safetensors"

# The student may move every tensor, the frozen tower included, and only its q8 rounding is
# shipped; 1e-6 matches the q8 grid (a larger step wanders across it).
if [ "$DISTILL_EPOCHS" -gt 0 ]; then
  "${TRAIN[@]}" name=default-q8 pretrained_name="$CKPT" +trainer.distill_from="$CKPT" \
    +trainer.quant_aware=q8 model.vision.trainable=true model.optimizer.lr=1e-6 \
    model.optimizer.weight_decay=0 trainer.epochs="$DISTILL_EPOCHS"
  CKPT="$WORK/runs/default-q8/checkpoints/last.safetensors"
fi

rm -rf "$OUT"
# Kept word for word in web/model/manifest.json: the page shows it beside the model's name.
DESCRIPTION="Knows only synthetic shapes: trained from scratch on rendered scenes of coloured circles, squares, triangles and crosses, and on short clips of such shapes moving. It describes any photo or video in those words, so a cat may come out as orange triangles. For real photos, use “Load another model” with a model trained on them (e.g. COCO)."
"$NATIVE" export --checkpoint "$CKPT" \
  --tokenizer "$DATA/tokenizer.json" --quant q8 --description "$DESCRIPTION" --out "$OUT"
"$NATIVE" inspect "$OUT" | tail -n 3
du -sh "$OUT"
