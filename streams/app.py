"""The composition root: builds a detection worker from one Settings object; nothing connects at import.

``build_worker()`` makes the runtime (``streams.runtime.worker``, which owns
everything Faust), the reference views and the codec, and hands the runtime
Forewarn's stages (``streams.stages``). Stages and detectors never import this
module.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import faust

from schemas.codec import Codec
from streams import topics
from streams.reference import ReferenceView
from streams.runtime import delivery, faust_fixes
from streams.runtime.worker import Runtime, wall_ms
from streams.settings import Settings
from streams.stages import build_stages

__all__ = ["Worker", "build_worker", "read_status", "wall_ms", "worker_datadir", "worker_is_ready"]


@dataclass
class Worker:
    settings: Settings
    bootstrap: str
    runtime: Runtime
    reference: ReferenceView

    @property
    def app(self) -> faust.App:
        return self.runtime.app


def worker_datadir(settings: Settings) -> Path:
    name = settings.worker_id or "worker"
    return settings.data_dir / "faust" / f"{settings.topic('forewarn')}-{name}"


def worker_is_ready(settings: Settings) -> bool:
    """The worker with these settings has joined its group and been given partitions."""
    return (worker_datadir(settings) / "ready").exists()


def read_status(settings: Settings) -> dict | None:
    try:
        return json.loads((worker_datadir(settings) / "status.json").read_text())
    except (OSError, ValueError):
        return None


def build_worker(settings: Settings, bootstrap: str) -> Worker:
    datadir = worker_datadir(settings)
    # Tables live in memory and recover from their changelogs; anything a previous
    # run left on disk would only be stale, so every start begins clean.
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(parents=True, exist_ok=True)
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    reference = ReferenceView(settings, bootstrap, codec)
    # Reps' task updates happen in wall time: a rep acting while older events are replayed must
    # not move the clock (and every deadline of the replay) to today.
    runtime = Runtime(settings, bootstrap, codec, reference, datadir, unclocked=(topics.TASK_UPDATES,))
    for stage in build_stages(settings, reference.reference):
        runtime.add_stage(stage)
    faust_fixes.install(runtime.app)
    delivery.install()
    faust_fixes.seek_uncommitted_partitions_to_beginning(runtime.input_topics)
    return Worker(settings=settings, bootstrap=bootstrap, runtime=runtime, reference=reference)
