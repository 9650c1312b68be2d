#!/usr/bin/env bash
# The GPU checks, as one script (under 8 minutes on one GPU): run it on a machine with a GPU
# (`make install` first, or PY=<python with the project installed>) and it prints one table.
#
#   bash scripts/device_check.sh            # OUT=<dir> keeps the runs (default: a temp dir)
#
# 1. the default cell (vit -> resnet on Fashion-MNIST) with trainer=gpu: wall time and scores;
# 2. a pretrained extraction (mobilenetv2 on 2,000 Fashion-MNIST test images) in fp32 and bf16:
#    throughput, the largest latent difference, and the stitched accuracy of each;
# 3. translator fit + transform on the GPU against the sum of its kernels (scripts/bench.py);
# 4. trainer=ddp on 2 GPUs, when there are 2 or more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 WANDB_MODE=offline
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
TRAINER=gpu
if [[ -n ${DEVICE_CHECK_ON_CPU:-} ]]; then  # a dry run of the script's logic on the CPU (its figures mean nothing)
  TRAINER=cpu
elif [[ $GPUS -lt 1 ]]; then
  echo "error: no CUDA device visible to torch (torch.cuda.device_count() = 0); DEVICE_CHECK_ON_CPU=1 runs the logic on the CPU" >&2
  exit 2
fi
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', 'torch', torch.__version__, torch.cuda.device_count(), 'GPU(s)')"
COMMON=(logger=none trainer.enable_progress_bar=false paths.cache_dir="$OUT/cache")

cell() {  # cell <name> <overrides...>: one run into $OUT/<name>, prints "<name> <seconds> <metrics>"
  local name=$1 start=$SECONDS
  shift
  "$PY" run.py "${COMMON[@]}" "$@" "hydra.run.dir=$OUT/$name" >"$OUT/$name.log" 2>&1 || { echo "$name failed: see $OUT/$name.log" >&2; tail -20 "$OUT/$name.log" >&2; exit 1; }
  "$PY" - "$OUT/$name/metrics.json" "$name" "$((SECONDS - start))" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<28} {int(sys.argv[3]):>5} s   native {m['native_acc']:.4f}  stitched {m['stitched_acc']:.4f}  untranslated {m['untranslated_acc'] if m['untranslated_acc'] is not None else float('nan'):.4f}")
EOF
}

echo "== 1. the default cell, trainer=gpu"
cell default_gpu trainer=$TRAINER
echo "== 2. pretrained extraction, fp32 vs bf16 (mobilenetv2 -> cnn, 2000/2000 items)"
SUB=(dataset.max_train=2000 dataset.max_test=2000 anchors.num=1000 encoder=mobilenetv2 decoder=cnn)
cell extraction_fp32 trainer=$TRAINER "${SUB[@]}"
cell extraction_bf16 trainer=$TRAINER trainer.precision=bf16-mixed "${SUB[@]}"
"$PY" - "$OUT" <<'EOF'
import json, re, sys
from pathlib import Path
from safetensors.torch import load_file
out = Path(sys.argv[1])
rate, acc, latents = {}, {}, {}
for p in ("fp32", "bf16"):
    found = re.findall(r"encoded mobilenetv2\S* test split \((\d+) samples\) in ([\d.]+) s", (out / f"extraction_{p}.log").read_text())
    rate[p] = int(found[0][0]) / float(found[0][1]) if found else float("nan")
    acc[p] = json.loads((out / f"extraction_{p}" / "metrics.json").read_text())["stitched_acc"]
for entry in (out / "cache" / "space").iterdir():  # the two test-split spaces of mobilenetv2, told apart by their precision
    spec = json.loads((entry / "manifest.json").read_text())["spec"]
    if spec["encoder"]["name"] == "mobilenetv2" and spec["split"] == "test":
        latents["bf16" if "bf16" in str(spec.get("precision", "")) else "fp32"] = load_file(str(entry / "tensors.safetensors"))["latents"]
diff = (latents["bf16"] - latents["fp32"]).abs().max().item() / latents["fp32"].abs().max().item()
print(f"extraction throughput fp32 {rate['fp32']:.0f} / bf16 {rate['bf16']:.0f} samples/s (bf16 / fp32 {rate['bf16'] / rate['fp32']:.2f}); "
      f"max |latent diff| {diff:.1e} of max |latent|; stitched acc fp32 {acc['fp32']:.4f}, bf16 {acc['bf16']:.4f}")
EOF
echo "== 3. translators on the GPU vs their kernels"
"$PY" scripts/bench.py --only translators --device "$([[ $TRAINER == gpu ]] && echo cuda || echo cpu)"
if [[ $GPUS -ge 2 ]]; then
  echo "== 4. trainer=ddp on 2 GPUs"
  cell default_ddp trainer=ddp trainer.devices=2
else
  echo "== 4. trainer=ddp: skipped (1 GPU)"
fi
echo "runs kept in $OUT"
