"""A stage's chunks of work, run here or on a Ray cluster (the optional dependency: `pip install
"sfm-reweight[ray]"`).

A stage cuts its work into chunks (match_dense: pairs; extract_global: images) and writes every
finished chunk into its crash-safe store. `map_chunks` runs the chunks and hands each result to
that one writer, a callback in the calling process (the driver), as it finishes:

- conf "address" None: here, in order, one after the other (the default, no Ray involved);
- otherwise on the Ray cluster at "address" ("auto": the one `ray start` runs on this machine or
  RAY_ADDRESS names; "local": a Ray instance started for this call on this machine, for its cores or
  GPUs; "HOST:PORT" or "ray://HOST:PORT": a remote head). One actor per worker slot (a GPU and
  "cpus_per_worker" CPUs when the cluster has GPUs, else "cpus_per_worker" CPUs; "workers" sets
  fewer) builds the work once (`make_work()`: it loads the network) and runs one chunk at a time,
  handed out as it finishes the last; its torch uses the slot's CPUs as threads.

A worker that dies (killed, out of memory, its node lost) costs the chunk it was running: Ray restarts
the actor, which gets work again once it answers, and the chunk goes to the next free worker. A chunk
that has failed "retries" + 1 times ends the run, as does any error raised by the work itself; an
actor that does not answer within "start_timeout_s" (no room for it any more) is given up, and when
none is left the run ends. Nothing the driver has written is touched, so the run resumes like one
that was killed.

The chunks, the work's settings and its results travel through Ray; every node needs the same
sfm-reweight and torch installed, and the work reads its inputs (images, weights) from the paths it
is given, which every node must see as the driver does (a shared file system).
"""

import argparse
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from .errors import InputError, SfmReweightError

logger = logging.getLogger(__name__)

conf_defaults: dict[str, Any] = {
    "address": None,  # None: run here; "auto", "local", "HOST:PORT" or "ray://HOST:PORT": a Ray cluster
    "workers": None,  # actors; None: one per slot of the cluster
    "cpus_per_worker": 1,  # CPUs of a slot (and torch threads of its actor)
    "retries": 3,  # times a chunk is handed out again after its worker died (and restarts of an actor)
    "start_timeout_s": 300,  # an actor that does not answer this long after (re)starting is given up
}
PROBE_INTERVAL_S = 0.5  # how often a starting actor is asked whether it is ready


class ClusterError(SfmReweightError):
    """The cluster cannot be reached, has no room for a worker, or a chunk keeps killing its workers."""


class Work(Protocol):
    """A stage's work on one chunk; `progress(n)` counts its finished items (a no-op on a cluster)."""

    def __call__(self, chunk: Any, progress: Callable[[int], None]) -> Any: ...


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The command-line options of a stage that runs on a cluster: --cluster ADDRESS, --workers N."""
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help=(
            f"{what} on a Ray cluster: auto, local, HOST:PORT or ray://HOST:PORT"
            " (images on a path every machine shares)"
        ),
    )
    parser.add_argument("--workers", type=int, help="cluster workers (default: one per GPU, else per CPU)")


def cluster_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The "cluster" conf section of `add_arguments`' options."""
    return {"address": args.cluster, "workers": args.workers}


def shared_folder(path: Path) -> Path:
    """`path` as the work on a worker reads it: an existing folder (an InputError naming this machine
    otherwise: the workers read from the driver's paths)."""
    if not Path(path).is_dir():
        raise InputError(
            f"{path}: no such folder on {socket.gethostname()}; cluster workers read images from the driver's path"
        )
    return Path(path)


def map_chunks(
    make_work: Callable[[], Work],
    chunks: Sequence[Any],
    conf: dict[str, Any],
    on_result: Callable[[int, Any], None],
    desc: str,
    unit: str,
    sizes: Sequence[int],
) -> None:
    """Run `make_work()` on every chunk and call `on_result(index into chunks, result)` here as each
    finishes: in order here, in order of completion on a cluster. `make_work` must pickle when
    `conf["address"]` is set (a module-level function or class, a `functools.partial` of one).
    `sizes`: items per chunk, for the progress bar."""
    if not chunks:
        return  # nothing to do: no cluster contacted, no network loaded
    if conf["address"] is None:
        work = make_work()  # before the progress bar: an error building it is the only output
        with tqdm(total=sum(sizes), desc=desc, unit=unit) as bar:
            for i, chunk in enumerate(chunks):
                on_result(i, work(chunk, bar.update))
        return
    ray = _import_ray()
    connected = _connect(ray, conf["address"])
    actors: list[Any] = []
    try:
        workers, per_worker = _slots(ray, conf)
        actor_class = ray.remote(max_restarts=conf["retries"], max_task_retries=0, **per_worker)(_Actor)
        actors = [actor_class.remote(make_work) for _ in range(min(workers, len(chunks)))]
        logger.info(
            "cluster: %d workers of %s CPUs and %s GPUs each on the Ray cluster at %s",
            len(actors),
            per_worker["num_cpus"],
            per_worker["num_gpus"],
            conf["address"],
        )
        with tqdm(total=sum(sizes), desc=desc, unit=unit) as bar:

            def finished(i: int, result: Any) -> None:
                on_result(i, result)
                bar.update(sizes[i])

            _Schedule(ray, actors, chunks, conf).run(finished)
    finally:
        for actor in actors:  # whatever stopped the run: no worker goes on matching for nobody
            ray.kill(actor, no_restart=True)
        if connected:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            'a cluster address was given but Ray is not installed: pip install "sfm-reweight[ray]"'
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address must answer within `timeout` s (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"cluster address {address!r}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as err:
        raise ClusterError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None


def _connect(ray: Any, address: str) -> bool:
    """Connect to the cluster at `address` unless this process is connected already (then that
    cluster is used); whether this call connected."""
    if ray.is_initialized():
        return False
    if address not in ("auto", "local"):
        _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=True, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise ClusterError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
    return True


def _slots(ray: Any, conf: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """How many actors to start and each one's resources: a GPU each when the cluster has GPUs."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    per_worker = {"num_cpus": conf["cpus_per_worker"], "num_gpus": 1 if gpus else 0}
    slots = min(gpus, cpus // conf["cpus_per_worker"]) if gpus else cpus // conf["cpus_per_worker"]
    workers = slots if conf["workers"] is None else conf["workers"]
    if not 1 <= workers <= slots:
        raise ClusterError(
            f"the Ray cluster has {cpus} CPUs and {gpus} GPUs:"
            f" room for {slots} workers of {per_worker['num_cpus']} CPUs"
            f" and {per_worker['num_gpus']} GPUs, not {workers}"
        )
    return workers, per_worker


class _Actor:
    """Holds a stage's work on one worker slot of the cluster. An error while building it (an input
    this node cannot read) is raised by every chunk, so that the run ends with it."""

    def __init__(self, make_work: Callable[[], Work]):
        import ray
        import torch

        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.work: Work | None = None
        self.error: Exception | None = None
        try:
            self.work = make_work()
        except Exception as err:  # noqa: BLE001 -- raised again by run(), where Ray hands it to the driver
            self.error = err

    def ready(self) -> str:
        return socket.gethostname()

    def run(self, chunk: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.work(chunk, lambda n: None)


class _Schedule:
    """Hands the chunks to the actors, one at a time each, and passes the results on as they come.

    An actor gets work only once it answers `ready()` (asked every PROBE_INTERVAL_S): at the start and
    after it died, when Ray restarts it; one that does not answer within start_timeout_s, or whose
    restarts are used up, is given up. A dead worker's chunk goes back to the front of the queue."""

    def __init__(self, ray: Any, actors: list[Any], chunks: Sequence[Any], conf: dict[str, Any]):
        self.ray, self.actors, self.chunks = ray, actors, chunks
        self.retries, self.timeout = conf["retries"], conf["start_timeout_s"]
        self.queue: deque[int] = deque(range(len(chunks)))
        self.failures = [0] * len(chunks)
        self.running: dict[Any, tuple[int, int | None]] = {}  # future -> (actor, chunk; None: a ready() probe)
        now = time.monotonic()
        self.since = dict.fromkeys(range(len(actors)), now)  # actor -> when it (re)started
        self.starting = dict.fromkeys(range(len(actors)), now)  # actor not ready yet -> when to ask again

    def run(self, on_result: Callable[[int, Any], None]) -> None:
        while self.queue or any(i is not None for _, i in self.running.values()):
            if not self.running and not self.starting:
                raise ClusterError(
                    f"no worker is left (each died or did not start); {len(self.queue)} chunks were not run"
                )
            self.probe()
            if not self.running:
                time.sleep(PROBE_INTERVAL_S)
                continue
            done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=PROBE_INTERVAL_S)
            if done:
                self.collect(done[0], on_result)

    def probe(self) -> None:
        """Ask the starting actors whose turn it is whether they are ready; give up the late ones."""
        now = time.monotonic()
        for a, when in list(self.starting.items()):
            if now - self.since[a] > self.timeout:
                del self.starting[a]
                logger.warning("cluster: a worker did not start within %d s; going on without it", self.timeout)
                self.ray.kill(self.actors[a], no_restart=True)
            elif now >= when:
                del self.starting[a]
                self.running[self.actors[a].ready.remote()] = (a, None)

    def collect(self, future: Any, on_result: Callable[[int, Any], None]) -> None:
        a, i = self.running.pop(future)
        exceptions = self.ray.exceptions
        try:
            result = self.ray.get(future)
        except exceptions.RayTaskError as err:  # the work raised: the run ends with its error
            raise err.cause from None
        except (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError) as err:
            if i is not None:  # the actor died running a chunk: Ray restarts it now
                self.since[a] = time.monotonic()
                self.failures[i] += 1
                what = f"chunk {i} (from {self.chunks[i][0]})"
                if self.failures[i] > self.retries:
                    raise ClusterError(
                        f"{what} failed on {self.failures[i]} workers, the last time: {_first_line(err)}"
                    ) from None
                logger.warning("cluster: a worker died running %s (%s); handing it out again", what, _first_line(err))
                self.queue.appendleft(i)
            if not isinstance(err, exceptions.ActorDiedError):  # ActorDiedError: no restarts left
                self.starting[a] = time.monotonic() + PROBE_INTERVAL_S
            return
        if i is not None:
            on_result(i, result)
        if self.queue:
            i = self.queue.popleft()
            self.running[self.actors[a].run.remote(self.chunks[i])] = (a, i)


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
