"""One camera's analysis: its detectors on each frame, then the debounce, so
that each incident is reported once."""

from __future__ import annotations

from collections.abc import Sequence

from workers.video.classical import (
    CROWD_ESTIMATORS,
    Background,
    CrowdDetector,
    FireDetector,
    GarbageDetector,
    HogCrowdDetector,
    Joined,
    Perspective,
    SmokeDetector,
)
from workers.video.model import (
    KINDS,
    Debounce,
    Detection,
    Detector,
    Frame,
    Incident,
    Kind,
    Zone,
)


class Analyzer:
    """The detectors of one camera over its zones. ``detectors`` replaces the
    classical ones by kind (e.g. an ONNX person detector for ``crowd``)."""

    def __init__(self, zones: Sequence[Zone], fps: float,
                 perspective: Perspective,
                 detectors: dict[Kind, Detector] | None = None) -> None:
        wanted = {k for z in zones for k in z.detectors}
        if bad := sorted({z.crowd_estimator for z in zones} - set(CROWD_ESTIMATORS)):
            raise ValueError(f"crowd estimator {', '.join(bad)}: accepted "
                             f"{', '.join(CROWD_ESTIMATORS)}")
        # Litter is long-term foreground until the long-term model learns it:
        # that must take longer than any zone's garbage time.
        litter_s = max((z.garbage_s for z in zones if "garbage" in z.detectors),
                       default=0.0)
        bg = Background(fps, long_s=max(40.0, 2 * litter_s))
        crowd: Detector = CrowdDetector(
            [z for z in zones if z.crowd_estimator == "foreground"], bg, perspective)
        if hog := [z for z in zones if z.crowd_estimator == "hog"]:
            crowd = Joined("crowd", crowd, HogCrowdDetector(hog))
        classical: dict[Kind, Detector] = {
            "crowd": crowd,
            "fire": Joined("fire", FireDetector(zones, fps),
                           SmokeDetector(zones, bg, fps)),
            "garbage": GarbageDetector(zones, bg),
        }
        classical.update(detectors or {})
        self.detectors = [classical[k] for k in KINDS if k in wanted]
        self.debounce = Debounce(zones)

    def detect(self, frame: Frame, t: float) -> list[Detection]:
        return [d for det in self.detectors for d in det.process(frame, t)]

    def process(self, frame: Frame, t: float) -> list[Incident]:
        """The incidents that open at this frame (each one only once)."""
        return self.debounce.update(self.detect(frame, t), t)
