"""Loading the enabled model-backed rewards at server start-up, and stopping their workers.

Every model goes the same way, whichever reward wants it: the sentiment classifier (a declared
:class:`ModelBackedReward`) and each reward model (``reward_models`` / ``--reward-model``) become a
:class:`ModelPlan`; each plan loads its classifier on its device, gets its own batching worker, and
its reward's ``score_async`` is bound to that worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reward_server.config import ConfigError
from reward_server.models.base import MODEL_REWARDS, BatchSettings, ModelBackedReward, ModelLoadError, ScoreAsync
from reward_server.models.batcher import ModelWorker
from reward_server.models.loading import Classifier, load_classifier, resolve_device
from reward_server.models.spec import RewardModelSpec
from reward_server.models.stats import BatcherStats
from reward_server.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


class LoadedModels:
    """The batching workers of one server, one per model-backed reward."""

    def __init__(self) -> None:
        #: Reward name → its model's worker.
        self.workers: dict[str, ModelWorker] = {}

    def stats(self) -> dict[tuple[str, str], BatcherStats]:
        """Counters per worker, keyed (reward, ``model@device``): what the metrics exporter reads."""
        return {(reward, worker.name): worker.stats for reward, worker in self.workers.items()}

    async def close(self) -> None:
        await asyncio.gather(*(worker.close() for worker in self.workers.values()))
        self.workers.clear()


@dataclass(frozen=True)
class ModelPlan:
    """One reward's model: what to load, how to tokenize for it, and how the reward uses the worker."""

    spec: RewardModelSpec
    #: The tokenizer's special tokens around each text (the sentiment pipeline), or none (reward models, as TRL).
    add_special_tokens: bool
    bind: Callable[[ModelWorker], ScoreAsync]
    #: Batch settings of its own (reward models' per-model overrides), or the server's.
    own_batching: bool = False


def model_plans(config: Any, registry: Registry, specs: Mapping[str, ModelBackedReward]) -> list[ModelPlan]:
    """The models this configuration enables; reward models are declared into ``registry`` on the way.

    Declared model-backed rewards that are not enabled stay disabled, with the flag that enables them.
    """
    from reward_server.rewards import reward_model  # the reward layer, imported only when serving

    plans = []
    for spec in specs.values():
        if not spec.enabled(config):
            registry.disable(spec.reward, spec.how_to_enable)
            continue
        plans.append(ModelPlan(RewardModelSpec(spec.reward, spec.model_id(config)), True, spec.bind))
    for rm in config.reward_models:
        if rm.name in registry:
            raise ConfigError(f"reward model name {rm.name!r} is already a reward's name or alias; pick another")
        reward_model.declare(rm.name, registry)
        plans.append(ModelPlan(rm, False, reward_model.bind, own_batching=True))
    return plans


async def load_model_rewards(
    config: Any, registry: Registry = REGISTRY, specs: Mapping[str, ModelBackedReward] = MODEL_REWARDS
) -> LoadedModels:
    """Load the model of every enabled model-backed reward and bind the reward to its worker.

    Raises :class:`ModelLoadError` naming the reward, the model and the reason when a model
    cannot be loaded; the workers already started are stopped first.
    """
    loaded = LoadedModels()
    try:
        settings = BatchSettings.from_config(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    plans = model_plans(config, registry, specs)
    if not plans and config.device not in ("", "auto"):
        log.warning("device %s is set, but no model is enabled: nothing runs on it", config.device)
    for plan in plans:
        spec = plan.spec
        where = spec.device or config.device
        try:
            batching = spec.batch_settings(settings) if plan.own_batching else settings
        except ValueError as exc:
            await loaded.close()
            raise ConfigError(f"reward model {spec.name}: {exc}") from exc
        try:
            where = await asyncio.to_thread(resolve_device, where)
            classifier = await asyncio.to_thread(_load, plan, where)
        except ModelLoadError as exc:
            await loaded.close()
            raise ModelLoadError(f"cannot load model {spec.model!r} for reward {spec.name} on {where}: {exc}") from exc
        worker = ModelWorker(classifier, batching)
        worker.start()
        loaded.workers[spec.name] = worker
        reward = next(r for r in registry if r.name == spec.name)
        registry.replace(
            dataclasses.replace(
                reward,
                score_async=plan.bind(worker),
                model_id=spec.model,
                device=where,
                model_revision=classifier.revision,
                dtype=classifier.dtype,
                # The catalogue version moves when the model does, not only when the code does.
                code_version=hashlib.sha256(f"{reward.code_version}\0{classifier.revision}".encode()).hexdigest()[:12],
            )
        )
    if loaded.workers:
        if not config.gil_switch_interval_ms > 0:
            await loaded.close()
            raise ConfigError(f"gil_switch_interval_ms must be > 0, got {config.gil_switch_interval_ms}")
        sys.setswitchinterval(config.gil_switch_interval_ms / 1000)
    return loaded


def _load(plan: ModelPlan, device: str) -> Classifier:
    """Load the classifier and run one text through it, so the first request pays no warm-up."""
    start = time.perf_counter()
    spec = plan.spec
    classifier = load_classifier(
        spec.model,
        device,
        revision=spec.revision,
        dtype=spec.dtype,
        max_length=spec.max_length,
        add_special_tokens=plan.add_special_tokens,
    )
    try:
        classifier.predict(classifier.encode(["warm-up"]), [[0]])
    except Exception as exc:  # a model that cannot run one text is a load failure
        raise ModelLoadError(f"a test forward pass failed: {type(exc).__name__}: {exc}") from exc
    log.info(
        "loaded model %s on %s in %.1f s for reward %s: %s, revision %s, labels %s, texts truncated to %d tokens",
        spec.model,
        device,
        time.perf_counter() - start,
        spec.name,
        classifier.dtype,
        classifier.revision or "-",
        ", ".join(classifier.labels),
        classifier.max_length,
    )
    return classifier
