"""Processes that carry calls run them at a raised priority (``sip.
raise_priority``) where they may: pjmedia's threads (the media clock among
them) run at ``MEDIA_NICE``, so other work on the machine delays them less."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from voice_helpers import (
    EXPECTED_NICE,
    pjsua_thread_niceness,
    start_citizen,
)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_the_citizen_runs_its_calls_at_a_raised_priority(tmp_path: Path) -> None:
    citizen = start_citizen({"*": {"steps": []}}, tmp_path)
    try:
        assert os.getpriority(os.PRIO_PROCESS, citizen.proc.pid) == EXPECTED_NICE
        threads = pjsua_thread_niceness(citizen.proc.pid)
    finally:
        citizen.stop()
    assert threads == {EXPECTED_NICE}
