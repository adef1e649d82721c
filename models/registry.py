"""MLflow wiring and the model lifecycle: register, compare, promote, roll back, list.

The champion is an alias; every move of it is recorded as tags on the versions involved
(`pitstop.previous_champion` on the promoted version), so a rollback walks back through
earlier champions and `list_models` shows the history without a database of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core.config import PitstopConfig
from core.errors import PitstopError

log = logging.getLogger(__name__)

PREVIOUS_TAG = "pitstop.previous_champion"
PROMOTED_AT_TAG = "pitstop.promoted_at"
PROMOTION_TAG = "pitstop.promotion"
ROLLED_BACK_TAG = "pitstop.rolled_back_at"
KEY_METRICS: tuple[str, ...] = ("holdout_nrmse", "holdout_mae", "holdout_smape", "holdout_mase")


class RegistryError(PitstopError, RuntimeError):
    """A registry operation that cannot be done; the message says what to do instead."""


def configure_mlflow(cfg: PitstopConfig) -> str:
    """Point MLflow at the configured tracking and registry stores; returns the experiment id.

    Local SQLite stores and artifact folders are created on first use, and a new
    experiment stores its artifacts under `mlflow.artifact_root` when one is set.
    """
    tracking = cfg.mlflow.tracking_uri
    for uri in (tracking, cfg.mlflow.registry_uri):
        if uri and uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or tracking)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        location = None
        if cfg.mlflow.artifact_root:
            root = cfg.mlflow.artifact_root
            if "://" not in root:
                Path(root).mkdir(parents=True, exist_ok=True)
                root = Path(root).resolve().as_uri()
            location = f"{root.rstrip('/')}/{cfg.mlflow.experiment}"
        experiment_id = client.create_experiment(cfg.mlflow.experiment, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _train_hint(name: str) -> str:
    kind = "automl" if "automl" in name else "compliance" if "compliance" in name else "rnn"
    return f"run `pitstop train {kind}` first"


def _require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"No model named {name} is registered; {_train_hint(name)}.") from None


def resolve_alias(name: str, alias: str = "champion") -> tuple[str, str]:
    """(version, `models:/name/version`) of the version `alias` points at."""
    client = MlflowClient()
    _require_model(client, name)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise RegistryError(
            f"No version of model {name} has alias {alias}; {_train_hint(name)}."
        ) from None
    return str(version.version), f"models:/{name}/{version.version}"


def has_alias(name: str, alias: str = "champion") -> bool:
    """Whether some version of `name` carries `alias`."""
    try:
        resolve_alias(name, alias)
    except RegistryError:
        return False
    return True


def register_version(
    run_id: str, artifact_path: str, name: str, tags: dict[str, str] | None = None
) -> str:
    """Register the model logged as `artifact_path` in run `run_id` as a new version of `name`."""
    try:
        version = mlflow.register_model(_logged_model_uri(run_id, artifact_path), name, tags=tags)
    except MlflowException as exc:
        raise RegistryError(
            f"Could not register runs:/{run_id}/{artifact_path} as {name}: {exc.message}"
        ) from None
    log.info("Registered %s version %s from run %s", name, version.version, run_id)
    return str(version.version)


def _logged_model_uri(run_id: str, artifact_path: str) -> str:
    """`models:/<model id>` of the run's logged model; MLflow 3 keeps models outside run
    artifacts, and registering `runs:/...` would warn and search for it anyway."""
    run = MlflowClient().get_run(run_id)
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{artifact_path}'",
        output_format="list",
    )
    if not found:
        return f"runs:/{run_id}/{artifact_path}"
    latest = max(found, key=lambda model: model.creation_timestamp)
    return f"models:/{latest.model_id}"


def _champion_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(name: str, version: str, alias: str = "champion", reason: str = "manual") -> None:
    """Point `alias` at `version`, recording the previous holder for a later rollback."""
    client = MlflowClient()
    _require_model(client, name)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"Model {name} has no version {version}.") from None
    previous = _champion_version(client, name, alias)
    if previous == version:
        log.info("%s version %s already holds alias %s", name, version, alias)
        return
    client.set_registered_model_alias(name, alias, version)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, PREVIOUS_TAG, previous or "")
    client.set_model_version_tag(name, version, PROMOTED_AT_TAG, now)
    client.set_model_version_tag(name, version, PROMOTION_TAG, reason)
    log.info(
        "Alias %s of %s: version %s -> %s (%s)", alias, name, previous or "none", version, reason
    )


def promote_if_better(
    name: str,
    version: str,
    metric: str,
    value: float,
    champion_value: float | None,
    lower_is_better: bool = True,
    force: bool = False,
    alias: str = "champion",
) -> bool:
    """Move `alias` to `version` when it beats the champion on `metric` (or there is none, or
    `force`); the comparison is logged on the version's run and in the log. True if moved."""
    client = MlflowClient()
    candidate = client.get_model_version(name, version)
    champion = _champion_version(client, name, alias)
    if champion is None:
        better, verdict = True, "no champion yet"
    elif champion_value is None:
        better, verdict = True, f"champion v{champion} has no {metric} on this holdout"
    else:
        better = value < champion_value if lower_is_better else value > champion_value
        verdict = f"{metric} {value:.5g} vs champion v{champion} {champion_value:.5g}"
    promoted = better or force
    reason = "forced" if force and not better else "better" if champion else "first"
    if candidate.run_id:
        client.set_tag(candidate.run_id, "pitstop.comparison", verdict)
        client.set_tag(candidate.run_id, "pitstop.promoted", str(promoted).lower())
        client.set_tag(
            candidate.run_id, "pitstop.promotion_reason", reason if promoted else "worse"
        )
        if champion_value is not None:
            client.log_metric(candidate.run_id, f"champion_{metric}", champion_value)
    if promoted:
        promote(name, version, alias, reason=f"{reason}: {verdict}")
    else:
        log.info("Keeping champion v%s of %s: %s", champion, name, verdict)
    return promoted


def rollback(name: str, alias: str = "champion") -> str:
    """Point `alias` back at the champion before the current one; returns that version."""
    client = MlflowClient()
    current, _ = resolve_alias(name, alias)
    previous = client.get_model_version(name, current).tags.get(PREVIOUS_TAG, "")
    if not previous:
        raise RegistryError(
            f"Version {current} of model {name} has no earlier champion to roll back to."
        )
    try:
        client.get_model_version(name, previous)
    except MlflowException:
        raise RegistryError(
            f"The earlier champion of {name}, version {previous}, no longer exists."
        ) from None
    # Set the alias directly (not `promote`): the earlier champion keeps its own
    # predecessor tag, so a second rollback goes one step further back.
    client.set_registered_model_alias(name, alias, previous)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, current, ROLLED_BACK_TAG, now)
    log.info("Rolled alias %s of %s back from version %s to %s", alias, name, current, previous)
    return previous


def list_models(metrics: tuple[str, ...] = KEY_METRICS) -> pd.DataFrame:
    """One row per registered version: name, version, aliases, run, creation time, metrics."""
    client = MlflowClient()
    rows = []
    for model in client.search_registered_models():
        aliases_of: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases_of.setdefault(str(version), []).append(alias)
        for version in client.search_model_versions(f"name='{model.name}'"):
            run_metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
            rows.append(
                {
                    "name": model.name,
                    "version": int(version.version),
                    "aliases": ",".join(sorted(aliases_of.get(str(version.version), []))),
                    "created": pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC"),
                    "run_id": version.run_id,
                    "previous_champion": version.tags.get(PREVIOUS_TAG, ""),
                    **{m: run_metrics.get(m, float("nan")) for m in metrics},
                }
            )
    columns = ["name", "version", "aliases", "created", "run_id", "previous_champion", *metrics]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["name", "version"], ignore_index=True)
