"""A stage's chunks of work, run here or on a Ray cluster (the optional dependency: `pip install
"sfm-reweight[ray]"`).

A stage cuts its work into chunks (match_dense: pairs; extract_global: images) and writes every
finished chunk into its crash-safe store. `map_chunks` runs the chunks and hands the results back to
that one writer, the calling process (the driver), as they finish:

- conf "address" None: here, in order, one after the other (the default, no Ray involved);
- otherwise on the Ray cluster at "address" ("auto": the one `ray start` runs on this machine or
  RAY_ADDRESS names; "local": a Ray instance started for this call on this machine, for its cores or
  GPUs; "HOST:PORT" or "ray://HOST:PORT": a remote head). One actor per worker slot (a GPU when the
  cluster has GPUs, else "cpus_per_worker" CPUs; "workers" overrides the count) builds the work once
  (`make_work()`: it loads the network) and runs one chunk at a time, handed out as it finishes the
  last; its torch uses the slot's CPUs as threads.

A worker that dies (killed, out of memory, its node lost) costs the chunk it was running: Ray restarts
the actor and the chunk goes to the next free worker; a chunk that has failed "retries" + 1 times
ends the run with its error, as does any error raised by the work itself. Nothing the driver has
written is touched, so the run resumes like one that was killed.

The chunks, the work's settings and its results travel through Ray; the work reads its inputs
(images, weights) from the paths it is given, which every node must see as the driver does (a
shared file system).
"""

import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from .errors import InputError, SfmReweightError

logger = logging.getLogger(__name__)

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")

conf_defaults: dict[str, Any] = {
    "address": None,  # None: run here; "auto", "local", "HOST:PORT" or "ray://HOST:PORT": a Ray cluster
    "workers": None,  # actors; None: one per slot of the cluster
    "cpus_per_worker": 1,  # CPUs of a slot (and torch threads of its actor)
    "retries": 3,  # times a chunk is handed out again after its worker died
}


class ClusterError(SfmReweightError):
    """The cluster cannot be reached, has no room for a worker, or a chunk keeps killing its workers."""


class Work(Protocol[Chunk, Result]):
    """A stage's work on one chunk; `progress(n)` (here only, None on a cluster) counts finished items."""

    def __call__(self, chunk: Chunk, progress: Callable[[int], None] | None = None) -> Result: ...


def map_chunks(
    make_work: Callable[[], Work],
    chunks: Sequence[Chunk],
    conf: dict[str, Any],
    desc: str,
    unit: str,
    sizes: Sequence[int],
) -> Iterator[tuple[int, Result]]:
    """(index into `chunks`, result) of every chunk, as each finishes: in order here, in order of
    completion on a cluster. `make_work` must pickle when `conf["address"]` is set (a module-level
    function, a `functools.partial` of one). `sizes`: items per chunk, for the progress bar."""
    if conf["address"] is None:
        work = make_work()  # before the progress bar: an error building it is the only output
        with tqdm(total=sum(sizes), desc=desc, unit=unit) as bar:
            for i, chunk in enumerate(chunks):
                yield i, work(chunk, bar.update)
    else:
        with tqdm(total=sum(sizes), desc=desc, unit=unit) as bar:
            for i, result in _on_cluster(make_work, chunks, conf):
                bar.update(sizes[i])
                yield i, result


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError('a cluster address was given but Ray is not installed: pip install "sfm-reweight[ray]"') from None
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
    """Connect to the cluster at `address` unless connected already; whether this call connected."""
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
    slots = gpus if gpus else cpus // conf["cpus_per_worker"]
    workers = conf["workers"] or slots
    if not 1 <= workers <= slots:
        raise ClusterError(f"the Ray cluster has {cpus} CPUs and {gpus} GPUs: room for {slots} workers of {per_worker}, not {workers}")
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

    def run(self, chunk: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.work(chunk)


def _on_cluster(make_work: Callable[[], Work], chunks: Sequence[Chunk], conf: dict[str, Any]) -> Iterator[tuple[int, Result]]:
    ray = _import_ray()
    connected = _connect(ray, conf["address"])
    try:
        workers, per_worker = _slots(ray, conf)
        actor_class = ray.remote(max_restarts=conf["retries"], max_task_retries=0, **per_worker)(_Actor)
        actors = [actor_class.remote(make_work) for _ in range(min(workers, len(chunks)))]
        logger.info("cluster: %d workers (%s each) on the Ray cluster at %s", len(actors), per_worker, conf["address"])
        yield from _schedule(ray, actors, chunks, conf["retries"])
    finally:
        if connected:
            ray.shutdown()


def _schedule(ray: Any, actors: list[Any], chunks: Sequence[Chunk], retries: int) -> Iterator[tuple[int, Result]]:
    """Hand the chunks to the actors, one at a time each, and yield the results as they come. An
    actor that died is restarting: it is asked whether it is back (`__ray_ready__`, every 0.5 s)
    before it gets work again, and its chunk goes back to the front of the queue."""
    queue: deque[int] = deque(range(len(chunks)))
    failures = [0] * len(chunks)
    running: dict[Any, tuple[int, int | None]] = {}  # future -> (actor, chunk; None: a readiness probe)
    restarting: dict[int, float] = {}  # actor -> when to ask again

    def hand_out(a: int) -> None:
        if queue:
            i = queue.popleft()
            running[actors[a].run.remote(chunks[i])] = (a, i)

    for a in range(len(actors)):
        hand_out(a)
    while queue or any(i is not None for _, i in running.values()):
        if not running and not restarting:
            raise ClusterError(f"every worker is gone (each restarted {retries} times); {len(queue)} chunks were not run")
        for a, when in list(restarting.items()):
            if time.monotonic() >= when:
                del restarting[a]
                running[actors[a].__ray_ready__.remote()] = (a, None)
        done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
        if not done:
            continue
        a, i = running.pop(done[0])
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayTaskError as err:  # the work raised: the run ends with its error
            raise err.cause from None
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as err:
            if i is not None:
                failures[i] += 1
                if failures[i] > retries:
                    raise ClusterError(f"chunk {i} failed on {failures[i]} workers, the last time: {_first_line(err)}") from None
                logger.warning("cluster: a worker died running chunk %d (%s); handing it out again", i, _first_line(err))
                queue.appendleft(i)
            if not isinstance(err, ray.exceptions.ActorDiedError):  # died for good: no restarts left
                restarting[a] = time.monotonic() + 0.5
            continue
        if i is not None:
            yield i, result
        hand_out(a)


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
