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

cat > "$WORK/py/read_events.py" <<'EOF'
# read_events.py FILE T0 T1 OP...: FILE must hold exactly the file_version event and one event per
# OP (the ops given to tb_write: "s TAG STEP VALUE", "i TAG STEP PNG H W"; "wait" is skipped), with
# wall times in [T0 - 1, T1 + 1]. Prints "ok: ..." per check passed; exits 1 at the first failure.
import math, os, re, socket, struct, sys
import tensorboard_pb2 as pb
from google.protobuf.internal import api_implementation

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

data = open(path, "rb").read()
records, at = [], 0
while at < len(data):
    if len(data) - at < 12:
        fail("%d stray bytes at offset %d" % (len(data) - at, at))
    (n,) = struct.unpack_from("<Q", data, at)
    (lcrc,) = struct.unpack_from("<I", data, at + 8)
    if lcrc != masked(data[at:at + 8]):
        fail("record %d: masked CRC of the length" % len(records))
    if at + 12 + n + 4 > len(data):
        fail("record %d: truncated (length %d)" % (len(records), n))
    body = data[at + 12:at + 12 + n]
    (dcrc,) = struct.unpack_from("<I", data, at + 12 + n)
    if dcrc != masked(body):
        fail("record %d: masked CRC of the data" % len(records))
    records.append(body)
    at += 12 + n + 4
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

read_events() { PYTHONPATH="$WORK/py" "$PY" "$WORK/py/read_events.py" "$@"; }
# py_check WHAT ARGS...: read_events must pass; its own lines first
py_check() {
  local what=$1 out rc=0
  shift
  out=$(read_events "$@") || rc=$?
  echo "$out" | sed 's/^/  python /'
  if [ "$rc" -eq 0 ]; then ok "$what"; else bad "$what"; fi
}
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
finish
