#!/usr/bin/env bash
# The whole pipeline on the built-in dataset, in the paper's regime (a pretrained backbone fine-tuned):
# data -> AN and EM teachers -> export -> label -> student -> eval, with a full-label model as the upper line.
# SEED varies both the data and the training. Minutes on 2 CPU cores (the backbone is made once, then cached).
set -euo pipefail
D=${DEMO_DIR:-demo_out}
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-8}
TAU=${TAU:-0.75}  # as 0.75 was best in the seed paper
mkdir -p "$D"
start=$(date +%s)

spml-data demo --out "$D/data" --seed "$SEED"
spml-data single-positive "$D/data/instances_train.json" --out "$D/data/sp_train.json" --seed "$SEED"
# the stand-in for ImageNet weights: a cnn4 pretrained on other shapes, loaded like any --weights file
WEIGHTS=$(spml-data backbone)
COMMON=(--val-ann "$D/data/instances_val.json" --arch cnn4 --image-size 32 --epochs "$EPOCHS" --batch-size 32
        --weights "$WEIGHTS" --lr 3e-4 --seed "$SEED")

spml-train --ann "$D/data/sp_train.json" --loss an "${COMMON[@]}" --out "$D/an_teacher.pt"
spml-train --ann "$D/data/sp_train.json" "${COMMON[@]}" --out "$D/teacher.pt"            # em: the seed's teacher
spml-train --ann "$D/data/instances_train.json" --loss bce "${COMMON[@]}" --out "$D/full.pt"  # full labels: upper bound
spml-export "$D/teacher.pt" --out "$D/teacher.onnx"
spml-label --model "$D/teacher.onnx" --tau "$TAU" --soft --out "$D/labels.json"
# the recommended student: the teacher's probabilities as targets, starting from the teacher's weights
spml-train --ann "$D/labels.json" --soft-targets --init "$D/teacher.pt" "${COMMON[@]}" --out "$D/student.pt"

for m in an_teacher teacher student full; do
  spml-eval "$D/$m.pt" --ann "$D/data/instances_test.json" --out "$D/eval_$m.json" >/dev/null 2>&1
done
spml-eval "$D/labels.json" --ann "$D/data/instances_train.json" --out "$D/eval_labels.json" >/dev/null
python -m spml.eval.demo_table "$D" --tau "$TAU" --seconds $(( $(date +%s) - start ))
