#!/usr/bin/env bash
# The whole pipeline on the built-in dataset: data -> AN and EM teachers -> export -> label -> student -> eval,
# with a full-label model as the upper reference line. About 10 minutes on 2 CPU cores.
set -euo pipefail
D=${DEMO_DIR:-demo_out}
EPOCHS=${EPOCHS:-8}
TAU=${TAU:-0.75}  # where the pseudo positives per image match the truth here, as 0.75 was best in the seed paper
mkdir -p "$D"
start=$(date +%s)

spml-data demo "$D/data"
spml-data single-positive "$D/data/instances_train.json" --out "$D/data/sp_train.json" --seed 0
COMMON=(--val-ann "$D/data/instances_val.json" --arch resnet18 --image-size 64 --epochs "$EPOCHS" --batch-size 32 --no-pretrained)

spml-train --ann "$D/data/sp_train.json" --loss an "${COMMON[@]}" --out "$D/an_teacher.pt"
spml-train --ann "$D/data/sp_train.json" "${COMMON[@]}" --out "$D/teacher.pt"            # em: the seed's teacher
spml-train --ann "$D/data/instances_train.json" --loss bce "${COMMON[@]}" --out "$D/full.pt"  # full labels: upper bound
spml-export "$D/teacher.pt" --out "$D/teacher.onnx"
spml-label --model "$D/teacher.onnx" --tau "$TAU" --out "$D/labels.json"
spml-train --ann "$D/labels.json" --loss bce "${COMMON[@]}" --out "$D/student.pt"

for m in an_teacher teacher student full; do
  spml-eval "$D/$m.pt" --ann "$D/data/instances_test.json" --json "$D/eval_$m.json" >/dev/null 2>&1
done
spml-eval "$D/labels.json" --ann "$D/data/instances_train.json" --json "$D/eval_labels.json" >/dev/null
python -m spml.eval.demo_table "$D" --tau "$TAU" --seconds $(( $(date +%s) - start ))
