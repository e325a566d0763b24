"""Run the numbered notebooks with papermill (`ue run`). Torch-free: the notebooks' kernels
import torch, this process does not (`ue check` compares the results: `ue_lib.check`)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from .data import check_domain, resolve_data_root
from .data.core import ENV_VAR
from .io import RESULT_COLUMNS, atomic_write_text
from .spec import RunSpec

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


class RunError(Exception):
    """A run stopped; the message names the notebook / parameter / file at fault."""


def list_notebooks(folder: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    books = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not books:
        raise RunError(f"no numbered notebooks (NN_name.ipynb) found in {folder}")
    if only:
        chosen = [b for b in books if any(b.stem == o or b.stem.startswith(f"{o}_")
                                          or b.name == o for o in only)]
        unknown = [o for o in only if not any(b.stem == o or b.stem.startswith(f"{o}_")
                                              or b.name == o for b in books)]
        if unknown:
            raise RunError(f"--only: no notebook matches {', '.join(unknown)}; notebooks: "
                           f"{', '.join(b.stem for b in books)}")
        books = chosen
    return books


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True,
                                                                   default=str).encode())
    return h.hexdigest()


def _versions() -> dict:
    """Versions of the packages behind the numbers (read from their metadata: nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "machine": platform.platform(), "cpu": _cpu(),
            "cpu_count": os.cpu_count(),
            **{name: of(name) for name in ("torch", "torchvision", "faiss-cpu", "numpy",
                                           "papermill", "ue_lib")}}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=NOTEBOOK_DIR.parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def export_html(notebook: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    out = notebook.with_suffix(".html")
    atomic_write_text(body, out)
    return out


def run(spec: RunSpec, only: list[str] | None = None, notebooks: Path = NOTEBOOK_DIR,
        log=print) -> pd.DataFrame:
    """Execute the notebooks in order; return the merged results table (also in results.csv).
    `spec` was validated when it was made, so bad parameters have already stopped."""
    books = list_notebooks(notebooks, only)
    for name in spec.settings.domain_names:  # missing data stops here, before any notebook
        check_domain(name)
    with _data_root_for_kernels():
        return _run_notebooks(books, spec, notebooks, log)


@contextlib.contextmanager
def _data_root_for_kernels():
    """Kernels run inside the run folder: give them the data root as an absolute path (and
    leave this process's environment as it was)."""
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(resolve_data_root().resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before


@functools.cache
def _quiet_kernel_manager():
    """jupyter_client's KernelManager, minus the SIGINT it sends before every shutdown request:
    a kernel still answering papermill's closing kernel_info_request logs 'ERROR |
    KeyboardInterrupt caught in kernel' for it (measured: 7 of 29 runs over IPC, which makes the
    race frequent; 0 of 22 with this). Our kernels are idle when they are shut down."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietKernelManager


def execute_notebook(src: Path, dst: Path, **kwargs):
    """papermill's execute_notebook with the kernel on Unix sockets (IPC) in a private temporary
    folder instead of localhost TCP ports: nobody else can connect, and ipykernel no longer warns
    'Kernel is running over TCP without encryption'."""
    import papermill as pm
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="ue-kernel-") as sockets:
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
        return pm.execute_notebook(str(src), str(dst), kernel_manager_class=_quiet_kernel_manager(),
                                   config=ipc, **kwargs)


def _cpu() -> str:
    """The CPU model (numbers differ between CPUs: docs/regression-check.md)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _run_notebooks(books: list[Path], spec: RunSpec, notebooks: Path, log) -> pd.DataFrame:
    import papermill as pm

    out = Path(spec.out_dir).resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    params = spec.to_parameters()
    run_info_path = out / "run.json"
    info = json.loads(run_info_path.read_text()) if run_info_path.is_file() else {}
    info.update({"profile": spec.profile, "parameters": params,
                 "resolved_profile": spec.settings.to_dict(),
                 "versions": _versions(), "git_commit": _git_commit()})
    timings = info.setdefault("seconds", {})
    for i, book in enumerate(books, 1):
        executed = out / "notebooks" / book.name
        marker = out / "notebooks" / f".{book.stem}.done"
        digest = _digest(params, book.read_bytes())
        if marker.is_file() and marker.read_text() == digest and executed.is_file():
            log(f"[{i}/{len(books)}] {book.stem}: already done, skipped")
            continue
        log(f"[{i}/{len(books)}] {book.stem}: running …")
        start = time.perf_counter()
        try:
            execute_notebook(book, executed, parameters={**params, "notebook": book.stem},
                             kernel_name="python3",
                             progress_bar=False, cwd=str(out), log_output=False)
        except pm.PapermillExecutionError as exc:
            raise RunError(f"notebook {book.stem} failed in cell {exc.exec_count} "
                           f"(execution count): {exc.ename}: {exc.evalue}\n"
                           f"the executed notebook with the traceback: {executed}") from exc
        finally:
            timings[book.stem] = round(time.perf_counter() - start, 1)
            atomic_write_text(json.dumps(info, indent=1, default=str), run_info_path)
        export_html(executed)
        atomic_write_text(digest, marker)
        log(f"[{i}/{len(books)}] {book.stem}: done in {timings[book.stem]:.1f} s")
    results = collect_results(out, list_notebooks(notebooks))
    atomic_write_text(results.to_csv(index=False), out / "results.csv")
    log(f"results: {out / 'results.csv'} ({len(results)} rows); total "
        f"{sum(timings.values()):.0f} s")
    return results


def collect_results(out: Path, books: list[Path]) -> pd.DataFrame:
    parts = [pd.read_csv(p) for b in books if (p := out / "results" / f"{b.stem}.csv").is_file()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RESULT_COLUMNS)
