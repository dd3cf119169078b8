"""Loading the enabled model-backed rewards at server start-up, and stopping their workers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from reward_server.config import ConfigError
from reward_server.models.base import MODEL_REWARDS, BatchSettings, ModelBackedReward, ModelLoadError
from reward_server.models.batcher import ModelWorker
from reward_server.models.loading import Classifier, load_classifier, resolve_device
from reward_server.models.stats import BatcherStats
from reward_server.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


class LoadedModels:
    """The batching workers of one server, one per (model, device)."""

    def __init__(self) -> None:
        self.workers: dict[tuple[str, str], ModelWorker] = {}

    def stats(self) -> dict[str, BatcherStats]:
        """Counters per worker, keyed ``model@device`` (what a metrics exporter reads)."""
        return {worker.name: worker.stats for worker in self.workers.values()}

    async def close(self) -> None:
        await asyncio.gather(*(worker.close() for worker in self.workers.values()))
        self.workers.clear()


async def load_model_rewards(
    config: Any, registry: Registry = REGISTRY, specs: Mapping[str, ModelBackedReward] = MODEL_REWARDS
) -> LoadedModels:
    """Load the model of every enabled model-backed reward and bind the reward to its worker.

    Rewards that are not enabled stay disabled, with the flag that enables them as the reason.
    Raises :class:`ModelLoadError` naming the reward, the model and the reason when a model
    cannot be loaded; the workers already started are stopped first.
    """
    loaded = LoadedModels()
    try:
        settings = BatchSettings.from_config(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    device = ""
    for spec in specs.values():
        if not spec.enabled(config):
            registry.disable(spec.reward, spec.how_to_enable)
            continue
        model_id = spec.model_id(config)
        try:
            device = device or await asyncio.to_thread(resolve_device, config.device)
            worker = loaded.workers.get((model_id, device))
            if worker is None:
                worker = ModelWorker(await asyncio.to_thread(_load, model_id, device), settings)
                worker.start()
                loaded.workers[(model_id, device)] = worker
        except ModelLoadError as exc:
            await loaded.close()
            where = device or config.device
            raise ModelLoadError(f"cannot load model {model_id!r} for reward {spec.reward} on {where}: {exc}") from exc
        reward = next(r for r in registry if r.name == spec.reward)
        registry.replace(dataclasses.replace(reward, score_async=spec.bind(worker), model_id=model_id, device=device))
    if loaded.workers:
        if not config.gil_switch_interval_ms > 0:
            await loaded.close()
            raise ConfigError(f"gil_switch_interval_ms must be > 0, got {config.gil_switch_interval_ms}")
        sys.setswitchinterval(config.gil_switch_interval_ms / 1000)
    return loaded


def _load(model_id: str, device: str) -> Classifier:
    """Load the classifier and run one text through it, so the first request pays no warm-up."""
    start = time.perf_counter()
    classifier = load_classifier(model_id, device)
    try:
        classifier.predict(classifier.encode(["warm-up"]), [[0]])
    except Exception as exc:  # a model that cannot run one text is a load failure
        raise ModelLoadError(f"a test forward pass failed: {type(exc).__name__}: {exc}") from exc
    log.info(
        "loaded model %s on %s in %.1f s: labels %s, texts truncated to %d tokens",
        model_id,
        device,
        time.perf_counter() - start,
        ", ".join(classifier.labels),
        classifier.max_length,
    )
    return classifier
