"""Command line, the HTTP service: ``vmatch serve`` (FastAPI + uvicorn, imported only here) and
``vmatch key create|list|revoke`` (its API keys).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from vmatch.cli.common import _err, EXIT_OK, EXIT_PARTIAL
from vmatch.errors import UsageError


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from vmatch.service import ServiceConfig, create_app
    except ImportError as e:
        raise UsageError(f"the service needs FastAPI and uvicorn: pip install 'vmatch[serve]' ({e})") from e
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):  # the other limits: ServiceConfig
        raise UsageError(f"--max-upload-mb must be a finite number > 0, got {args.max_upload_mb}")
    opts = dict(
        bank_root=Path(args.bank_root), device=args.device, fps=args.fps, queue_size=args.queue_size,
        torch_threads=args.threads, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
        max_duration=args.max_duration, max_side=args.max_side, max_frames=args.max_frames,
        sync_max_duration=args.sync_max_duration, sync_wait=args.sync_wait, job_timeout=args.job_timeout,
        media_root=Path(args.media_root) if args.media_root else None,
        upload_dir=Path(args.upload_dir) if args.upload_dir else None,
        allow_test_models=args.allow_test_models,
    )
    if args.model is not None:
        opts["default_model"] = args.model
    if args.workers is not None:
        opts["workers"] = args.workers
    config = ServiceConfig(**opts)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def cmd_key(args) -> int:
    from vmatch.service.keys import KeyStore

    store = KeyStore(args.bank_root)
    if args.key_command == "create":
        token, key = store.create(args.name, args.scope)
        print(token)
        print(f"created key {key.key_id} ({key.name}; scopes {','.join(key.scopes)}); it is shown only now: "
              "store it, the server keeps only its SHA-256", file=sys.stderr)
        return EXIT_OK
    if args.key_command == "list":
        for k in store.list():
            if args.json:
                print(json.dumps(k.to_dict()))
            else:
                state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
                print(f"{k.key_id}\t{k.name}\t{','.join(k.scopes)}\t{k.created_at}\t{state}")
        return EXIT_OK
    failed = 0
    for kid in args.key_ids:
        if store.revoke(kid):
            print(f"revoked {kid}")
        else:
            _err(f"{kid}: no active key with this id in {args.bank_root}")
            failed += 1
    return EXIT_PARTIAL if failed else EXIT_OK

