"""Shared test fixtures: the real CLI in a subprocess or in-process (its entry function), outputs under tmp_path;
one torch thread; one real two-process sweep shared by the end-to-end, report, embedding and log tests."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from ssl_lightning.methods import registry

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: the CLI processes each test starts get one thread too, or two
    # workers' OpenMP threads spin on each other's cores (docs/performance.md: 5-15x slower).
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")


def _folders(tmp_path: Path, multirun: bool) -> list[str]:
    return [f"paths.cache={tmp_path / 'cache'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}" if multirun else f"hydra.run.dir={tmp_path / 'run'}"]


def run_cli(args: list[str], tmp_path: Path, multirun: bool = False, timeout: int = 300,
            env: dict[str, str] | None = None, base_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m ssl_lightning <args>` with run/sweep/cache folders inside tmp_path; the environment is this
    process's (or `base_env`) with `env` on top."""
    command = [sys.executable, "-m", "ssl_lightning", *(["-m"] if multirun else []), *args,
               *_folders(tmp_path, multirun)]
    full_env = {**(os.environ if base_env is None else base_env), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=full_env)


def _closed_file_handler(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.FileHandler) and handler.stream is None


@contextlib.contextmanager
def _restored_process_state(cwd: Path, env: dict[str, str] | None) -> Iterator[None]:
    """What one CLI run changes in this process, put back afterwards: cwd, sys.argv, the environment (the entry
    function sets SSL_LIGHTNING_STARTED), and the logging handlers and levels Hydra's job logging installs."""
    saved_cwd, saved_argv, saved_env = os.getcwd(), sys.argv, dict(os.environ)
    loggers = [logging.getLogger(), logging.getLogger("ssl_lightning")]
    saved_logging = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    os.chdir(cwd)
    sys.argv = ["ssl_lightning"]
    os.environ.update(env or {})
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        for name in set(os.environ) - set(saved_env):
            del os.environ[name]
        os.environ.update({name: value for name, value in saved_env.items() if os.environ.get(name) != value})
        for logger, handlers, level, propagate in saved_logging:
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            # Hydra's logging set-up closed the handlers it replaced; a closed file handler (an earlier run's log)
            # would reopen its file on the next record, in a folder that may be gone: leave those out.
            logger.handlers[:] = [handler for handler in handlers if not _closed_file_handler(handler)]
            logger.setLevel(level)
            logger.propagate = propagate


def call_main(main: Callable[[list[str]], int | None], argv: list[str], cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`main(argv)` of one of our command-line modules in this process, as its `python -m` would run it: the exit
    code (returned or raised as SystemExit) and what it wrote on stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with _restored_process_state(cwd, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            returned = main(argv)
            code = 0 if returned is None else int(returned)
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def run_entry(args: list[str], tmp_path: Path, multirun: bool = False,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The same command line as `run_cli`, through `ssl_lightning.__main__.entry(argv)` in this process (real
    Hydra, real Trainer; no new interpreter to start)."""
    from ssl_lightning.__main__ import entry

    return call_main(entry, [*(["-m"] if multirun else []), *args, *_folders(tmp_path, multirun)], tmp_path, env)


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, multirun: bool = False, timeout: int = 300, env: dict[str, str] | None = None):
        return run_cli(list(args), tmp_path, multirun=multirun, timeout=timeout, env=env)

    return _run


@pytest.fixture
def cli_in_process(tmp_path):
    """Like `cli`, in-process: for runs whose point is the pipeline's behaviour, not the process around it."""
    def _run(*args: str, multirun: bool = False, env: dict[str, str] | None = None):
        return run_entry(list(args), tmp_path, multirun=multirun, env=env)

    return _run


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """In-process tests use one torch thread: on 2 shared cores, 2 OpenMP threads per process oversubscribe the
    CPU (measured under load: 30 tiny training steps took 0.8 s with one thread and 6-20 s with two)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- the shared real sweep

SMOKE = ("data=synthetic", "profile=smoke")
# Grid 1: pretext reuse (rotation and SimCLR each train once for two budgets), the supervised baseline, a method
# override routed to SimCLR only, 300 test images for the embedding maps, two epochs per stage for the epoch log,
# and the progress bar allowed (stdout is a pipe: one line per epoch instead); checkpoints chosen on validation, as
# on the built-in data sets' budgets (synthetic smoke data has too few validation images: auto would cross-validate).
GRID = ("+experiment=rotation,simclr,supervised", *SMOKE, "data.fraction=0.25,0.5", "data.test_size=300",
        "downstream.select=val", "simclr.temperature=0.2", "pretext.epochs=2", "downstream.epochs=2",
        "trainer.enable_progress_bar=true")
# The registered methods after the original study's (rotation, rotation_jitter, simclr: grid 1 trains two of them)
# that fine-tune, taken from the registry so that a newly registered method joins grid 2 (a method trained on the
# pool's labels is probed frozen only: tests/test_supervised_features.py).
NEW_METHODS = tuple(name for name, spec in registry.methods().items()
                    if spec.rank > registry.SUPERVISED_RANK and not spec.needs_labels)
# Grid 2, into the same sweep folder: those methods at one budget, and a SimCLR cell whose temperature overflows its
# logits (NaN loss in the first step): a failed cell that must not sink the sweep.
FAILING_TEMPERATURE = "1e-45"
SHARED_SWEEP_TIMEOUT = 3 * 900 + 300  # the three processes' own timeouts, and some
NEW_GRID = (f"+experiment={','.join(NEW_METHODS)},simclr", *SMOKE, "data.fraction=1.0", "downstream.select=val",
            f"simclr.temperature={FAILING_TEMPERATURE}")


def _completed(done: subprocess.CompletedProcess) -> dict:
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _train_shared_sweep(root: Path, env: dict[str, str]) -> dict:
    """The two grids as real `python -m ssl_lightning -m` processes, then `python -m ssl_lightning.report` on the
    sweep folder (the report's own process: the one that a user runs). `env`: the environment as the session
    started (in-process tests change os.environ for a moment while this runs)."""
    grid = run_cli(list(GRID), root, multirun=True, timeout=900, base_env=env)
    new = run_cli(list(NEW_GRID), root, multirun=True, timeout=900, base_env=env)
    report = subprocess.run([sys.executable, "-m", "ssl_lightning.report", str(root / "multirun")], cwd=root,
                            capture_output=True, text=True, timeout=900, env=env)
    return {"grid": _completed(grid), "new": _completed(new), "report": _completed(report)}


def _train_in_background(root: Path, env: dict[str, str]) -> None:
    try:
        record = _train_shared_sweep(root, env)
    except Exception as error:  # noqa: BLE001 - recorded, so that every waiting test fails with the cause
        record = {"error": f"{type(error).__name__}: {error}"}
    (root / "record.tmp").write_text(json.dumps(record))
    (root / "record.tmp").replace(root / "record.json")


SWEEP_NEEDED = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected: only a run that uses the sweep trains it
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Note whether any collected test uses the shared sweep (`_shared_sweep_started` starts it)."""
    config.stash[SWEEP_NEEDED] = not config.option.collectonly and any(
        "shared_sweep" in getattr(item, "fixturenames", ()) for item in items)


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the whole `make test` run: the pytest workers' common base folder (their parent)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared_sweep"


@pytest.fixture(scope="session", autouse=True)
def _shared_sweep_started(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Path]:
    """Start the shared sweep at this worker's first test when the collected tests need it, in a background thread
    of the first pytest worker to claim it: its processes train while the workers run other tests, and no worker
    sits idle waiting for it (unless its own test needs the sweep first). That worker stays, at the end of its
    session, until the sweep is done: the other workers may still wait for it. Yields the sweep's folder."""
    root = _shared_root(tmp_path_factory)
    thread = None
    if pytestconfig.stash.get(SWEEP_NEEDED, False):
        root.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(root / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass  # another worker trains it
        else:
            thread = threading.Thread(target=_train_in_background, args=(root, dict(os.environ)),
                                      name="shared_sweep", daemon=True)
            thread.start()
    yield root
    if thread is not None:
        thread.join()


@pytest.fixture(scope="session")
def shared_sweep(_shared_sweep_started: Path) -> dict:
    """Trained once per `make test` (see _shared_sweep_started); each worker waits for its record. Keys: root (the
    folder: multirun/, cache/), grid, new, report (each returncode, stdout, stderr)."""
    record = _shared_sweep_started / "record.json"
    deadline = time.monotonic() + SHARED_SWEEP_TIMEOUT
    while not record.is_file():
        assert time.monotonic() < deadline, f"the shared sweep wrote no {record} in {SHARED_SWEEP_TIMEOUT} s"
        time.sleep(0.2)
    recorded = json.loads(record.read_text())
    assert "error" not in recorded, f"the shared sweep could not run: {recorded['error']}"
    return {"root": record.parent, **recorded}
