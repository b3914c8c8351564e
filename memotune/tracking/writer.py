"""The MLflow calls for one study: its experiment, its parent run, a child run per trial.

Every operation may be tried again after any failure (the outbox does so
while a server is down) and never duplicates anything: runs are found by
their tags before being created, and metrics carry fixed timestamps and
steps, which MLflow stores once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .outbox import GiveUp
from .runs import (
    CREATED_TAG,
    NOTE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    RUN_NAME_TAG,
    TRIAL_TAG,
    VIEW_TAG,
    MetricValue,
    experiment_description,
    runs_view,
    start_tags,
    study_params,
    study_tags,
    trial_params,
    trial_run_name,
    trial_tags,
)

_TERMINATED = {"FINISHED", "FAILED", "KILLED"}
#: Opens the experiment in the UI's runs view (MLflow 3's default for an
#: experiment of unknown kind is the GenAI traces overview).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class MlflowWriter:
    def __init__(self, uri: str, name: str, settings: dict[str, Any], path: str) -> None:
        self.uri = uri
        self.name = name
        self.settings = settings
        self.path = path
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.children: dict[int, str] = {}  # trial id -> run id
        self.finished: set[int] = set()  # trials whose run is complete
        self._unsure: set[int] = set()  # trials whose run creation may or may not have happened
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient  # imported here: it takes seconds, off the main thread

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # the study

    def open_study(self) -> None:
        """Find or create the experiment, the parent run, and the trial runs already logged."""
        from mlflow.entities import Param, RunTag

        self.experiment_id = self._experiment()
        tags = study_tags(self.name, self.settings, self.path)
        parent = self._find_parent(tags[CREATED_TAG])
        if parent is None:
            created = float(self.settings.get("created", 0.0))
            parent = self.client.create_run(
                self.experiment_id, start_time=int(created * 1000) or None, tags=tags
            )
        elif parent.info.status != "RUNNING":
            self.client.update_run(parent.info.run_id, status="RUNNING")
        self.parent_id = parent.info.run_id
        self.client.log_batch(
            self.parent_id,
            params=[Param(k, v) for k, v in study_params(self.settings).items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self._find_children()

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.name)
        if experiment is None:
            try:
                return self.client.create_experiment(self.name, tags=self._experiment_tags())
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(self.name)
        if experiment.lifecycle_stage == "deleted":
            raise GiveUp(
                f"the MLflow experiment '{self.name}' was deleted; restore it (mlflow "
                f"experiments restore --experiment-id {experiment.experiment_id}) or tune "
                "under another study name"
            )
        for key, value in self._experiment_tags().items():  # made by an older memotune
            if experiment.tags.get(key) != value:
                self.client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id

    def _experiment_tags(self) -> dict[str, str]:
        return EXPERIMENT_TAGS | {
            "memotune.pipeline": str(self.settings.get("pipeline")),
            NOTE_TAG: experiment_description(self.name, self.settings),
            VIEW_TAG: runs_view(self.settings),
        }

    def _find_parent(self, created: str):
        from mlflow.entities import ViewType

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'study' and tags.`{CREATED_TAG}` = '{created}'",
            run_view_type=ViewType.ACTIVE_ONLY,  # a run deleted in the UI is not reused
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _find_children(self) -> None:
        for run in self._search(f"tags.`{PARENT_TAG}` = '{self.parent_id}'"):
            trial = run.data.tags.get(TRIAL_TAG)
            if trial is None or not trial.lstrip("-").isdigit():
                continue
            self.children[int(trial)] = run.info.run_id
            if run.info.status in _TERMINATED:
                self.finished.add(int(trial))

    def _search(self, filter_string: str) -> list:
        from mlflow.entities import ViewType

        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=filter_string,
                run_view_type=ViewType.ACTIVE_ONLY,  # a run deleted in the UI is not reused
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def log_study(
        self,
        metrics: list[MetricValue],
        tags: dict[str, str],
        files: dict[str, bytes],
        *,
        timestamp: float,
        status: str | None = None,
    ) -> None:
        """Log metrics, tags and artifact files on the parent run; end it with ``status``."""
        from mlflow.entities import Metric, RunTag

        self._require_study()
        stamp = int(timestamp * 1000)
        self.client.log_batch(
            self.parent_id,
            metrics=[Metric(m.key, m.value, stamp, m.step) for m in metrics],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        if files:
            with tempfile.TemporaryDirectory(prefix="memotune-artifacts-") as folder:
                for name, data in files.items():
                    (Path(folder) / name).write_bytes(data)
                self.client.log_artifacts(self.parent_id, folder)
        if status is not None:
            self.client.set_terminated(self.parent_id, status=status, end_time=stamp)

    # the trials

    def start_trial(
        self, trial_id: int, config: dict, info: dict, tuner: str, started: float
    ) -> None:
        """A running trial's run, with its settings, so the UI shows it while it runs."""
        from mlflow.entities import Param, RunTag

        run_id = self._trial_run(trial_id, started, start_tags(trial_id, info, tuner))
        self.client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in trial_params(config).items()],
            tags=[RunTag(k, v) for k, v in start_tags(trial_id, info, tuner).items()],
        )

    def log_trial(
        self, record, tuner: str, metrics: list[MetricValue], study_metrics: list[MetricValue]
    ) -> None:
        """Everything about a finished trial on its run, its point on the parent's curves,
        then the run's end (so an ended run always has its point)."""
        from mlflow.entities import Metric, Param, RunTag

        tags = trial_tags(record, tuner)
        run_id = self._trial_run(record.trial_id, record.started, tags)
        stamp = int((record.finished or record.started) * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(m.key, m.value, stamp, m.step) for m in metrics],
            params=[Param(k, v) for k, v in trial_params(record.config).items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        if record.traceback:
            self.client.log_text(run_id, record.traceback, "traceback.txt")
        if study_metrics:
            self.client.log_batch(
                self.parent_id,
                metrics=[Metric(m.key, m.value, stamp, m.step) for m in study_metrics],
            )
        status = "FAILED" if record.failed else "KILLED" if record.pruned else "FINISHED"
        self.client.set_terminated(run_id, status=status, end_time=stamp)
        self.finished.add(record.trial_id)

    def _trial_run(self, trial_id: int, started: float, tags: dict[str, str]) -> str:
        """The trial's run id, creating the run unless it exists."""
        self._require_study()
        if trial_id in self.children:
            return self.children[trial_id]
        if trial_id in self._unsure:  # an earlier attempt may have created it
            found = self._search(
                f"tags.`{PARENT_TAG}` = '{self.parent_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'"
            )
            if found:
                self.children[trial_id] = found[0].info.run_id
                self._unsure.discard(trial_id)
                return self.children[trial_id]
        self._unsure.add(trial_id)
        name = trial_run_name(trial_id)
        run = self.client.create_run(
            self.experiment_id,
            start_time=int(started * 1000) or None,
            tags={PARENT_TAG: self.parent_id, RUN_NAME_TAG: name, **tags},
            run_name=name,
        )
        self.children[trial_id] = run.info.run_id
        self._unsure.discard(trial_id)
        return run.info.run_id

    def _require_study(self) -> None:
        if self.parent_id is None:  # the study's job failed for good before this one
            raise GiveUp("the study's run could not be created")
