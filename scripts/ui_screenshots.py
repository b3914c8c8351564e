"""The README's MLflow UI screenshots: a short sweep of examples/digits.py logged to a
scratch store, then the runs page and the sweep's parent run in headless chromium.

    .venv/bin/python scripts/ui_screenshots.py        # writes docs/ui-runs.png, docs/ui-sweep.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow import MlflowClient

from memotune.tracking.runs import run_page

REPO = Path(__file__).resolve().parents[1]
PORT = "5091"


def main() -> None:
    browser = shutil.which("chromium")
    if browser is None:
        sys.exit("chromium is missing: `make setup` installs it")
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        memotune = [sys.executable, "-m", "memotune"]
        subprocess.run(
            [*memotune, "tune", str(REPO / "examples" / "digits.py"), "--budget", "40"]
            + ["--study", "digits", "--tracking-uri", uri, "--storage", f"{folder}/studies"]
            + ["--cache", f"{folder}/cache"],
            check=True,
        )
        ui = subprocess.Popen(
            [*memotune, "ui", "--tracking-uri", uri, "--port", PORT],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            page = next(line for line in ui.stdout if "study digits:" in line).split(": ", 1)[1]
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name("digits").experiment_id
            parent = client.search_runs([experiment], "tags.`memotune.role` = 'study'")[0]
            sweep = run_page(page.split("/#")[0], experiment, parent.info.run_id)
            for url, name in ((page.strip(), "ui-runs.png"), (sweep, "ui-sweep.png")):
                subprocess.run(
                    [browser, "--headless", "--no-sandbox", "--disable-gpu"]
                    + ["--window-size=1600,1000", "--virtual-time-budget=20000"]
                    + [f"--screenshot={REPO / 'docs' / name}", url],
                    check=True,
                    capture_output=True,
                )
                print(f"wrote docs/{name}")
        finally:
            ui.terminate()
            ui.wait(60)


if __name__ == "__main__":
    main()
