"""``none-sweep export``: the chosen trial's ``config.yaml``, with provenance, and optionally its model.

The exported file is the trial's ``config.yaml`` artifact verbatim (the resolved config, runnable as-is by
``none-sweep train``) under a comment header saying where it came from: experiment, run, rule, metrics,
baseline, code version and date. ``register_model`` puts the trial's logged ``model`` in the MLflow Model
Registry with the same facts as version tags.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, TrackingError
from ..text import first_line
from ..tracking.layout import (
    CONFIG_ARTIFACT,
    MODEL_EXPORTED_BY_TAG,
    MODEL_NAME,
    MODEL_RULE_TAG,
    MODEL_RUN_TAG,
    MODEL_TRIAL_TAG,
    ROLE_SWEEP,
    ROLE_TAG,
    SWEEP_TAG,
)
from ..train.variants import split_variant_key
from .model import Sweep, Trial
from .provenance import code_version, utc_now
from .runs import tracking_call

MODEL_ARTIFACT = MODEL_NAME
#: Final metrics copied into the header and onto registered model versions (when the trial logged them).
REPORTED_METRICS = ("asr", "clean_acc", "clean_acc_drop", "robust_acc", "asr_reduction", "der")
#: Run tags that say which code produced a trial, if the sweep logged one; else the sweep run's params.
CODE_TAGS = ("none_sweep.code_version", "mlflow.source.git.commit")
CODE_PARAMS = ("version.none_sweep", "version.git", "version.torch")
#: Per attack variant of a robust trial, the metrics quoted in the header.
VARIANT_METRICS = ("asr", "clean_acc", "clean_acc_drop")
#: The baseline metrics quoted (the sweep run logs more, e.g. timings).
BASELINE_KEYS = ("baseline_asr", "baseline_clean_acc", "baseline_robust_acc")


def read_config_text(client: Any, uri: str, trial: Trial) -> str:
    """The text of the trial's ``config.yaml`` artifact."""
    with tempfile.TemporaryDirectory(prefix="none-sweep-export-") as tmp:
        try:
            local = client.download_artifacts(trial.run_id, CONFIG_ARTIFACT, tmp)
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise TrackingError(
                f"{trial.label} has no {CONFIG_ARTIFACT} artifact at {uri} ({exc.__class__.__name__}); "
                "was it logged by a none-sweep sweep?"
            ) from None
        return Path(local).read_text(encoding="utf-8")


def check_runnable(text: str, trial: Trial, sweep: Sweep) -> None:
    """The stored config validates with this code version (else ``none-sweep train`` would refuse it)."""
    from ..experiment import resolve_config

    source = f"{trial.label} {CONFIG_ARTIFACT}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: not a config mapping")
    try:
        resolve_config(data, source=source)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; the sweep ran a different none-sweep version ({sweep_code(trial, sweep)})") from None


def check_exportable(trial: Trial) -> None:
    if trial.tags.get(ROLE_TAG) == ROLE_SWEEP:
        raise TrackingError(f"run {trial.run_id} is a sweep's parent run; pass a trial's run id or --experiment")
    if trial.status != "FINISHED":
        raise TrackingError(f"{trial.label} is {trial.status}, not FINISHED; export takes finished trials")


def sweep_code(trial: Trial, sweep: Sweep) -> str:
    """What the trial's run (or its sweep run) recorded about the code that produced it."""
    found = [f"{tag}={trial.tags[tag]}" for tag in CODE_TAGS if tag in trial.tags]
    parent = sweep.parent.params if sweep.parent else {}
    found += [f"{key}={parent[key]}" for key in CODE_PARAMS if key in parent]
    return " ".join(found) or "code version not logged"


def reported_metrics(trial: Trial, sweep: Sweep) -> dict[str, float]:
    """The trial's final values of :data:`REPORTED_METRICS` and of the sweep's objectives and constraints."""
    values = trial.final_metrics
    keys = dict.fromkeys([*REPORTED_METRICS, *sweep.goals.columns])
    return {k: float(values[k]) for k in keys if isinstance(values.get(k), (int, float))}


def variant_results(trial: Trial) -> dict[str, str]:
    """``{"variant NAME": "asr=... clean_acc=... clean_acc_drop=..."}`` for a robust trial (each attack variant it
    was run against and chosen on); empty for a single-attack trial."""
    out: dict[str, dict[str, float]] = {}
    for key, value in trial.final_metrics.items():
        split = split_variant_key(key)
        if split and split[1] in VARIANT_METRICS and isinstance(value, (int, float)):
            out.setdefault(split[0], {})[split[1]] = float(value)
    return {f"variant {name}": _metrics_line({k: m[k] for k in VARIANT_METRICS if k in m})
            for name, m in sorted(out.items())}  # fmt: skip


def baseline(sweep: Sweep) -> dict[str, float]:
    return {k: sweep.baseline[k] for k in BASELINE_KEYS if k in sweep.baseline}


def _metrics_line(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in values.items()) or "none logged"


def provenance(trial: Trial, sweep: Sweep, rule: str) -> dict[str, str]:
    """The facts written into the header and onto a registered model version, as strings."""
    parent = sweep.parent.run_id if sweep.parent else "none"
    metrics = reported_metrics(trial, sweep)
    return {
        "experiment": f"{sweep.name} (id {sweep.experiment_id}) at {sweep.tracking_uri}",
        "run": f"{trial.run_id} (ray trial {trial.trial_id or 'n/a'}, run name {trial.run_name}), parent run {parent}",
        "rule": rule,
        "metrics": _metrics_line(metrics),
        "baseline": _metrics_line(baseline(sweep)),
        **variant_results(trial),
        "code": f"exported by {code_version()}; the sweep ran {sweep_code(trial, sweep)}",
        "date": utc_now(),
    }


def header(facts: dict[str, str], out_name: str) -> str:
    lines = [f"none-sweep export: the defense config chosen from a sweep. Run it with: none-sweep train {out_name}"]
    lines += [f"{key}: {value}" for key, value in facts.items()]
    return "".join(f"# {line}\n" for line in lines) + "#\n"


def export_config(client: Any, trial: Trial, sweep: Sweep, rule: str, out: str | Path) -> Path:
    """Write ``out``: the provenance header, then the trial's stored config verbatim."""
    check_exportable(trial)
    text = read_config_text(client, sweep.tracking_uri, trial)
    check_runnable(text, trial, sweep)
    out = Path(out)
    if out.parent != Path("."):
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header(provenance(trial, sweep, rule), out.name) + text, encoding="utf-8")
    return out


def logged_model_uri(client: Any, trial: Trial, sweep: Sweep) -> str | None:
    """Where the trial's ``model`` lives: its MLflow 3 LoggedModel (``models:/m-...``), else run artifacts
    under ``model/`` (``runs:/ID/model``, MLflow 2 layout); None when it logged no model."""
    try:
        found = client.search_logged_models(
            [sweep.experiment_id],
            filter_string=f"source_run_id = '{trial.run_id}' AND name = '{MODEL_ARTIFACT}'",
            max_results=1,
        )
        if len(found):
            return f"models:/{found[0].model_id}"
    except Exception:  # an older server without logged models: fall back to the artifact listing
        pass
    listed = tracking_call(
        "listing the run's artifacts", sweep.tracking_uri, client.list_artifacts, trial.run_id, MODEL_ARTIFACT
    )
    return f"runs:/{trial.run_id}/{MODEL_ARTIFACT}" if len(listed) else None


def attach_from_checkpoint(client: Any, trial: Trial, sweep: Sweep) -> str | None:
    """Log the trial's model from its latest Ray checkpoint (a sweep with ``log_models: front`` logs only its
    front's models); the logged model's URI, or None when the sweep's storage or the checkpoint is gone."""
    from ..errors import StorageError
    from ..sweep.trials import ray_trials
    from ..tracking import SweepTracker, attach_model_of

    if sweep.record is None or not trial.trial_id:
        return None
    try:
        ray_trial = next((t for t in ray_trials(sweep.record.open_storage()) if t.trial_id == trial.trial_id), None)
    except StorageError:
        return None
    if ray_trial is None:
        return None
    tracker = SweepTracker(sweep.tracking_uri, sweep.name)
    attach_model_of(tracker, sweep.record.resolved_config, ray_trial, trial.run_id)
    return logged_model_uri(client, trial, sweep)


def register_model(client: Any, trial: Trial, sweep: Sweep, rule: str, name: str) -> Any:
    """Register the trial's ``model`` (``runs:/<id>/model``) as a new version of ``name``; metrics and provenance
    become version tags. Returns the ``ModelVersion``."""
    import mlflow

    uri = sweep.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    source = logged_model_uri(client, trial, sweep) or attach_from_checkpoint(client, trial, sweep)
    if source is None:
        raise TrackingError(
            f"{trial.label} has no logged model under '{MODEL_ARTIFACT}' and no checkpoint in the sweep's storage "
            f"to log one from, so there is nothing to register as {name!r}; the config was exported"
        )
    try:
        version = mlflow.register_model(source, name)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot register {source} as {name!r} at {uri}: {first_line(exc)}") from None
    tags = {k: str(v) for k, v in reported_metrics(trial, sweep).items()}
    tags.update({k: str(v) for k, v in baseline(sweep).items()})
    tags.update({
        SWEEP_TAG: sweep.name, MODEL_RUN_TAG: trial.run_id, MODEL_TRIAL_TAG: trial.trial_id or "",
        MODEL_RULE_TAG: rule, MODEL_EXPORTED_BY_TAG: code_version(),
    })  # fmt: skip
    for key, value in tags.items():
        tracking_call("tagging the model version", uri, client.set_model_version_tag, name, version.version, key, value)
    tracking_call(
        "describing the model version",
        uri,
        client.update_model_version,
        name,
        version.version,
        f"NONE defense from sweep {sweep.name}, run {trial.run_id}; chosen by {rule}",
    )
    return version
