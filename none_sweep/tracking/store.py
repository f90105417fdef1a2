"""The one writer of a sweep's MLflow runs: parent per sweep, one nested child per Ray trial.

Everything goes through an explicit ``MlflowClient`` and explicit run ids (never the fluent "active run",
never ``MLFLOW_RUN_ID``), so the driver-side callback and ``none-sweep sync-mlflow`` write the same layout
and a resumed sweep finds its runs again by tag instead of by memory.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config import config_from_dict, dump_config, flatten
from ..errors import TrackingError
from ..text import first_line
from .layout import (
    BASELINE_ARTIFACT,
    BASELINE_PREFIX,
    CONFIG_ARTIFACT,
    CONFIG_ERROR_TAG,
    EARLY_STOP_TAG,
    ERROR_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    FRONT_ARTIFACT,
    MODEL_NAME,
    PARENT_STATUS_OF,
    PARENT_TAG,
    ROLE_SWEEP,
    ROLE_TAG,
    ROLE_TRIAL,
    STATUS_TAG,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    child_filter,
    metrics_of,
    param_value,
    parent_filter,
    secret_env_values,
    step_of,
)

logger = logging.getLogger(__name__)

PAGE = 1000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100


def sqlite_file(uri: str) -> Path | None:
    """``sqlite:////abs/x.db`` → ``/abs/x.db``; ``sqlite:///rel.db`` → ``rel.db``; others → None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def default_tracking_uri(folder: str | Path = ".") -> str:
    """``sqlite:///<abs folder>/mlflow.db`` — absolute, so workers and ``mlflow ui`` agree on it."""
    return f"sqlite:///{(Path(folder).resolve() / 'mlflow.db').as_posix()}"


class SweepTracker:
    """Reads and writes one sweep's runs in one MLflow experiment (named after the sweep)."""

    def __init__(self, tracking_uri: str, sweep: str) -> None:
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self.sweep = sweep
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._experiment_id: str | None = None
        self._parent_id: str | None = None

    # ------------------------------------------------------------------ experiment and parent
    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.sweep)
            if exp is not None and exp.lifecycle_stage != "active":
                raise TrackingError(
                    f"MLflow experiment {self.sweep!r} at {self.uri} is deleted; restore it "
                    f"(mlflow experiments restore) or choose another --name"
                )
            if exp is None:
                self._experiment_id = self.client.create_experiment(
                    self.sweep, artifact_location=self._artifact_root(), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            else:
                self._experiment_id = exp.experiment_id
                if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older none-sweep: open on the runs table too
                    self.client.set_experiment_tag(self._experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return self._experiment_id

    @property
    def known_experiment_id(self) -> str | None:
        """The experiment's id if this tracker has already looked it up (never a call to MLflow)."""
        return self._experiment_id

    def _artifact_root(self) -> str | None:
        """Next to a sqlite store (not in whatever folder the driver happens to run in)."""
        db = sqlite_file(self.uri)
        if db is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.sweep)
        return (db.resolve().parent / "mlartifacts" / safe).as_uri()

    def find_parent(self) -> Any | None:
        runs = self._search(parent_filter(self.sweep))
        runs.sort(key=lambda r: r.info.start_time or 0)
        return runs[-1] if runs else None

    @property
    def parent_id(self) -> str:
        if self._parent_id is None:
            parent = self.find_parent()
            if parent is None:
                raise TrackingError(f"no parent run for sweep {self.sweep!r} in {self.uri}")
            self._parent_id = parent.info.run_id
        return self._parent_id

    @contextlib.contextmanager
    def parent_run(self, params: Mapping[str, Any], artifacts: Mapping[str, str], resume: bool) -> Iterator[str]:
        """The sweep's parent run for the length of a block; yields its id.

        Ctrl-C closes it ``interrupted`` and an error ``failed``, so neither leaves it RUNNING. A block that ends
        normally closes it itself (:meth:`finish_parent`, with the front and totals); if MLflow was unreachable
        then, the run is left for ``sync-mlflow``, which closes it from the sweep's records. The closing here is
        best effort: MLflow being unreachable must not hide why the sweep stopped.
        """
        try:
            run_id = self.start_parent(params, artifacts, resume)
        except TrackingError:
            raise
        except Exception as exc:  # MlflowException, requests' errors, sqlalchemy errors
            what = f"{type(exc).__name__}: {first_line(exc)}"
            raise TrackingError(f"creating the sweep's parent run in {self.uri} failed ({what})") from None
        self._parent_closed = False
        try:
            yield run_id
        except KeyboardInterrupt:
            self._close_quietly("interrupted")
            raise
        except BaseException:
            self._close_quietly("failed")
            raise

    def _close_quietly(self, status: str) -> None:
        if getattr(self, "_parent_closed", False):
            return
        try:
            self.finish_parent(status)
        except Exception as exc:
            logger.warning("MLflow: closing the parent run as %s failed (%s)", status, first_line(exc))

    def start_parent(self, params: Mapping[str, Any], artifacts: Mapping[str, str], resume: bool) -> str:
        """The sweep's parent run: found again on resume (and set RUNNING), created otherwise.

        ``artifacts``: file name → text, logged when the run is created (the sweep record, the space file).
        """
        existing = self.find_parent() if resume else None
        if existing is not None:
            self._parent_id = existing.info.run_id
            self.client.update_run(self._parent_id, status="RUNNING")
            self.client.set_tag(self._parent_id, STATUS_TAG, "running")
            return self._parent_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.sweep,
            tags={ROLE_TAG: ROLE_SWEEP, SWEEP_TAG: self.sweep, STATUS_TAG: "running"},
        )
        self._parent_id = run.info.run_id
        self._log_params(self._parent_id, params)
        for name, text in artifacts.items():
            self.client.log_text(self._parent_id, text, name)
        return self._parent_id

    def log_baseline(self, baseline: Mapping[str, Any]) -> None:
        """``baseline_<metric>`` on the parent, plus the baseline's resolved config (once)."""
        parent = self.client.get_run(self.parent_id)
        if f"{BASELINE_PREFIX}clean_acc" in parent.data.metrics:
            return
        metrics = {f"{BASELINE_PREFIX}{k}": v for k, v in metrics_of(baseline.get("metrics", {})).items()}
        self.log_metrics(self.parent_id, metrics, step=0)
        text = config_text(baseline["config"], header="undefended baseline of this sweep")
        self.client.log_text(self.parent_id, text, BASELINE_ARTIFACT)

    def finish_parent(self, status: str, metrics: Mapping[str, float] | None = None,
                      pareto_csv: str | None = None) -> None:  # fmt: skip
        """``status``: finished | interrupted | failed (tag), mapped to the MLflow run status."""
        if metrics:
            self.log_metrics(self.parent_id, metrics, step=0)
        if pareto_csv is not None:
            self.client.log_text(self.parent_id, pareto_csv, FRONT_ARTIFACT)
        self.client.set_tag(self.parent_id, STATUS_TAG, status)
        self.client.set_terminated(self.parent_id, status=PARENT_STATUS_OF.get(status, "FAILED"))
        self._parent_closed = True

    # ------------------------------------------------------------------ children
    def children(self) -> dict[str, Any]:
        """Ray trial id → the child run (the newest, should a trial ever have two)."""
        runs = self._search(child_filter(self.parent_id))
        out: dict[str, Any] = {}
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id:
                out[trial_id] = run
        return out

    def create_child(
        self,
        trial_id: str,
        run_name: str,
        resolved: Mapping[str, Any] | None,
        *,
        sampled: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        config_error: str | None = None,
    ) -> str:
        """A nested child for one trial: tags, the flattened resolved config as params, ``config.yaml``.

        ``resolved`` is None when the sampled values make no valid config (``config_error`` says why); then only
        ``sampled`` is logged, so the run still shows what was tried.
        """
        all_tags = {ROLE_TAG: ROLE_TRIAL, SWEEP_TAG: self.sweep, TRIAL_ID_TAG: trial_id, PARENT_TAG: self.parent_id}
        all_tags.update(tags or {})
        if config_error:
            all_tags[CONFIG_ERROR_TAG] = config_error[:5000]
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        if resolved is None:
            self._log_params(run_id, dict(sampled))
            return run_id
        self._log_params(run_id, flatten(dict(resolved)))
        header = f"trial {trial_id} of sweep {self.sweep}; run it alone with: none-sweep train {CONFIG_ARTIFACT}"
        self.client.log_text(run_id, config_text(resolved, header=header), CONFIG_ARTIFACT)
        return run_id

    def log_results(self, run_id: str, results: Iterable[Mapping[str, Any]]) -> int:
        """Ray results as MLflow metrics at ``step=epoch`` (batched); returns how many values were sent."""
        from mlflow.entities import Metric

        batch: list[Any] = []
        now = int(time.time() * 1000)
        for result in results:
            stamp = int(float(result.get("timestamp", now / 1000)) * 1000)
            step = step_of(result)
            batch.extend(Metric(k, v, stamp, step) for k, v in metrics_of(result).items())
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[i : i + MAX_METRICS_PER_BATCH])
        return len(batch)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[i : i + MAX_METRICS_PER_BATCH])

    def logged_steps(self, run_id: str, key: str = "clean_acc") -> set[int]:
        return {m.step for m in self.client.get_metric_history(run_id, key)}

    def has_model(self, run_id: str) -> bool:
        """Whether an MLflow 3 logged model is attached to the run (its outputs)."""
        found = self.client.search_logged_models(
            [self.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'", max_results=1
        )
        return len(found) > 0

    def log_model(self, run_id: str, config: Mapping[str, Any], state_path: str | Path) -> None:
        """Rebuild the trial's network from its config and saved ``state_dict``; log it as ``model``.

        The model is saved as a ``torch.export`` program (MLflow's ``pt2`` format), not a pickle: loading it
        runs no arbitrary code and needs no copy of none-sweep. The example has two images so that the
        exported batch dimension stays dynamic.
        """
        import mlflow
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        from ..data import dataset_info
        from ..experiment import resolve_config
        from ..models import create_model

        cfg = resolve_config(config, source="trial config")
        info = dataset_info(cfg.data.name)
        model = create_model(cfg.model.name, info)
        model.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
        model.eval()
        example = np.zeros((2, info.channels, info.size, info.size), dtype=np.float32)
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=self.experiment_id)  # MLflow 3 files a LoggedModel under the active one
        mlflow.pytorch.log_model(
            model,
            name=MODEL_NAME,
            run_id=run_id,
            serialization_format="pt2",
            input_example=example,
            signature=infer_signature(example, output),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )

    def finish_child(self, run_id: str, status: str = "FINISHED", error: str | None = None,
                     tags: Mapping[str, str] | None = None) -> None:  # fmt: skip
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, value)
        if error:
            self.client.set_tag(run_id, ERROR_TAG, error[:5000])
        self.client.set_terminated(run_id, status=status)

    def discard_child(self, run_id: str, reason: str) -> None:
        """Delete a run that no Ray trial owns (MLflow keeps it restorable until ``mlflow gc``)."""
        self.client.set_tag(run_id, ERROR_TAG, reason[:5000])
        self.client.set_terminated(run_id, status="FAILED")
        self.client.delete_run(run_id)

    def reopen_child(self, run_id: str) -> None:
        """A trial Ray resumed runs again: how it ended before (stopped early, e.g. by a Ctrl-C) no longer holds."""
        if self.client.get_run(run_id).data.tags.get(EARLY_STOP_TAG) == "true":
            self.client.delete_tag(run_id, EARLY_STOP_TAG)
        self.client.update_run(run_id, status="RUNNING")

    # ------------------------------------------------------------------ helpers
    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        secrets = secret_env_values()
        items = [Param(k, param_value(v, secrets)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def _search(self, filter_string: str) -> list[Any]:
        out: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=PAGE, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                return out


def config_text(config: Mapping[str, Any], header: str = "") -> str:
    """A resolved config (already checked when the trial was made) as YAML, runnable by ``none-sweep train``."""
    return dump_config(config_from_dict(config, source="resolved config"), header=header)
