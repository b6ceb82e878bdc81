"""``unetbg remove-dir`` end to end, one set of options against others, on the same photos.

    .venv/bin/python benchmarks/bench_remove_dir.py [--photos DIR] [--limit N]
        [--backends torch,openvino] [--batches 1,2,4,8] [--config LABEL=OPTIONS ...]
        [--rounds 2]

Each configuration is the real command (``unetbg remove-dir PHOTOS OUT --checkpoint
default OPTIONS``) run in a child process without a broker (the job runs in that
process), into a fresh output folder: its wall time is what a user waits, the model's
load included. The configurations are either the grid ``--backends`` × ``--batches``
(``--backend B --batch-size N``) or each ``--config`` (``LABEL=OPTIONS``, e.g.
``default=`` for no options at all, ``torch-4=--backend torch --batch-size 4``). They
take turns, one run each per round, for ``--rounds`` rounds, the best of each kept, so
that a burst of other work on a shared machine cannot favour one of them. All share one
data dir (a temporary one, or ``--data-dir``), whose export cache is filled by an
untimed first run of each backend. Prints a table: best seconds, images/s and the
ratio to the first configuration (to its backend's batch 1 in the grid), and the load
average before and after.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNETBG = Path(sys.executable).with_name("unetbg")
DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "coco-mini" / "train2017"


def configurations(args) -> dict[str, list[str]]:
    """Label -> the command's options, in the order they take turns."""
    if args.config:
        labelled = [c.partition("=") for c in args.config]
        return {label: shlex.split(options) for label, _, options in labelled}
    return {
        f"{backend} batch {batch}": ["--backend", backend, "--batch-size", str(batch)]
        for backend in args.backends.split(",")
        for batch in (int(b) for b in args.batches.split(","))
    }


def photo_folder(source: Path, limit: int | None, into: Path) -> tuple[Path, int]:
    """The first ``limit`` photos of ``source`` (sorted), linked into a folder of their own."""
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = paths[:limit] if limit else paths
    into.mkdir()
    for path in paths:
        (into / path.name).symlink_to(path.resolve())
    return into, len(paths)


def run_once(photos: Path, out: Path, options: list[str], env: dict[str, str]):
    """Seconds for one ``remove-dir`` into an empty ``out``, and the command's own line
    saying which backend ran; a failed run stops the bench."""
    shutil.rmtree(out, ignore_errors=True)
    command = [str(UNETBG), "remove-dir", str(photos), str(out), "--checkpoint", "default"]
    command += ["--follow-symlinks", *options]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    said = [line for line in done.stderr.splitlines() if line.startswith("backend: ")]
    return seconds, said[0].removeprefix("backend: ") if said else "?"


def run_commands(photos: Path, work: Path, configs, rounds: int, env):
    """Each configuration as the real command, taking turns: best seconds and the
    backend's line, per label."""
    warm_up(photos, work / "out", configs, env)
    best: dict[str, float] = {}
    said: dict[str, str] = {}
    for round_ in range(rounds):
        for label, options in configs.items():
            seconds, said[label] = run_once(photos, work / "out", options, env)
            best[label] = min(best.get(label, seconds), seconds)
            print(f"round {round_ + 1} {label}: {seconds:.2f} s", file=sys.stderr, flush=True)
    return best, said


def warm_up(photos: Path, out: Path, configs: dict[str, list[str]], env) -> None:
    """One untimed run per distinct ``--backend`` (none named: ``auto``), so that every
    timed run finds the exported graph and OpenVINO's compiled blobs in the cache."""
    first: dict[str, list[str]] = {}
    for options in configs.values():
        backend = options[options.index("--backend") + 1] if "--backend" in options else "auto"
        first.setdefault(backend, options)
    for options in first.values():
        run_once(photos, out, options, env)


def run_loops(photos: Path, work: Path, configs: dict[str, list[str]], rounds: int):
    """``--in-process``: each backend loaded once here, then the removal loop itself
    (``ModelInference.batch_process``: read, letterbox, network, refine, encode, write)
    at each configuration's batch size, taking turns; no process start, model load or
    job bookkeeping in the times. Best seconds and the backend's line, per label."""
    from unetbg.inference import ModelInference
    from unetbg.weights import default_checkpoint

    def option(options: list[str], name: str, default: str) -> str:
        return options[options.index(name) + 1] if name in options else default

    models: dict[str, ModelInference] = {}
    for options in configs.values():
        backend = option(options, "--backend", "auto")
        if backend not in models:
            models[backend] = ModelInference(default_checkpoint(), device="cpu", backend=backend)
            models[backend].batch_process(
                photos, work / "warm", overwrite=True, follow_symlinks=True
            )
    best: dict[str, float] = {}
    for round_ in range(rounds):
        for label, options in configs.items():
            model = models[option(options, "--backend", "auto")]
            model.batch_size = int(option(options, "--batch-size", str(model.default_batch_size)))
            started = time.perf_counter()
            model.batch_process(photos, work / "out", overwrite=True, follow_symlinks=True)
            seconds = time.perf_counter() - started
            best[label] = min(best.get(label, seconds), seconds)
            print(f"round {round_ + 1} {label}: {seconds:.2f} s", file=sys.stderr, flush=True)
    said = {
        label: models[option(o, "--backend", "auto")].backend_said.removeprefix("backend: ")
        for label, o in configs.items()
    }
    return best, said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="a folder")
    parser.add_argument("--limit", type=int, default=None, help="its first N photos")
    parser.add_argument("--backends", default="torch,openvino", help="grid: backends")
    parser.add_argument("--batches", default="1,2,4,8", help="grid: batch sizes")
    parser.add_argument("--config", action="append", help="LABEL=OPTIONS instead of the grid")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument(
        "--in-process", action="store_true", help="time the removal loop in this process"
    )
    args = parser.parse_args(argv)

    configs = configurations(args)
    with tempfile.TemporaryDirectory(prefix="bench-remove-dir-") as tmp:
        work = Path(tmp)
        photos, count = photo_folder(args.photos, args.limit, work / "in")
        env = {k: v for k, v in os.environ.items() if k != "UNETBG_BROKER_URL"}
        env["UNETBG_DATA_DIR"] = str(args.data_dir or work / "data")
        load_before = os.getloadavg()
        if args.in_process:
            os.environ["UNETBG_DATA_DIR"] = env["UNETBG_DATA_DIR"]
            best, said = run_loops(photos, work, configs, args.rounds)
        else:
            best, said = run_commands(photos, work, configs, args.rounds, env)
        load_after = os.getloadavg()
    print_table(configs, best, said, count, args)
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    return 0


def print_table(configs, best, said, count, args) -> None:
    print(f"\n{count} photos ({args.photos}), best of {args.rounds} rounds taking turns\n")
    print("| configuration | ran | seconds | images/s | ratio |")
    print("|---|---|---:|---:|---:|")
    first = next(iter(configs))
    for label in configs:
        base = first if args.config else f"{label.rsplit(' batch ', 1)[0]} batch "
        base_label = base if args.config else next(k for k in configs if k.startswith(base))
        ratio = best[base_label] / best[label]
        ran = said[label]
        print(f"| {label} | {ran} | {best[label]:.2f} | {count / best[label]:.2f} | {ratio:.2f}× |")


if __name__ == "__main__":
    raise SystemExit(main())
