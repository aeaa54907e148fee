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


def run_watch(args: argparse.Namespace) -> int:
    from chaincode.cameras import derive_camera_id
    from chaincode.errors import NotFound
    from workers.cluster import join
    from workers.video.actor import Raiser, drive, start_actor, zones_of
    from workers.video.evidence import EvidenceStore
    from workers.video.health import HealthWriter
    from workers.video.model import KINDS, Kind
    from workers.video.watch import WatchConfig, default_perspective, frame_size

    if args.sample_fps <= 0 or args.pace < 0 or args.queue < 1:
        raise UserError("--sample-fps must be > 0, --pace >= 0, --queue >= 1")
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
            _, height = frame_size(args.source)
        except FileNotFoundError as e:
            raise UserError(f"--source: {e}") from None
        base = args.data_dir / "video"
        config = WatchConfig(
            camera_id, args.source, zones_of(camera), default_perspective(height),
            base / "checkpoints" / f"{camera_id}.json", base / "evidence",
            sample_fps=args.sample_fps, pace=args.pace, queue_size=args.queue,
            model=args.model, names=args.names, model_kinds=kinds)
        try:
            config.detectors()  # a bad model fails here, not in the actor
        except (ValueError, OSError) as e:
            raise UserError(f"--model/--names: {e}") from None
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
