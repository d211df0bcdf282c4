#!/usr/bin/env bash
# Regenerate the pictures of docs/pictures.md and docs/tutorial.md from short
# MNIST runs with NP ranks (default 2): trains three small runs into runs/,
# draws their pictures with `aetrain plot` and copies them to docs/images/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. scripts/mpienv.sh
np=${NP:-2}
a=build/aetrain
mpirun -n "$np" $a train configs/mnist_simple32.ini --run tutorial-demo --quiet \
  --set train.epochs=5 --set train.keep=5 --set train.probe=false
mpirun -n "$np" $a train configs/mnist_vae2.ini --run tutorial-vae2 --quiet \
  --set train.epochs=5 --set train.keep=5 --set train.probe=false
mpirun -n "$np" $a train configs/mnist_denoise_gauss.ini --run tutorial-denoise --quiet \
  --set train.epochs=3 --set train.probe=false
for r in demo vae2 denoise; do $a plot "runs/tutorial-$r"; done
mkdir -p docs/images
cp runs/tutorial-demo/images/{recon,curves,codes,filters,interpolation,epochs}.png docs/images/
cp runs/tutorial-vae2/images/manifold.png docs/images/
cp runs/tutorial-denoise/images/denoise.png docs/images/
echo "tutorial-images: docs/images/ updated"
