"""``cityunion video watch``: a camera's video analysed by a Ray actor, its
alerts raised on the ledger with the worker's terminal identity."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import uuid
from pathlib import Path
from typing import Any, cast

from cli.common import UserError, add_data_dir, add_ledger, connect_args, print_json

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("video", help="video analysis of registered cameras")
    vsub = p.add_subparsers(dest="video_command", required=True, metavar="ACTION")
    w = vsub.add_parser(
        "watch", help="analyse a camera's stream or recording until it ends (or "
                      "Ctrl-C), raising each incident once as a video alert")
    w.add_argument("--camera", required=True,
                   help="the camera's id, or its code in --city")
    w.add_argument("--city", required=True,
                   help="the camera's city (its terminal identity raises alerts)")
    w.add_argument("--source", required=True,
                   help="a video file, rtsp:// or http(s):// stream (off chain: "
                        "credentials in the URL never reach the ledger)")
    w.add_argument("--user", default="terminal",
                   help="the wallet user that raises alerts (default: terminal)")
    w.add_argument("--address", default=None,
                   help="an existing Ray cluster (RAY_AUTH_TOKEN in the "
                        "environment); default: `workers up`'s, else a local one")
    w.add_argument("--sample-fps", type=float, default=10.0,
                   help="frames analysed per second of video (default 10)")
    w.add_argument("--pace", type=float, default=0.0,
                   help="play a file at this many times real time (default: as "
                        "fast as it is analysed)")
    w.add_argument("--queue", type=int, default=32,
                   help="frames buffered between reading and analysis")
    w.add_argument("--reconnect-attempts", type=int, default=8,
                   help="a live stream that drops is reopened with backoff; the "
                        "watch fails after this many failures in a row (default 8)")
    w.add_argument("--max-backoff", type=float, default=8.0,
                   help="the longest wait between reconnects, seconds (default 8; "
                        "the first is 0.5, doubling)")
    w.add_argument("--crowd-estimator", default="foreground",
                   help="how crowds are counted: foreground (density, the "
                        "default) or hog (OpenCV's people detector), for every "
                        "zone or by zone: plaza=hog,*=foreground")
    w.add_argument("--model", type=Path, default=None,
                   help="a YOLOv8-layout ONNX model to use instead of the "
                        "classical detectors (with --names)")
    w.add_argument("--names", type=Path, default=None,
                   help="the model's class names, one per line")
    w.add_argument("--model-kinds", default=None,
                   help="the kinds the model detects, e.g. crowd,fire (default: "
                        "those whose classes --names lists)")
    w.add_argument("--quiet", action="store_true", help="no progress lines")
    add_data_dir(w)
    add_ledger(w)
    w.set_defaults(run=run_watch)


def _progress(p: dict[str, float]) -> None:
    print(f"\rt={p['t']:7.1f}s frames={int(p['frames'])} fps={p['fps']:.0f} "
          f"queue={int(p['queue'])} dropped={int(p['dropped'])} "
          f"reconnects={int(p['reconnects'])} alerts={int(p['alerts'])}",
          end="", file=sys.stderr, flush=True)


def _estimators(text: str) -> str | dict[str, str]:
    """``hog``, or by zone: ``plaza=hog,*=foreground``."""
    if "=" not in text:
        return text
    pairs = [p.split("=", 1) for p in text.split(",")]
    if bad := [p[0] for p in pairs if len(p) != 2]:
        raise UserError(f"--crowd-estimator {','.join(bad)}: give ZONE=ESTIMATOR "
                        "pairs, e.g. plaza=hog,*=foreground")
    return {zone.strip(): est.strip() for zone, est in pairs}


def run_watch(args: argparse.Namespace) -> int:
    from chaincode.cameras import derive_camera_id
    from chaincode.errors import NotFound
    from workers.cluster import join
    from workers.video.actor import drive, start_actor
    from workers.video.evidence import EvidenceStore
    from workers.video.health import HealthWriter
    from workers.video.model import KINDS, Kind
    from workers.video.service import Raiser, WatchError, check_source, watch_config

    if (args.sample_fps <= 0 or args.pace < 0 or args.queue < 1
            or args.reconnect_attempts < 0 or args.max_backoff <= 0):
        raise UserError("--sample-fps must be > 0, --pace >= 0, --queue >= 1, "
                        "--reconnect-attempts >= 0, --max-backoff > 0")
    if (args.model is None) != (args.names is None):
        raise UserError("--model and --names go together")
    kinds: tuple[Kind, ...] | None = None
    if args.model_kinds:
        given = tuple(k.strip() for k in args.model_kinds.split(","))
        if bad := [k for k in given if k not in KINDS]:
            raise UserError(f"--model-kinds {','.join(bad)}: accepted "
                            f"{', '.join(KINDS)}")
        kinds = cast(tuple[Kind, ...], given)
    try:
        camera_id = str(uuid.UUID(args.camera))
    except ValueError:
        camera_id = derive_camera_id(args.city, args.camera)
    conn = connect_args(args)
    try:
        user = args.user
        ledger = conn.client(args.city, user)
        try:
            camera = ledger.evaluate("GetCamera", {"id": camera_id})
        except NotFound:
            raise UserError(f"--camera {args.camera}: no camera {camera_id} on the "
                            "ledger (register it first)") from None
        if camera["city"] != args.city:
            raise UserError(f"--city {args.city}: the camera belongs to "
                            f"{camera['city']}")
        try:
            config = watch_config(
                camera, check_source(args.source), args.data_dir,
                sample_fps=args.sample_fps, pace=args.pace, queue_size=args.queue,
                reconnect_attempts=args.reconnect_attempts,
                max_backoff_s=args.max_backoff, model=args.model,
                names=args.names, model_kinds=kinds,
                crowd_estimator=_estimators(args.crowd_estimator))
        except WatchError as e:
            flag = ("--model/--names" if e.field == "model"
                    else f"--{e.field.replace('_', '-')}")
            raise UserError(f"{flag}: {e}") from None
        base = args.data_dir / "video"
        joined = join(args.data_dir, args.address)
        raiser = Raiser(ledger, camera_id, EvidenceStore(base / "evidence"))
        # the camera's health for the API (/api/cameras/health), at each report
        health = HealthWriter(base / "health", camera_id, args.city,
                              camera.get("camera_code"))

        def progress(p: dict[str, float]) -> None:
            try:
                health(p)
            except OSError as e:  # health is advisory: never stop the watch
                log.warning("camera health not written: %s", e)
            if not args.quiet:
                _progress(p)

        try:
            result = drive(start_actor(config), raiser, progress)
        finally:
            with contextlib.suppress(OSError):
                health.stopped()
        if not args.quiet:
            print(file=sys.stderr)
        print_json({**result, "camera_id": camera_id, "ray": joined,
                    "alert_ids": raiser.raised, "already_raised": raiser.duplicates})
    finally:
        conn.close()
    return 0
