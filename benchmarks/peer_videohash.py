#!/usr/bin/env python3
"""videohash peer for the benchmark: hash video files with the PyPI ``videohash`` package.

Runs *inside videohash's own environment* (it needs ``pillow<10`` and the ``ffmpeg`` binary, so it
is never installed beside vmatch); ``bench_run.py`` calls it as a subprocess:

    <venv-videohash>/bin/python benchmarks/peer_videohash.py FILE...

and reads one JSON object per file on stdout: ``{"path", "hash" (64-bit, "0b…"), "seconds"
(wall time of the hash, decode included)}`` or ``{"path", "error"}``. No vmatch import: this
script sees only videohash.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time


def main(argv: list[str]) -> int:
    try:
        from videohash import VideoHash
    except ImportError as e:
        print(f"peer_videohash: cannot import videohash ({e}); install it in its own venv: "
              "pip install 'pillow<10' videohash (and apt-get install ffmpeg)", file=sys.stderr)
        return 2
    rc = 0
    for path in argv:
        work = tempfile.mkdtemp(prefix="vh-")
        t = time.monotonic()
        try:
            h = VideoHash(path=path, storage_path=work + "/")  # videohash wants the trailing slash
            rec = {"path": path, "hash": h.hash, "seconds": time.monotonic() - t}
        except Exception as e:  # videohash raises many kinds; report per file, go on
            rec = {"path": path, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
            rc = 1
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(rec), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
