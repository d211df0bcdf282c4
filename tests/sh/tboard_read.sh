#!/usr/bin/env bash
# TensorBoard event files read back independently of the C code: tb_write
# (tests/tools/tb_write.c, next to ae_testtool) writes scalars and PNG images
# with ae/tboard.h; Python (/usr/bin/python3, Debian's python3-protobuf) reads
# them with classes that protoc --python_out makes from proto/tensorboard.proto,
# after checking the TFRecord framing and both masked CRC-32Cs with its own
# CRC-32C. Checked: file name, first event "brain.Event:2", every tag, step,
# value (bitwise float32) and image, wall times, that protobuf re-encodes each
# event to the very bytes in the file, and that events are readable while the
# writer still has the file open (what a live TensorBoard needs).
# Then the trainer's images ([run] tb_images), from short runs on 2 ranks:
# one reconstruction and one denoising grid per epoch, valid PNGs (decoded
# here with zlib: chunk CRCs, filters) of the expected size whose test-image
# rows are the test images ae_plot_pick chooses, the last reconstructions
# those `aetrain reconstruct` draws from the final checkpoint; the images
# change no number of the training (the checkpoint equals, bit for bit, that
# of a run with tb_images = 0, which writes no image); a failure to make
# them is a warning that ends the event file, not the run.
# Needs: protobuf-compiler (protoc) and python3-protobuf.
. "$(dirname "$0")/common.bash"
WRITER=${TB_WRITE:-$(dirname "$TOOL")/tb_write}
PY=/usr/bin/python3
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

if [ ! -x "$WRITER" ]; then
  bad "no tb_write at $WRITER (build the tb_write target)"
  finish
  exit 1
fi
if ! command -v protoc >/dev/null || ! "$PY" -c 'import google.protobuf' 2>/dev/null; then
  bad "needs protoc and python3-protobuf: apt-get install protobuf-compiler python3-protobuf"
  finish
  exit 1
fi
mkdir -p "$WORK/py"
protoc --python_out="$WORK/py" -I "$SRC/proto" "$SRC/proto/tensorboard.proto"

# ---- the Python side -----------------------------------------------------------------------------
cat > "$WORK/py/mkpng.py" <<'EOF'
# mkpng.py OUT WIDTH HEIGHT COLOR_TYPE: a valid 8-bit PNG (gray 0, RGB 2, RGBA 6) made with zlib
import struct, sys, zlib
out, w, h, ct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bpp = {0: 1, 2: 3, 6: 4}[ct]
raw = b"".join(b"\0" + bytes((37 * y + 11 * x) % 256 for x in range(w * bpp)) for y in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
open(out, "wb").write(png)
EOF

cat > "$WORK/py/tfrec.py" <<'EOF'
# tfrec.py: the TFRecord framing of event files, checked with a CRC-32C of its own
import struct, sys

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

# CRC-32C (Castagnoli), table-driven, written here independently of src/tboard.c
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    TABLE.append(c)

def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF

if crc32c(b"123456789") != 0xE3069283 or masked(struct.pack("<Q", 24)) != 0x224B7FA3:
    fail("the Python CRC-32C itself is wrong")

def records(data):
    """The data of every record of an event file's bytes; fails on a bad CRC, a cut record, stray bytes."""
    out, at = [], 0
    while at < len(data):
        if len(data) - at < 12:
            fail("%d stray bytes at offset %d" % (len(data) - at, at))
        (n,) = struct.unpack_from("<Q", data, at)
        (lcrc,) = struct.unpack_from("<I", data, at + 8)
        if lcrc != masked(data[at:at + 8]):
            fail("record %d: masked CRC of the length" % len(out))
        if at + 12 + n + 4 > len(data):
            fail("record %d: truncated (length %d)" % (len(out), n))
        body = data[at + 12:at + 12 + n]
        (dcrc,) = struct.unpack_from("<I", data, at + 12 + n)
        if dcrc != masked(body):
            fail("record %d: masked CRC of the data" % len(out))
        out.append(body)
        at += 12 + n + 4
    return out
EOF

cat > "$WORK/py/read_events.py" <<'EOF'
# read_events.py FILE T0 T1 OP...: FILE must hold exactly the file_version event and one event per
# OP (the ops given to tb_write: "s TAG STEP VALUE", "i TAG STEP PNG H W"; "wait" is skipped), with
# wall times in [T0 - 1, T1 + 1]. Prints "ok: ..." per check passed; exits 1 at the first failure.
import math, os, re, socket, struct, sys
import tensorboard_pb2 as pb
from google.protobuf.internal import api_implementation
from tfrec import fail, records as read_records

path, t0, t1, ops = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
expect = []
i = 0
while i < len(ops):
    if ops[i] == "wait":
        i += 1
    elif ops[i] == "s":
        expect.append(("s", ops[i + 1], int(ops[i + 2]), float(ops[i + 3])))
        i += 4
    elif ops[i] == "i":
        expect.append(("i", ops[i + 1], int(ops[i + 2]), open(ops[i + 3], "rb").read(),
                       int(ops[i + 4]), int(ops[i + 5])))
        i += 6
    else:
        fail("bad op " + ops[i])

# events.out.tfevents.<10 digits>.<host>, or .<host>.<k> when that name was taken
m = re.fullmatch(r"events\.out\.tfevents\.(\d{10})\.(.+)", os.path.basename(path))
host = socket.gethostname()
if (not m or not re.fullmatch(re.escape(host) + r"(\.[1-9]\d*)?", m.group(2))
        or not t0 - 1 <= int(m.group(1)) <= t1 + 1):
    fail("file name %s (host %s, time %d..%d)" % (os.path.basename(path), host, t0, t1))

records = read_records(open(path, "rb").read())
print("ok: %d records, lengths and both masked CRC-32Cs verified, no stray bytes (protobuf: %s)"
      % (len(records), api_implementation.Type()))
if len(records) != 1 + len(expect):
    fail("%d records, expected %d" % (len(records), 1 + len(expect)))

def f32(x):
    return struct.pack("<f", x)

COLORSPACE = {0: 1, 4: 2, 2: 3, 3: 3, 6: 4}
last_wall = 0.0
for k, body in enumerate(records):
    ev = pb.Event.FromString(body)
    if ev.SerializeToString() != body:
        fail("record %d: protobuf re-encodes the event to other bytes" % k)
    if not (t0 - 1 <= ev.wall_time <= t1 + 1) or ev.wall_time < last_wall:
        fail("record %d: wall_time %.6f outside [%d, %d] or going back" % (k, ev.wall_time, t0, t1))
    last_wall = ev.wall_time
    if k == 0:
        if ev.WhichOneof("what") != "file_version" or ev.file_version != "brain.Event:2" or ev.step != 0:
            fail("first event: %r" % ev)
        continue
    e = expect[k - 1]
    if ev.WhichOneof("what") != "summary" or len(ev.summary.value) != 1:
        fail("record %d: not a summary of one value" % k)
    v = ev.summary.value[0]
    if v.tag != e[1] or ev.step != e[2]:
        fail("record %d: tag %r step %d, expected %r %d" % (k, v.tag, ev.step, e[1], e[2]))
    if e[0] == "s":
        if v.WhichOneof("value") != "simple_value":
            fail("record %d: no simple_value" % k)
        same = math.isnan(e[3]) and math.isnan(v.simple_value) or f32(v.simple_value) == f32(e[3])
        if not same:
            fail("record %d: value %r, expected %r" % (k, v.simple_value, e[3]))
    else:
        img = v.image
        if v.WhichOneof("value") != "image" or img.encoded_image_string != e[3]:
            fail("record %d: not the PNG written" % k)
        if (img.height, img.width, img.colorspace) != (e[4], e[5], COLORSPACE[e[3][25]]):
            fail("record %d: image %dx%d colorspace %d" % (k, img.height, img.width, img.colorspace))
print("ok: file name, brain.Event:2 first, %d events: tags, steps, values (bitwise float32), images, "
      "wall times, and protobuf re-encodes every event to the same bytes" % len(expect))
EOF

py() { local script=$1; shift; PYTHONPATH="$WORK/py" "$PY" "$WORK/py/$script.py" "$@"; }
read_events() { py read_events "$@"; }
# py_pass SCRIPT WHAT ARGS...: $WORK/py/SCRIPT.py must pass; its own lines first
py_pass() {
  local script=$1 what=$2 out rc=0
  shift 2
  out=$(py "$script" "$@") || rc=$?
  echo "$out" | sed 's/^/  python /'
  if [ "$rc" -eq 0 ]; then ok "$what"; else bad "$what"; fi
}
py_check() { py_pass read_events "$@"; }
# py_rejects WHAT PATTERN ARGS...: read_events must fail with PATTERN (the reader's checks are live)
py_rejects() {
  local what=$1 pattern=$2 out
  shift 2
  if out=$(read_events "$@"); then bad "$what: accepted"; return; fi
  if grep -q -- "$pattern" <<<"$out"; then ok "$what"; else bad "$what: $(tail -n 1 <<<"$out")"; fi
}

"$PY" "$WORK/py/mkpng.py" "$WORK/rgb.png" 5 3 2
"$PY" "$WORK/py/mkpng.py" "$WORK/gray.png" 4 4 0

# ---- one file with everything, read after the writer closed it -------------------------------------
ops=(s loss/train 0 0 s loss/train 1 0.693147 s loss/val 1 -1.5e-7 s lr 2 3.4e38
     s grad/norm 3 nan s grad/norm 4 inf s grad/norm 5 -inf s step/big 1099511627776 1
     s step/neg -5 -0 s "tag with spaces/and/slashes" 127 42
     i recon/rgb 10 "$WORK/rgb.png" 3 5 i recon/gray 11 "$WORK/gray.png" 4 4)
t0=$(date +%s)
path=$("$WRITER" "$WORK/tb" "${ops[@]}")
t1=$(date +%s)
check "tb_write made one file in the new folder" '[ "$(ls "$WORK/tb" | wc -l)" -eq 1 ] && [ -f "$path" ]'
py_check "Python reads the file back (framing, CRCs, every event)" "$path" "$t0" "$t1" "${ops[@]}"
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
  py_check "... and so does protobuf's pure-Python implementation" "$path" "$t0" "$t1" "${ops[@]}"

# the reader notices damage: a flipped byte in a length, in an event; a cut file; a wrong value
cp "$path" "$WORK/bad"
printf '\x01' | dd of="$WORK/bad" bs=1 seek=$((40 + 1)) conv=notrunc status=none
mkdir -p "$WORK/bad.d"
bad_path="$WORK/bad.d/$(basename "$path")"
mv "$WORK/bad" "$bad_path"
py_rejects "Python rejects a damaged length" "masked CRC of the length" "$bad_path" "$t0" "$t1" "${ops[@]}"
cp "$path" "$bad_path"
printf 'X' | dd of="$bad_path" bs=1 seek=$((40 + 12 + 20)) conv=notrunc status=none
py_rejects "Python rejects a damaged event" "masked CRC of the data" "$bad_path" "$t0" "$t1" "${ops[@]}"
head -c $(($(stat -c %s "$path") - 3)) "$path" >"$bad_path"
py_rejects "Python rejects a cut file" "truncated" "$bad_path" "$t0" "$t1" "${ops[@]}"
py_rejects "Python rejects a value not written" "value 0.0, expected 1.0" "$path" "$t0" "$t1" \
  s loss/train 0 1 "${ops[@]:4}"

# ---- a second writer in the same folder gets its own file; the first is untouched ------------------
size=$(stat -c %s "$path")
path2=$("$WRITER" "$WORK/tb" s again 1 2.5)
check "a second file beside the first, which kept its size" \
  '[ "$path2" != "$path" ] && [ "$(ls "$WORK/tb" | wc -l)" -eq 2 ] && [ "$(stat -c %s "$path")" -eq "$size" ]'
py_check "the second file reads back" "$path2" "$t0" "$(date +%s)" s again 1 2.5

# ---- live: read while the writer is blocked with the file open -------------------------------------
mkfifo "$WORK/go"
live_ops=(s live 1 0.1 s live 2 0.2 i live/img 2 "$WORK/gray.png" 4 4)
t0=$(date +%s)
timeout -k 5 120 "$WRITER" "$WORK/live" "${live_ops[@]}" wait s live 3 0.3 <"$WORK/go" >"$WORK/live.out" &
wpid=$!
exec 3>"$WORK/go"
for _ in $(seq 600); do
  grep -q '^waiting$' "$WORK/live.out" 2>/dev/null && break
  sleep 0.1
done
check "the writer is waiting with its file open" 'grep -q "^waiting$" "$WORK/live.out"'
lpath=$(head -n 1 "$WORK/live.out")
py_check "while the writer is open: exactly the 3 events written so far, all whole" \
  "$lpath" "$t0" "$(date +%s)" "${live_ops[@]}"
trap '' PIPE # a writer that died early must not take this script with it
echo go >&3 || true
exec 3>&-
if wait "$wpid"; then ok "the writer finished"; else bad "the writer exited $?"; fi
py_check "after close: the 4 events" "$lpath" "$t0" "$(date +%s)" "${live_ops[@]}" s live 3 0.3

# ---- errors reach the exit code ------------------------------------------------------------------
expect_fail 1 "the PNG is 5x3 \(WxH\), not 3x5" "$WRITER" "$WORK/err" i img 1 "$WORK/rgb.png" 5 3
expect_fail 1 "cannot create directory" "$WRITER" "$WORK/no/such/dir" s x 1 1
# ---- the trainer's images ----------------------------------------------------------------------
cat > "$WORK/py/check_images.py" <<'EOF'
# check_images.py RUN_DIR DATA_DIR N EPOCHS IMAGE_EPOCHS [RECON_PNG]: the one event file of RUN_DIR
# holds the scalar loss/train at every step 1..EPOCHS and, at each step 1..IMAGE_EPOCHS, exactly one
# image "reconstructions" and one "denoising", and no other image. Every image is a gray PNG (chunk
# CRCs, zlib stream and row filters decoded here) whose IHDR and event fields give the size of a grid
# of the N test images ae_plot_pick chooses (groups of up to 10, 2 or 3 rows a group, tiles of the
# image side x 2 when it is <= 32, 2-pixel gray-128 separators and frame); its test-image rows hold
# exactly those test images (DATA_DIR/t10k-*); the denoising grid's corrupted rows differ from them.
# With RECON_PNG (what `aetrain reconstruct` drew from the last checkpoint): the last reconstructions
# are that picture, pixel for pixel within one gray level. Prints "ok: ..." lines; exits 1 at a failure.
import glob, os, struct, sys, zlib
import tensorboard_pb2 as pb
from tfrec import fail, records

COLS, SEP, SEP_GRAY, SIG = 10, 2, 128, b"\x89PNG\r\n\x1a\n"
run, data_dir = sys.argv[1], sys.argv[2]
n, epochs, img_epochs = (int(a) for a in sys.argv[3:6])
recon_png = sys.argv[6] if len(sys.argv) > 6 else None

def idx_file(path):
    b = open(path, "rb").read()
    nd = b[3]
    dims = struct.unpack(">%dI" % nd, b[4:4 + 4 * nd])
    return dims, b[4 + 4 * nd:]

(nt, side, side2), x = idx_file(os.path.join(data_dir, "t10k-images-idx3-ubyte"))
_, y = idx_file(os.path.join(data_dir, "t10k-labels-idx1-ubyte"))
if side != side2:
    fail("test images %dx%d" % (side, side2))
# ae_plot_pick: one of each class in turn (the first of class 0, of class 1, ..., then the second ...)
nclass, pick, nxt = max(y) + 1, [], [0] * (max(y) + 1)
while len(pick) < min(n, nt):
    progress = False
    for c in range(nclass):
        if len(pick) == min(n, nt):
            break
        i = nxt[c]
        while i < nt and y[i] != c:
            i += 1
        nxt[c] = i + 1 if i < nt else nt
        if i < nt:
            pick.append(i)
            progress = True
    if not progress:
        break
tests = [x[i * side * side:(i + 1) * side * side] for i in pick]
scale = 2 if side <= 32 else 1
cols = min(len(pick), COLS)
groups = (len(pick) + cols - 1) // cols
tile = side * scale

def grid_size(nrow):
    rows = groups * nrow
    return cols * tile + (cols + 1) * SEP, rows * tile + (rows + 1) * SEP

def paeth(a, b, c):
    p = a + b - c
    pa, pb_, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb_ and pa <= pc else (b if pb_ <= pc else c)

def decode_gray(png, what):
    """(width, height, rows of bytes) of an 8-bit gray PNG, every chunk CRC checked."""
    if png[:8] != SIG:
        fail("%s: no PNG signature" % what)
    at, idat, ihdr, first = 8, b"", None, True
    while True:
        if at + 12 > len(png):
            fail("%s: no IEND" % what)
        (ln,) = struct.unpack_from(">I", png, at)
        t, d = png[at + 4:at + 8], png[at + 8:at + 8 + ln]
        (crc,) = struct.unpack_from(">I", png, at + 8 + ln)
        if zlib.crc32(t + d) & 0xFFFFFFFF != crc:
            fail("%s: CRC of chunk %r" % (what, t))
        if first and t != b"IHDR":
            fail("%s: first chunk %r" % (what, t))
        first = False
        if t == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", d)
        elif t == b"IDAT":
            idat += d
        at += 12 + ln
        if t == b"IEND":
            break
    w, h, depth, ctype, comp, filt, inter = ihdr
    if (depth, ctype, comp, filt, inter) != (8, 0, 0, 0, 0):
        fail("%s: IHDR depth %d colour type %d interlace %d" % (what, depth, ctype, inter))
    raw = zlib.decompress(idat)
    if len(raw) != h * (w + 1):
        fail("%s: %d bytes of rows for %dx%d" % (what, len(raw), w, h))
    rows, prev = [], bytearray(w)
    for r in range(h):
        f, line = raw[r * (w + 1)], bytearray(raw[r * (w + 1) + 1:(r + 1) * (w + 1)])
        for i in range(w):
            a = line[i - 1] if i else 0
            b, c = prev[i], (prev[i - 1] if i else 0)
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][f] if f <= 4 else fail("%s: filter %d" % (what, f))
            line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return w, h, rows

def tile_at(rows, r, c):
    """The side x side gray levels of tile (r, c), or None when a scaled block is not one level."""
    out = bytearray()
    for i in range(side):
        for j in range(side):
            y0, x0 = SEP + r * (tile + SEP) + i * scale, SEP + c * (tile + SEP) + j * scale
            v = rows[y0][x0]
            if any(rows[y0 + a][x0 + b] != v for a in range(scale) for b in range(scale)):
                return None
            out.append(v)
    return bytes(out)

def check_grid(png, img, nrow, what):
    w, h, rows = decode_gray(png, what)
    ew, eh = grid_size(nrow)
    if (w, h) != (ew, eh) or (img.width, img.height, img.colorspace) != (ew, eh, 1):
        fail("%s: PNG %dx%d, event %dx%d colorspace %d, expected %dx%d gray"
             % (what, w, h, img.width, img.height, img.colorspace, ew, eh))
    if rows[0] != bytes([SEP_GRAY]) * w or any(rw[0] != SEP_GRAY for rw in rows):
        fail("%s: frame is not gray %d" % (what, SEP_GRAY))
    for k, t in enumerate(tests):
        got = tile_at(rows, (k // cols) * nrow, k % cols)
        if got != t:
            fail("%s: test image %d (sample %d) is not in its tile" % (what, k, pick[k]))
    return rows

files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
if len(files) != 1:
    fail("%d event files in %s" % (len(files), run))
images, losses = {}, set()
for body in records(open(files[0], "rb").read())[1:]:
    ev = pb.Event.FromString(body)
    for v in ev.summary.value:
        if v.WhichOneof("value") == "image":
            if (v.tag, ev.step) in images:
                fail("two images %s at step %d" % (v.tag, ev.step))
            images[(v.tag, ev.step)] = v.image
        elif v.tag == "loss/train":
            losses.add(ev.step)
want = {(t, s) for t in ("reconstructions", "denoising") for s in range(1, img_epochs + 1)}
if set(images) != want:
    fail("images %s, expected %s" % (sorted(images), sorted(want)))
if losses != set(range(1, epochs + 1)):
    fail("loss/train at steps %s" % sorted(losses))
print("ok: %d images (reconstructions, denoising at steps 1..%d), loss/train at steps 1..%d"
      % (len(images), img_epochs, epochs))
last = None
for (tag, step), img in sorted(images.items()):
    what = "%s at step %d" % (tag, step)
    rows = check_grid(img.encoded_image_string, img, 2 if tag == "reconstructions" else 3, what)
    if tag == "denoising":
        for k, t in enumerate(tests):
            if tile_at(rows, (k // cols) * 3 + 1, k % cols) == t:
                fail("%s: corrupted image %d equals the clean one" % (what, k))
    if tag == "reconstructions" and step == img_epochs:
        last = rows
if images:
    ew, eh = grid_size(2)
    print("ok: valid gray PNGs of %dx%d (reconstructions) and %dx%d (denoising); their test-image rows are "
          "test samples %s; corrupted rows differ" % (ew, eh, grid_size(3)[0], grid_size(3)[1], pick))
if recon_png:
    w, h, rows = decode_gray(open(recon_png, "rb").read(), recon_png)
    worst = max(abs(a - b) for ra, rb in zip(rows, last) for a, b in zip(ra, rb))
    if (w, h) != grid_size(2) or worst > 1:
        fail("last reconstructions vs %s: %dx%d, largest difference %d" % (recon_png, w, h, worst))
    print("ok: the last reconstructions are aetrain reconstruct's picture (largest difference %d)" % worst)
EOF
img_check() { py_pass check_images "$@"; }

SIDE=12
NSHOW=12 # more than one group of 10
make_data "$WORK/data" 300 60 "$SIDE"
cat > "$WORK/img.ini" <<EOC
[model]
encoder = gauss(0.3), flatten, dense(16, relu, name=code)
decoder = dense($((SIDE * SIDE)), sigmoid), reshape(1, $SIDE, $SIDE)
[train]
batch = 50
epochs = 2
validation = 50
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
tb_images = $NSHOW
EOC
# train NAME [ARGS...]: run img.ini on 2 ranks (AE_FAULT passed on when set), quiet, as run NAME
train() {
  local name=$1 rc=0
  shift
  mpi 2 -x AE_FAULT "$AETRAIN" train "$WORK/img.ini" --run "$name" --quiet "$@" >"$WORK/$name.out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || tail -n 5 "$WORK/$name.out"
  return "$rc"
}
export AE_FAULT=
if train img; then ok "a run with tb_images = $NSHOW"; else bad "a run with tb_images = $NSHOW"; fi
check "aetrain reconstruct draws the last checkpoint's reconstructions" \
  '"$AETRAIN" reconstruct "$(newest_ckpt "$WORK/runs/img")" --out "$WORK/recon.png" -n "$NSHOW" >/dev/null'
img_check "the run's event file: images of every epoch, the test images in them" \
  "$WORK/runs/img" "$WORK/data" "$NSHOW" 2 2 "$WORK/recon.png"

if train noimg --set run.tb_images=0; then ok "a run with tb_images = 0"; else bad "a run with tb_images = 0"; fi
img_check "tb_images = 0: scalars, no image" "$WORK/runs/noimg" "$WORK/data" "$NSHOW" 2 0
check "the images change nothing: the final checkpoints are bitwise equal" \
  '"$TOOL" bitequal "$(newest_ckpt "$WORK/runs/img")" "$(newest_ckpt "$WORK/runs/noimg")"'

# a failure to make the images of epoch 2: a warning, the event file ends, training goes on
AE_FAULT=tbimage:0:2
if train fault; then ok "a run whose images fail"; else bad "a run whose images fail"; fi
check "... warns that the TensorBoard events stop" \
  'grep -q "TensorBoard images: .*injected fault: images of epoch 2 (TensorBoard events stop here)" \
     "$WORK/runs/fault/log.txt"'
check "... and trains on to the same checkpoint" \
  '"$TOOL" bitequal "$(newest_ckpt "$WORK/runs/img")" "$(newest_ckpt "$WORK/runs/fault")"'
AE_FAULT=
img_check "... its event file has the scalars of epochs 1 and 2, the images of epoch 1 only" \
  "$WORK/runs/fault" "$WORK/data" "$NSHOW" 2 1
finish
