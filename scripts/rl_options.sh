#!/usr/bin/env bash
# R3L's options for relative RL agents, one at a time, at the fast preset's 100k steps: which of
# them make relative stitching work on LavaGap? Relative agents only (the absolute agents and the
# translated / naive cells are those of +experiment=rl_stitching, same seeds). One process, one
# thread per run, so a second core stays free; 11-14 min per variant on 2 busy cores.
#   bash scripts/rl_options.sh [variant ...]      # default: every variant below
# A variant whose outputs/rl_options/<variant>/metrics.json exists is not run again. Prints, per
# variant, the off-diagonal relative mean, each agent's final training return and the training
# seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A OPTIONS=(
  [baseline]=""
  [ema_0.9]="rl.ema_momentum=0.9"
  [ema_0.999]="rl.ema_momentum=0.999"
  [ema_0]="rl.ema_momentum=0"
  [scale]="rl.relative_scale=true"
  [relu_512]="rl.controller_activation=relu rl.hidden=512"
  [r3l_all]="rl.relative_scale=true rl.ema_momentum=0.999 rl.controller_activation=relu rl.hidden=512"
  [ema_0.9_all]="rl.relative_scale=true rl.ema_momentum=0.9 rl.controller_activation=relu rl.hidden=512"
  [ema_0.9_scale]="rl.relative_scale=true rl.ema_momentum=0.9"
  # 500k steps per relative agent: the long preset (EMA 0.9, the best option at 100k) and R3L's settings
  [long_ema_0.9]="+experiment=rl_stitching_long"
  [long_r3l_all]="+experiment=rl_stitching_long rl.relative_scale=true rl.ema_momentum=0.999 rl.controller_activation=relu rl.hidden=512"
)
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(baseline ema_0.9 ema_0.999 ema_0 scale relu_512 r3l_all ema_0.9_all ema_0.9_scale)
# the long variants (about 50 min each on a busy core) run only when named
python=${PYTHON:-.venv/bin/python}
mkdir -p outputs/rl_options
for v in "${variants[@]}"; do
  [ -v "OPTIONS[$v]" ] || { echo "error: unknown variant $v (one of ${!OPTIONS[*]})" >&2; exit 2; }
  dir=outputs/rl_options/$v
  if [ ! -f "$dir/metrics.json" ]; then
    options=${OPTIONS[$v]}
    [[ $options == +experiment=* ]] || options="+experiment=rl_stitching $options"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 $python run.py 'rl.kinds=[relative]' rl.workers=1 threads=1 logger=none \
      $options hydra.run.dir="$dir" > "$dir.log" 2>&1 || { echo "error: variant $v failed, see $dir.log" >&2; exit 1; }
  fi
  $python - "$v" "$dir/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[2]))
train = m["training"]
finals = " / ".join(f"{t['final_return']:.2f}" for t in train)
seconds = sum(t["seconds"] for t in train)
print(f"{sys.argv[1]:>12}: relative off-diagonal mean {m['off_diagonal_mean']['relative']:.3f}; "
      f"final training returns {finals}; training {seconds:.0f} s for {len(train)} agents", flush=True)
PY
done
