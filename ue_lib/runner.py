"""Run the numbered notebooks with papermill (`ue run`). Torch-free: the notebooks' kernels
import torch, this process does not (`ue check` compares the results: `ue_lib.check`)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import tempfile
import time
from io import BytesIO
from pathlib import Path

import pandas as pd

from . import timing
from .data import check_domain, resolve_data_root
from .data.core import CHECKOUT, ENV_VAR
from .io import RESULT_COLUMNS, atomic_write_text
from .spec import HEADLESS_ENV, RunSpec

NOTEBOOK_DIR = CHECKOUT / "notebooks"


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
    """Kernels run inside the run folder: give them the data root as an absolute path, and tell
    them that they run headless (`HEADLESS_ENV`: no widget is shown); leave this process's
    environment as it was."""
    values = {ENV_VAR: str(resolve_data_root().resolve()), HEADLESS_ENV: "1"}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.cache
def _quiet_kernel_manager():
    """jupyter_client's KernelManager, minus the SIGINT it sends before every shutdown request:
    a kernel still answering papermill's closing kernel_info_request logs 'ERROR |
    KeyboardInterrupt caught in kernel' for it (measured: 7 of 29 runs over IPC, which makes the
    race frequent; 0 of 22 with this). Our kernels are idle when they are shut down. It also
    keeps how a kernel that died ended (`KERNEL_EXIT`), for the error of a dead kernel."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

        async def is_alive(self) -> bool:  # asked before a kernel is shut down
            if self.owns_kernel and self.has_kernel:
                KERNEL_EXIT["status"] = await self.provisioner.poll()  # None: still running
            return await super()._async_is_alive()

    return QuietKernelManager


KERNEL_EXIT: dict = {}  # {"status": the exit status of the last kernel (None: it was running)}


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
        results_file = out / "results" / f"{book.stem}.csv"
        digest = _digest(params, book.read_bytes())
        record = _done_record(marker, digest) if executed.is_file() else None
        changed = results_change(results_file, record["results"]) if record else ""
        if record and not changed:
            log(f"[{i}/{len(books)}] {book.stem}: already done, skipped")
            continue
        log(f"[{i}/{len(books)}] {book.stem}: " + (f"{changed}: running it again" if changed
                                                     else "running …"))
        start = time.perf_counter()
        if timing.ENV_DIR in os.environ:  # profiled (`ue profile`): the kernel's files are its
            os.environ[timing.ENV_TAG] = book.stem
        try:
            _execute(book, executed, {**params, "notebook": book.stem}, out)
        finally:
            timings[book.stem] = round(time.perf_counter() - start, 1)
            atomic_write_text(json.dumps(info, indent=1, default=str), run_info_path)
        export_html(executed)
        atomic_write_text(json.dumps({"digest": digest, "results": results_record(results_file)}),
                          marker)
        log(f"[{i}/{len(books)}] {book.stem}: done in {timings[book.stem]:.1f} s")
    results = collect_results(out, list_notebooks(notebooks))
    atomic_write_text(results.to_csv(index=False), out / "results.csv")
    log(f"results: {out / 'results.csv'} ({len(results)} rows); total "
        f"{sum(timings.values()):.0f} s")
    return results


def _execute(book: Path, executed: Path, parameters: dict, out: Path) -> None:
    """Run one notebook into `executed`; its failures as a RunError naming notebook and cell."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    logging.getLogger("papermill").addFilter(_not_kernel_died)  # once: the same filter
    KERNEL_EXIT.clear()
    try:
        execute_notebook(book, executed, parameters=parameters, kernel_name="python3",
                         progress_bar=False, cwd=str(out), log_output=False)
    except pm.PapermillExecutionError as exc:
        if exc.ename == "KeyboardInterrupt":  # the kernel got the Ctrl-C too
            raise KeyboardInterrupt from exc
        raise RunError(f"notebook {book.stem} failed in cell {exc.exec_count} "
                       f"(execution count): {exc.ename}: {exc.evalue}\n"
                       f"the executed notebook with the traceback: {executed}") from exc
    except DeadKernelError as exc:
        where = f"while running notebook {book.stem}, {_running_cell(executed)}"
        status = KERNEL_EXIT.get("status")
        if status is None or status == -signal.SIGKILL:  # what the out-of-memory killer sends
            raise RunError(f"the kernel was killed (out of memory?) {where}; free memory, or "
                           f"lower the settings that hold it (image_size, eval_batch_size, "
                           f"workers), and run the same command again to resume") from exc
        how = f"of signal {_signal_name(-status)}" if status < 0 else f"with status {status}"
        raise RunError(f"the kernel died {how} {where}; run the same command again to resume, "
                       f"and if it dies there again, run that notebook in Jupyter") from exc


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _running_cell(executed: Path) -> str:
    """The cell papermill started last in an executed notebook ('cell 6': the code cell's
    execution count in a run from the top, the injected parameters included; papermill saves
    the notebook as each cell starts and ends), or 'a cell' if it cannot tell."""
    try:
        cells = [c for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code"]
        started = [i for i, c in enumerate(cells, 1) if c["metadata"]["papermill"].get("start_time")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "a cell"
    return f"cell {started[-1]}" if started else "a cell"


def _not_kernel_died(record: logging.LogRecord) -> bool:
    """A filter of papermill's logger: nbclient's 'Kernel died while waiting for execute reply'
    is left out (`_execute` says it, in the run's one error line)."""
    return not record.getMessage().startswith("Kernel died")


# ---- what a finished notebook's marker records of its results file (`ue run` reruns a
# notebook whose file no longer matches: results are never merged half-written)

def _marker(path: Path) -> dict | None:
    """A done marker's record (a dict), or None: missing, unreadable, or of an older ue_lib."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _done_record(marker: Path, digest: str) -> dict | None:
    """The marker of a notebook that ran with these parameters and this notebook file:
    {"digest", "results": `results_record`}; None when it has not (a marker of an older
    ue_lib, holding only the digest, counts as not run: the notebook runs again)."""
    record = _marker(marker)
    return record if record and record.get("digest") == digest and "results" in record else None


def _unreadable(exc: ValueError) -> str:
    """Why pandas could not parse a results file, in one line."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _parse(data: bytes) -> pd.DataFrame:
    """A results file's bytes as a table; ValueError (pandas') when they cannot be parsed."""
    return pd.read_csv(BytesIO(data))


def results_record(path: Path) -> dict | None:
    """What a notebook's results file held when the notebook finished: its rows and sha256
    (None: the notebook writes none)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        rows = len(_parse(data))
    except ValueError as exc:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
        raise RunError(f"the results file {path} cannot be read ({_unreadable(exc)})") from exc
    return {"rows": rows, "sha256": hashlib.sha256(data).hexdigest()}


def results_change(path: Path, recorded: dict | None, data: bytes | None = None) -> str:
    """'' when the results file (its bytes `data`, read here when not given) is the one
    recorded when its notebook finished, else how it changed ('its results file changed since
    it ran (222 rows recorded, 122 found)')."""
    if not isinstance(recorded, dict):
        return ""
    if data is None and not path.is_file():
        return f"its results file {path} is missing ({recorded.get('rows')} rows recorded)"
    data = path.read_bytes() if data is None else data
    if hashlib.sha256(data).hexdigest() == recorded.get("sha256"):
        return ""
    try:
        rows = len(_parse(data))
    except ValueError as exc:
        return f"its results file {path} cannot be read ({_unreadable(exc)}) since it ran"
    return f"its results file changed since it ran ({recorded.get('rows')} rows recorded, {rows} found)"


def collect_results(out: Path, books: list[Path]) -> pd.DataFrame:
    """The notebooks' results files, concatenated in notebook order. A file that changed since
    its notebook finished (its marker says so) stops the merge, naming the file and the fix."""
    parts = []
    for book in books:
        path = out / "results" / f"{book.stem}.csv"
        if not path.is_file():
            continue
        # no marker (not finished here, or by an older ue_lib): nothing to compare with
        recorded = (_marker(out / "notebooks" / f".{book.stem}.done") or {}).get("results")
        fix = (f"run notebook {book.stem} again (the same `ue run` command, with --only "
               f"{book.stem[:2]} or without --only)")
        data = path.read_bytes()
        if changed := results_change(path, recorded, data):
            raise RunError(f"{book.stem}: {changed}; {fix}")
        try:
            parts.append(_parse(data))
        except ValueError as exc:
            raise RunError(f"the results file {path} cannot be read ({_unreadable(exc)}); "
                           f"{fix}") from exc
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RESULT_COLUMNS)
