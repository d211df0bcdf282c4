#!/usr/bin/env bash
# Regenerate the pictures of docs/pictures.md and docs/tutorial.md from short
# MNIST runs with NP ranks (default 2): trains seven small runs into runs/,
# draws their pictures with `aetrain plot` and copies them to docs/images/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. scripts/mpienv.sh
np=${NP:-2}
rm -rf runs/tutorial-*
a=build/aetrain
mpirun -n "$np" $a train configs/mnist_simple32.ini --run tutorial-demo --quiet \
  --set train.epochs=5 --set train.keep=5 --set train.probe=false
mpirun -n "$np" $a train configs/mnist_vae2.ini --run tutorial-vae2 --quiet \
  --set train.epochs=5 --set train.keep=5 --set train.probe=false
mpirun -n "$np" $a train configs/mnist_denoise_gauss.ini --run tutorial-denoise --quiet \
  --set train.epochs=3 --set train.probe=false
mpirun -n "$np" $a train configs/mnist_linear2.ini --run tutorial-linear2 --quiet --set train.probe=false
mpirun -n "$np" $a train configs/mnist_tied.ini --run tutorial-tied --quiet --set train.probe=false
mpirun -n "$np" $a train configs/mnist_conv.ini --run tutorial-conv --quiet \
  --set train.epochs=3 --set train.probe=false
mpirun -n "$np" $a train configs/mnist_classifier.ini --run tutorial-classifier --quiet --set train.epochs=5
for r in demo vae2 denoise linear2 tied conv classifier; do $a plot "runs/tutorial-$r"; done
mkdir -p docs/images
cp runs/tutorial-demo/images/{recon,curves,codes,filters,interpolation,epochs}.png docs/images/
cp runs/tutorial-vae2/images/manifold.png docs/images/
cp runs/tutorial-denoise/images/denoise.png docs/images/
cp runs/tutorial-linear2/images/codes.png docs/images/linear2_codes.png
cp runs/tutorial-tied/images/recon.png docs/images/tied_recon.png
cp runs/tutorial-conv/images/recon.png docs/images/conv_recon.png
cp runs/tutorial-conv/images/filters.png docs/images/conv_filters.png
cp runs/tutorial-classifier/images/curves.png docs/images/classifier_curves.png
echo "tutorial-images: docs/images/ updated"
