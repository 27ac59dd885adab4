#!/usr/bin/env bash
# One command for the matching benchmark (issue 4): set up the peers, generate the benchmark from
# ../shared/clips (evaluation split only, seed 0), run vmatch, vPDQ and videohash on the same files
# in the same run, and write the tables + plots into benchmarks/RESULTS.md.
#
#   benchmarks/run_benchmark.sh [--clips DIR] [--seed N] [--systems vmatch,vmatch-unverified,vpdq,videohash]
#
# vmatch-unverified is vmatch without pair verification (issue 14: the CNN score alone, no keypoints):
# the cost baseline, run in the same process so that its timings compare as ratios.
#
# Needs the README's set-up (.venv with vmatch). Peers stay out of vmatch's runtime install:
#   * vpdq + matplotlib: the `bench` extra in .venv (vpdq builds against FFmpeg's headers, installed
#     with apt-get when this runs as root on Debian);
#   * videohash: its own venv benchmarks/work/venv-videohash (it needs pillow<10) + the ffmpeg binary.
set -euo pipefail
cd "$(dirname "$0")/.."

clips=../shared/clips seed=0 systems=vmatch,vmatch-unverified,vpdq,videohash
while [ $# -gt 0 ]; do
  case "$1" in
    --clips) clips=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    *) echo "run_benchmark.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

[ -x .venv/bin/python ] || { echo "run_benchmark.sh: no .venv; run the README's set-up first" >&2; exit 2; }
export PIP_DISABLE_PIP_VERSION_CHECK=1

apt_ok() {  # install Debian packages when missing and possible (root + apt-get)
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

if [[ ,$systems, == *,vpdq,* ]] && ! .venv/bin/python -c "import vpdq, matplotlib" 2>/dev/null; then
  echo "== installing the bench extra (vpdq, pdqhash, matplotlib)"
  apt_ok libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
         libavdevice-dev libavfilter-dev pkg-config || echo "note: could not apt-get FFmpeg headers" >&2
  .venv/bin/pip install -q -e '.[bench]' || echo "note: bench extra failed; vpdq may be skipped" >&2
fi

vh=benchmarks/work/venv-videohash
if [[ ,$systems, == *,videohash,* ]] && [ ! -x $vh/bin/python ]; then
  echo "== making videohash's own venv ($vh)"
  command -v ffmpeg >/dev/null || apt_ok ffmpeg || echo "note: no ffmpeg binary; videohash will fail" >&2
  python3 -m venv $vh.tmp && $vh.tmp/bin/pip install -q 'pillow<10' 'videohash==3.0.1' && mv $vh.tmp $vh \
    || { rm -rf $vh.tmp; echo "note: videohash venv failed; videohash skipped" >&2; }
fi

echo "== generating the benchmark from $clips (seed $seed)"
.venv/bin/python benchmarks/bench_generate.py --clips "$clips" --out benchmarks/work/bench --seed "$seed"
echo "== running $systems"
.venv/bin/python benchmarks/bench_run.py --bench benchmarks/work/bench --systems "$systems" \
  --results benchmarks/RESULTS.md
