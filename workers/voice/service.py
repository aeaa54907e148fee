"""Campaigns the API runs: ``LocalCampaign`` drives one (``runner.drive``) in
a thread of the server process, on the server's ledger connection, its calls
placed by Ray call workers (the server joins ``$RAY_ADDRESS`` or starts a
local cluster on the first campaign, ``dialers.connect_ray``). The campaign
is the same as one started by ``cityunion voice campaign start``: its files
(inputs, journal, per-call records) under ``DATA_DIR/voice/campaigns/NAME``,
paused, resumed or cancelled through its control file, from the API or the
shell alike. If the server stops mid-campaign, a resume (API or shell) goes
on from the journal.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.idempotency import StartedKeys
from ledger.protocol import Connection
from workers.voice.campaign import Campaign, FileControl, request_control
from workers.voice.runner import (
    Opened,
    RunError,
    StartOptions,
    begin,
    campaign_dir,
    drive,
    lock,
    reopen_stopped,
)
from workers.voice.sip import free_udp_port

log = logging.getLogger(__name__)
# SIP ports of API-run campaigns' call workers (one each, consecutive), and
# RTP from RTP_BASE, 200 ports a worker.
SIP_PORTS = range(5300, 5500)
RTP_BASE = 40000


def free_sip_ports(workers: int) -> int:
    """The first SIP port of ``workers`` consecutive free ones."""
    for port in range(SIP_PORTS.start, SIP_PORTS.stop - workers + 1, workers):
        try:
            if all(free_udp_port([p]) == p for p in range(port, port + workers)):
                return port
        except OSError:
            continue
    raise RunError(f"no {workers} free SIP ports in {SIP_PORTS.start}-"
                   f"{SIP_PORTS.stop - 1} (other campaigns hold them)", "workers")


def write_inputs(data_dir: Path, opts: StartOptions, template: str, contacts: str,
                 do_not_call: list[str]) -> StartOptions:
    """Save a campaign's inputs under its directory and return ``opts`` naming
    them; refuses a campaign that already exists (before writing)."""
    cdir = campaign_dir(data_dir, opts.name)
    if (cdir / "journal.sqlite").exists():
        raise RunError(f"campaign {opts.name!r} already exists on this node",
                       exists=True)
    inputs = cdir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "template.yaml").write_text(template, encoding="utf-8")
    (inputs / "contacts.csv").write_text(contacts, encoding="utf-8")
    (inputs / "do_not_call.txt").write_text(
        "".join(f"{n}\n" for n in do_not_call), encoding="utf-8")
    return replace(opts, template=inputs / "template.yaml",
                   contacts=inputs / "contacts.csv",
                   do_not_call=inputs / "do_not_call.txt")


class LocalCampaign:
    """A campaign driven in a thread of this process."""

    def __init__(self, run: Opened, data_dir: Path, conn: Connection,
                 started_by: str) -> None:
        self.run, self.data_dir, self.conn = run, data_dir, conn
        self.opts = run.opts
        self.started_by = started_by
        self.started_at = datetime.now(UTC)
        self.state = "starting"  # running, finished, failed
        self.campaign: Campaign | None = None
        self.summary: dict[str, Any] | None = None
        self.error: str | None = None
        self.control_file = run.cdir / "control"
        self._control = FileControl(self.control_file)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"campaign-{self.opts.name}")

    @property
    def name(self) -> str:
        return self.opts.name

    @property
    def key(self) -> tuple[str, str, str]:
        return self.opts.city, self.opts.department, self.opts.name

    def start(self) -> None:
        self.thread.start()

    def _attached(self, campaign: Campaign) -> None:
        self.campaign, self.state = campaign, "running"

    def _run(self) -> None:
        try:
            self.summary = drive(self.run, self.data_dir, self.conn, self._control,
                                 on_campaign=self._attached)
            self.state = "finished"
        except Exception as e:  # shown to the API's callers, and logged
            self.error, self.state = str(e) or type(e).__name__, "failed"
            log.exception("campaign %s failed", self.opts.name)

    def command(self, action: str) -> None:
        """Pause, resume or cancel (what the command line writes, too)."""
        request_control(self.control_file, action)

    def describe(self) -> dict[str, Any]:
        c = self.campaign
        return {
            "name": self.opts.name, "city": self.opts.city,
            "department": self.opts.department, "state": self.state,
            "status": c.status.value if c else None,
            "contacts": len(c.contacts) if c else None,
            "finished": c.finished if c else 0,
            "in_flight": c.in_flight if c else 0,
            "outcomes": c.counts() if c else {},
            "started_at": self.started_at, "started_by": self.started_by,
            "concurrency": self.opts.concurrency, "workers": self.opts.workers,
            "hours": self.opts.hours, "attempts": self.opts.attempts,
            "started_tx": self.summary["started_tx"] if self.summary else None,
            "completed_tx": self.summary["completed_tx"] if self.summary else None,
            "error": self.error}


class CampaignRegistry:
    """The campaigns this server runs (and those ended, until it stops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._campaigns: dict[tuple[str, str, str], LocalCampaign] = {}
        # Idempotency keys name a campaign of the key's holder (its department).
        self.keys = StartedKeys("campaign", "another campaign")

    def keyed(self, who: str, key: str, body: bytes, city: str, department: str
              ) -> LocalCampaign | None:
        """The campaign ``who`` (of ``city``'s ``department``) started with
        this idempotency key (``None`` if none is known); the key with another
        body is an error."""
        found = self.keys.find(who, key, body)
        return self.get(city, department, found) if found else None

    def start(self, opts: StartOptions, data_dir: Path, conn: Connection,
              started_by: str, template: str, contacts: str,
              do_not_call: list[str]) -> LocalCampaign:
        """Check and start a campaign; ``RunError`` names the bad input, and
        then nothing is left behind."""
        with self._lock:
            opts.check()
            if (opts.city, opts.department, opts.name) in self._campaigns:
                raise RunError(f"campaign {opts.name!r} already exists",
                               exists=True)
            sip = free_sip_ports(opts.workers)
            opts = replace(opts, sip_port=sip,
                           rtp_port=RTP_BASE + (sip - SIP_PORTS.start) * 200)
            cdir = campaign_dir(data_dir, opts.name)
            existed = cdir.exists()
            opts = write_inputs(data_dir, opts, template, contacts, do_not_call)
            try:
                run = begin(opts, data_dir)
            except RunError as e:
                shutil.rmtree(cdir / "inputs" if existed else cdir,
                              ignore_errors=True)
                # Name the caller's input, not this node's copy of it.
                raise RunError(str(e).replace(f"{cdir / 'inputs'}/", ""),
                               e.field, e.exists) from None
            campaign = LocalCampaign(run, data_dir, conn, started_by)
            self._campaigns[campaign.key] = campaign
        campaign.start()
        return campaign

    def take_over(self, data_dir: Path, conn: Connection, city: str,
                  department: str, name: str, action: str,
                  started_by: str) -> LocalCampaign | None:
        """Resume or cancel (``action``) the department's campaign ``name``
        whose process died (this server's before a restart, or a shell's),
        driving it here; None if the node has no such campaign."""
        cdir = campaign_dir(data_dir, name)
        journal = cdir / "journal.sqlite"
        if not journal.is_file():
            return None
        with self._lock:
            if (city, department, name) in self._campaigns:
                raise RunError(f"campaign {name!r} runs here", exists=True)
            held = lock(cdir)
            if held is None:
                raise RunError(f"campaign {name!r} is driven by another process "
                               "on this node", exists=True)
            try:
                run = reopen_stopped(cdir, held, name, action)
            except BaseException:
                held.close()
                raise
            if (run.opts.city, run.opts.department) != (city, department):
                run.journal.close()
                held.close()
                return None  # another department's: not found
            campaign = LocalCampaign(run, data_dir, conn, started_by)
            self._campaigns[campaign.key] = campaign
        campaign.start()
        return campaign

    def get(self, city: str, department: str, name: str) -> LocalCampaign | None:
        return self._campaigns.get((city, department, name))

    def all(self) -> list[LocalCampaign]:
        return sorted(self._campaigns.values(), key=lambda c: c.started_at,
                      reverse=True)

    def close(self, timeout_s: float = 5.0) -> None:
        """Pause what still runs (its journal keeps it; ``cityunion voice
        campaign resume NAME`` goes on) and wait a little for the threads."""
        for c in self._campaigns.values():
            if c.thread.is_alive():
                c.command("pause")
        for c in self._campaigns.values():
            c.thread.join(timeout_s)
