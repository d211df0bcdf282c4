#!/usr/bin/env bash
# The main job: install, fetch MNIST, build, and train the default model
# (configs/mnist_simple32.ini, its full schedule) with NP ranks (default 2).
# Results print as it trains and land in runs/<name>/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
. scripts/mpienv.sh
np=${NP:-2}
config=${CONFIG:-configs/mnist_simple32.ini}
echo "quickstart: mpirun -n $np build/aetrain train $config $*"
exec mpirun -n "$np" build/aetrain train "$config" "$@"
