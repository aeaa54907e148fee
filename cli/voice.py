"""``cityunion voice``: call-script templates and outbound call campaigns."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.common import UserError


def register(sub: Any) -> None:
    p = sub.add_parser("voice", help="outbound voice robot: templates, campaigns")
    vsub = p.add_subparsers(dest="voice_command", required=True, metavar="AREA")
    tpl = vsub.add_parser("template", help="check call-script templates")
    tsub = tpl.add_subparsers(dest="template_command", required=True,
                              metavar="ACTION")
    check = tsub.add_parser("check", help="validate a template file (YAML or "
                                          "JSON); print its name, version and SM3")
    check.add_argument("file", type=Path)
    check.set_defaults(run=run_check)
    schema = tsub.add_parser("schema", help="print the template JSON Schema")
    schema.set_defaults(run=run_schema)


def run_check(args: argparse.Namespace) -> int:
    from workers.voice.template import TemplateError, load_template

    if not args.file.is_file():
        raise UserError(f"{args.file}: no such file")
    try:
        t = load_template(args.file)
    except TemplateError as e:
        raise UserError(str(e)) from None
    mode = "speech and DTMF" if t.needs_speech else "DTMF only"
    print(f"{args.file}: ok: {t.name} version {t.version} ({mode}, "
          f"{len(t.nodes)} nodes)\nsm3 {t.sm3}")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from workers.voice.template import template_schema

    print(json.dumps(template_schema(), ensure_ascii=False, indent=2))
    return 0
