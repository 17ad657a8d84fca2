"""Speed and memory of this project as ratios to its own limits, each measured side by side.

    python benchmark.py --data_dir ../shared/data/cifar10-jpeg [--json PATH] [--device cpu|cuda]
                        [--repeats 5] [--study] [--breakdown] [--markdown]

The machines this runs on are shared and change speed by up to 2x within seconds, so
no figure here is an absolute time: each is the ratio of two things timed in this one
run, back to back in alternating order, the median over many such pairs.
What each ratio means, its target and why: docs/performance.md. CUDA work is timed
with CUDA events and a synchronisation, never with host clocks around asynchronous work.
Whole runs are separate processes started from a small launcher (their wall time is
process start to exit; their peak RSS is their own, read by os.wait4).
"""

import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
sys.path.insert(0, HERE)  # the course files

import cifar10_utils  # noqa: E402
import compare_batch_norm  # noqa: E402
import mlp_pytorch  # noqa: E402
import optim  # noqa: E402
from mlp_numpy import MLP as NumpyMLP  # noqa: E402
from modules import CrossEntropyModule  # noqa: E402
from support import checks, cli, output  # noqa: E402
from support.device_loader import get_device_loaders  # noqa: E402

# The assignment's default run: both trainers' command-line defaults.
HIDDEN, LR, BATCH, EPOCHS = [128], 0.1, 128, 10
# A ratio is the median over many short pairs of blocks: on a loaded machine the speed changes
# within a second, and short alternating blocks see the same conditions more often than long ones.
STEPS_PER_BLOCK = 10  # training steps (or their products) per timed block
PAIRS_PER_REPEAT = 10  # so each --repeats adds 10 pairs of blocks to a step ratio
LOADER_BATCHES = 20  # batches per timed block of a data pipeline
POOL = 16  # distinct batches the step loops cycle through (25 MB of float32 images)
GEMM_SIZE = {"cpu": 2048, "cuda": 4096}  # square matrices large enough for the best rate

# key -> (comparison, bound): the project's speed targets
TARGETS = {
    "numpy_step_vs_matmuls": ("<=", 1.25),
    "numpy_run_vs_steps": ("<=", 1.3),
    "numpy_run_peak_rss_vs_data": ("<=", 2.5),
    "torch_step_vs_matmuls": ("<=", 1.2),
    "numpy_bn_step_vs_step": ("<=", 1.3),  # batch norm costs at most 30 % more per step
    "loader_speedup_vs_course_pipeline": (">=", 20.0),
    "study_vs_flop_bound": ("<=", 1.5),
    # a memory-layout trick earns its place only when it is at least 10 % faster
    "numpy_step_colmajor_vs_rowmajor": ("<=", 1 / 1.1),
    "torch_step_colmajor_vs_rowmajor": ("<=", 1 / 1.1),
}


# ---------------------------------------------------------------- timing


@dataclass
class Pair:
    """Median over pairs of time(a) / time(b), and the median seconds per call of each."""

    ratio: float
    a: float
    b: float


def per_call(fn, n, device):
    """Seconds per call of fn over n calls in a row. On CUDA, between two events recorded on
    the stream, after a synchronisation: host clocks would time the launches, not the work."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / n
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def paired(fn_a, fn_b, n, pairs, device):
    """time(fn_a) / time(fn_b), each timed over n calls, back to back in alternating order
    (so that a change of the machine's speed hits both alike), median over the pairs."""
    fn_a()  # warm-up: first-call costs (allocation, lazy imports) are not what is timed
    fn_b()
    ratios, times_a, times_b = [], [], []
    for r in range(pairs):
        if r % 2:
            b, a = per_call(fn_b, n, device), per_call(fn_a, n, device)
        else:
            a, b = per_call(fn_a, n, device), per_call(fn_b, n, device)
        ratios.append(a / b)
        times_a.append(a)
        times_b.append(b)
    return Pair(statistics.median(ratios), statistics.median(times_a), statistics.median(times_b))


# Children are started from this small launcher, not from the benchmark process: a forked
# child's peak RSS counts the parent's memory at fork time, even after exec.
LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen([sys.executable, *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
out = proc.stdout.read()
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
sys.stdout.write(out.decode(errors="replace"))
"""


def run_process(args):
    """(wall seconds, peak RSS bytes) of `python args...` run from the repository root."""
    result = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=HERE, capture_output=True, text=True)
    head, _, out = result.stdout.partition("\n")
    if result.returncode or len(head.split()) != 3:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"the launcher of python {' '.join(args)} failed: {last}")
    wall, peak, code = head.split()
    if int(code):
        last = (out.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"python {' '.join(args)} failed (exit {code}): {last}")
    return float(wall), float(peak)


# ---------------------------------------------------------------- shared pieces


def describe_device(device):
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {model}, {available_cores()} cores, torch threads: {torch.get_num_threads()}"


def available_cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def host_batches(data, n=POOL):
    """n normalised training batches of the default size, as the NumPy trainer's loader cuts them."""
    loader = cifar10_utils.get_dataloader(data, BATCH, return_numpy=True, seed=0)["train"]
    return list(itertools.islice(loader, n))


def dataset_bytes(data):
    """Bytes of the uint8 pixels and the labels of every split, as the loader holds them."""
    return sum(split.images.nbytes + split.labels.nbytes for split in data.values())


def layer_sizes(hidden):
    return list(zip([cifar10_utils.N_FEATURES, *hidden], [*hidden, cifar10_utils.N_CLASSES], strict=True))


def forward_flops(hidden):
    """Multiply-adds x 2 of one sample's forward pass: one product per Linear."""
    return sum(2 * m * n for m, n in layer_sizes(hidden))


def training_flops(hidden):
    """One sample's training step: forward, dL/dW of every Linear, dL/dX of all but the first."""
    return 2 * forward_flops(hidden) + sum(2 * m * n for m, n in layer_sizes(hidden)[1:])


# ---------------------------------------------------------------- GEMM rates


def gemm_gflops(device, repeats, xp="torch"):
    """GFLOP/s of a square float32 matrix product, the best rate this machine offers."""
    n = GEMM_SIZE[device.type]
    if xp == "numpy":
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    else:
        a = torch.randn(n, n, device=device, generator=torch.Generator(device).manual_seed(0))
    a @ a
    calls = 20 if device.type == "cuda" else 2
    seconds = statistics.median(per_call(lambda: a @ a, calls, device) for _ in range(repeats))
    return 2 * n**3 / seconds / 1e9


def step_products(weights, batches, hidden, douts, passes):
    """A function doing the matrix products of one training step, NumPy arrays or torch tensors
    alike: per Linear, Y = X W^T (forward), dW = dout^T X and, for every layer but the first,
    dX = dout W (backward). The first layer's X cycles through the step's batches, so it comes
    from memory as in a step; the later layers' inputs and every dout are fixed stand-ins of
    the right shapes (their values do not change a product's time)."""
    pool = itertools.cycle([x.reshape(BATCH, -1) for x, _ in batches])

    def products():
        inputs = [next(pool), *hidden]
        for i, (w, a, d) in enumerate(zip(weights, inputs, douts, strict=True)):
            if "forward" in passes:
                a @ w.T
            if "backward" in passes:
                d.T @ a
                if i:
                    d @ w

    return products


# ---------------------------------------------------------------- NumPy steps


def numpy_model(layout, use_batch_norm=False):
    """The default float32 MLP as the NumPy trainer builds it (in training mode, with a batch
    norm after each hidden Linear when asked), with its Linear weights and their gradient
    buffers stored row-major ('C') or column-major ('F'): same values, same code."""
    model = NumpyMLP(
        cifar10_utils.N_FEATURES,
        HIDDEN,
        cifar10_utils.N_CLASSES,
        use_batch_norm=use_batch_norm,
        dtype=np.float32,
        rng=np.random.default_rng(0),
    )
    for linear in model.linears:
        for store in (linear.params, linear.grads):
            store["weight"] = np.array(store["weight"], order=layout)
    return model


def numpy_step(model, batches):
    """One training step as train_mlp_numpy runs it: forward, loss, backward, SGD update, the
    lines of its training loop (which has no step function of its own) with optim.SGD. The
    trainer's bookkeeping (the loss as a float, the correct count) is not part of a step; the
    run's ratio to its steps counts it with the rest."""
    loss = CrossEntropyModule()
    pool = itertools.cycle(batches)
    sgd = optim.SGD(model.layers, lr=LR)

    def step():
        x, y = next(pool)
        probs = model.forward(x)
        loss.forward(probs, y)
        model.backward(loss.backward(probs, y))
        sgd.step()

    return step


def numpy_products(model, batches, passes=("forward", "backward")):
    """Only the matrix products one NumPy step needs (step_products), same shapes and dtype
    (float32), by the modules' formulas."""
    rng = np.random.default_rng(1)
    weights = [linear.params["weight"] for linear in model.linears]
    hidden = [rng.standard_normal((BATCH, m), dtype=np.float32) for m, _ in layer_sizes(HIDDEN)[1:]]
    douts = [rng.standard_normal((BATCH, n), dtype=np.float32) for _, n in layer_sizes(HIDDEN)]
    return step_products(weights, batches, hidden, douts, passes)


def measure_numpy_steps(batches, repeats):
    """Pairs of the default NumPy step: over its products; with batch norm over without (the batch
    norm speed line); column-major over row-major weights (the layout rule)."""
    cpu = torch.device("cpu")
    row_major = numpy_model("C")
    step = numpy_step(row_major, batches)
    pairs = repeats * PAIRS_PER_REPEAT
    vs_products = paired(step, numpy_products(row_major, batches), STEPS_PER_BLOCK, pairs, cpu)
    batch_norm = numpy_step(numpy_model("C", use_batch_norm=True), batches)
    bn_vs_step = paired(batch_norm, step, STEPS_PER_BLOCK, pairs, cpu)
    layout = paired(numpy_step(numpy_model("F"), batches), step, STEPS_PER_BLOCK, pairs, cpu)
    return vs_products, bn_vs_step, layout


# ---------------------------------------------------------------- the NumPy run end to end


def measure_numpy_run(data_dir, data, batches, repeats, out_dir):
    """The default NumPy run as a user starts it, over the time its training steps alone take.

    Each run is followed by one epoch's worth of the same steps timed in this process (same
    model, batch, dtype), so both halves of a ratio see the machine at nearly the same speed.
    Returns medians of the ratio, the wall time, the run's own epoch times (its log.json:
    steps, batch cutting and validation) and the step time, and the largest peak RSS.
    """
    steps_per_epoch = len(data["train"].labels) // BATCH
    step = numpy_step(numpy_model("C"), batches)
    step()
    args = ["train_mlp_numpy.py", "--data_dir", data_dir, "--output_dir", out_dir, "--no_progress"]
    figures = {"ratio": [], "wall": [], "epochs": [], "step": [], "peak": []}
    for _ in range(repeats):
        wall, peak = run_process(args)
        t_step = per_call(step, steps_per_epoch, torch.device("cpu"))
        with open(os.path.join(out_dir, "log.json")) as f:
            epochs = sum(json.load(f)["logging_info"]["epoch_time"])
        ratio = wall / (EPOCHS * steps_per_epoch * t_step)
        for key, value in (
            ("ratio", ratio),
            ("wall", wall),
            ("epochs", epochs),
            ("step", t_step),
            ("peak", peak),
        ):
            figures[key].append(value)
    return {key: max(v) if key == "peak" else statistics.median(v) for key, v in figures.items()}


# ---------------------------------------------------------------- PyTorch steps


def torch_model(device, layout):
    """The default MLP of mlp_pytorch on `device`, its Linear weights row-major ('C', as nn.Linear
    makes them) or column-major ('F', each stored as the transpose of a row-major W^T)."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        model = mlp_pytorch.MLP(cifar10_utils.N_FEATURES, HIDDEN, cifar10_utils.N_CLASSES).to(device)
    for linear in model.linears():
        w = linear.weight.detach()
        linear.weight = nn.Parameter(w.contiguous() if layout == "C" else w.t().contiguous().t())
    return model


def torch_step(model, batches):
    """One training step as train_mlp_pytorch runs it: forward, loss, zero_grad, backward, SGD step."""
    loss_module = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    pool = itertools.cycle(batches)

    def step():
        x, y = next(pool)
        loss = loss_module(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def torch_products(model, batches, device, passes=("forward", "backward")):
    """The step's matrix products with torch, same shapes and dtype, the first layer's X cycling
    through the step's batches (autograd skips dL/dX of the first layer too: the pixels do not
    require a gradient)."""
    gen = torch.Generator(device).manual_seed(1)
    weights = [linear.weight.detach() for linear in model.linears()]
    sizes = layer_sizes(HIDDEN)
    hidden = [torch.randn(BATCH, m, device=device, generator=gen) for m, _ in sizes[1:]]
    douts = [torch.randn(BATCH, n, device=device, generator=gen) for _, n in sizes]
    return step_products(weights, batches, hidden, douts, passes)


def measure_torch_steps(batches, device, repeats):
    """Step over its products, and column-major over row-major weights."""
    batches = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in batches]
    row_major = torch_model(device, "C")
    step = torch_step(row_major, batches)
    pairs = repeats * PAIRS_PER_REPEAT
    vs_products = paired(step, torch_products(row_major, batches, device), STEPS_PER_BLOCK, pairs, device)
    layout = paired(torch_step(torch_model(device, "F"), batches), step, STEPS_PER_BLOCK, pairs, device)
    return vs_products, layout


# ---------------------------------------------------------------- data pipelines


class CourseDataset(torch.utils.data.Dataset):
    """The course skeleton's pipeline without its PIL step: each sample's uint8 pixels become
    a float tensor in [0, 1] (ToTensor), then normalised per channel (Normalize)."""

    def __init__(self, split):
        images, labels = split.images, split.labels
        self.images, self.labels = images.reshape(-1, *cifar10_utils.IMAGE_SHAPE), labels
        self.mean = torch.tensor(cifar10_utils.MEAN).view(3, 1, 1)
        self.std = torch.tensor(cifar10_utils.STD).view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).float().div(255)
        return (x - self.mean) / self.std, int(self.labels[i])


def endless(loader):
    """The loader's batches epoch after epoch, as a trainer draws them: each epoch's set-up
    (a new permutation) is paid once per epoch, not once per timed block."""
    while True:
        yield from loader


def draw_batches(loader, device, to_device=False):
    """A function drawing the next LOADER_BATCHES shuffled batches of 128 from the loader."""
    batches = endless(loader)

    def draw():
        for x, y in itertools.islice(batches, LOADER_BATCHES):
            if to_device:  # where a trainer copies each batch to its device
                x, y = x.to(device), y.to(device)

    return draw


def measure_loaders(data, device, repeats):
    """Images per second of each trainer's loader over the course-style pipeline's.

    Returns (NumPy host loader Pair, device loader Pair): each Pair's ratio is
    time(course) / time(project) for the same number of images.
    """
    generator = torch.Generator().manual_seed(0)
    course = torch.utils.data.DataLoader(
        CourseDataset(data["train"]), BATCH, shuffle=True, generator=generator
    )
    host = cifar10_utils.get_dataloader(data, BATCH, return_numpy=True, seed=0)["train"]
    on_device = get_device_loaders(data, BATCH, device, seed=0)["train"]
    cpu, pairs = torch.device("cpu"), repeats * PAIRS_PER_REPEAT
    numpy_pair = paired(draw_batches(course, cpu), draw_batches(host, cpu), 1, pairs, cpu)
    course_to_device = draw_batches(course, device, to_device=True)
    device_pair = paired(course_to_device, draw_batches(on_device, device), 1, pairs, device)
    return numpy_pair, device_pair


# ---------------------------------------------------------------- the study


def study_flops(data, settings):
    """Matrix-product FLOPs of the whole study: every run's training steps, its validation
    pass after each epoch and its one test pass, for each architecture, with and without batch
    norm, each learning rate and seed. Left out: batch norm's element-wise work and the layer
    statistics on 500 images per epoch (about 1 % of the products)."""
    n_train, n_val, n_test = (len(data[s].labels) for s in ("train", "validation", "test"))
    steps = n_train // settings["batch_size"]
    runs_per_architecture = 2 * len(settings["lrs"]) * len(settings["seeds"])
    total = 0
    for hidden in settings["architectures"]:
        per_epoch = steps * settings["batch_size"] * training_flops(hidden) + n_val * forward_flops(hidden)
        per_run = settings["epochs"] * per_epoch + n_test * forward_flops(hidden)
        total += runs_per_architecture * per_run
    return total


def measure_study(data_dir, data, device, repeats, out_dir, epochs=None):
    """Wall time of the six-run study (one process) over its products at the GEMM rate measured
    just before and just after it (the higher one: a bound). Returns (ratio, wall, flops, GFLOP/s)."""
    settings = compare_batch_norm.study_settings(**({"epochs": epochs} if epochs else {}))
    args = [
        "compare_batch_norm.py",
        "--data_dir",
        data_dir,
        "--results",
        os.path.join(out_dir, "results.json"),
        "--fresh",
        "--no_progress",
        "--device",
        device.type,
        "--epochs",
        str(settings["epochs"]),
    ]
    before = gemm_gflops(device, repeats)
    wall, _ = run_process(args)
    rate = max(before, gemm_gflops(device, repeats))
    flops = study_flops(data, settings)
    return wall / (flops / (rate * 1e9)), wall, flops, rate


# ---------------------------------------------------------------- where the time goes (--breakdown)


def time_parts(parts, n, rounds, device):
    """{name: median seconds per call}, each part timed over n calls in turn, in every round."""
    for fn in parts.values():
        fn()
    times = {name: [] for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            times[name].append(per_call(fn, n, device))
    return {name: statistics.median(t) for name, t in times.items()}


def numpy_step_parts(batches, repeats):
    """Each piece of one NumPy step timed alone on the values a real step hands it: every
    layer's forward and backward, the loss, the SGD update, beside the whole step."""
    model, loss = numpy_model("C"), CrossEntropyModule()
    x, y = batches[0]
    inputs, out = [], x.reshape(len(x), -1)
    for layer in model.layers:
        inputs.append(out)
        out = layer.forward(out)
    douts, d = [], loss.backward(out, y)
    for i in reversed(range(len(model.layers))):
        douts.insert(0, d)
        d = model.layers[i].backward(d, input_grad=False) if i == 0 else model.layers[i].backward(d)
    parts = {"whole step": numpy_step(numpy_model("C"), batches)}
    parts["matrix products, forward"] = numpy_products(model, batches, ("forward",))
    parts["matrix products, backward"] = numpy_products(model, batches, ("backward",))
    for i, layer in enumerate(model.layers):
        name = f"layer {i} {type(layer).__name__}"
        parts[f"{name} forward"] = lambda layer=layer, a=inputs[i]: layer.forward(a)
        parts[f"{name} backward"] = lambda layer=layer, g=douts[i], first=i == 0: (
            layer.backward(g, input_grad=False) if first else layer.backward(g)
        )
    parts["cross-entropy forward + backward"] = lambda: (loss.forward(out, y), loss.backward(out, y))
    parts["SGD update"] = optim.SGD(model.layers, lr=0.0).step  # lr 0: the same work, weights kept
    return time_parts(parts, STEPS_PER_BLOCK, repeats * PAIRS_PER_REPEAT, torch.device("cpu"))


def torch_step_parts(batches, device, repeats):
    """The PyTorch step cut at autograd's seams: forward and loss, then with backward, then the
    whole step (adding the optimizer), beside its products."""
    batches = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in batches[:1]]
    model, loss_module = torch_model(device, "C"), nn.CrossEntropyLoss()
    x, y = batches[0]

    def forward_backward():
        model.zero_grad(set_to_none=True)
        loss_module(model(x), y).backward()

    parts = {
        "whole step": torch_step(model, batches),
        "forward + loss": lambda: loss_module(model(x), y),
        "forward + loss + backward": forward_backward,
        "matrix products, forward": torch_products(model, batches, device, ("forward",)),
        "matrix products, backward": torch_products(model, batches, device, ("backward",)),
    }
    return time_parts(parts, STEPS_PER_BLOCK, repeats * PAIRS_PER_REPEAT, device)


def loader_parts(data, repeats):
    """Per batch of 128: the NumPy loader's gather and normalisation, the course pipeline's
    128 per-sample items and its collate."""
    images = data["train"].images
    rows = np.random.default_rng(0).permutation(len(images))[:BATCH]
    gathered = images[rows]
    course = CourseDataset(data["train"])
    items = [course[int(i)] for i in rows]
    parts = {
        "NumPy loader: gather 128 rows": lambda: images[rows],
        "NumPy loader: normalise them": lambda: cifar10_utils.normalize(gathered),
        "course pipeline: 128 items": lambda: [course[int(i)] for i in rows],
        "course pipeline: default collate": lambda: torch.utils.data.default_collate(items),
    }
    return time_parts(parts, 10, repeats * PAIRS_PER_REPEAT, torch.device("cpu"))


def rss_parts(data_dir):
    """Peak RSS of a process that only imports the NumPy trainer, and of one that also loads the data."""
    load = "import sys, train_mlp_numpy, cifar10_utils; cifar10_utils.get_cifar10(sys.argv[1])"
    return {
        "imports of train_mlp_numpy": run_process(["-c", "import train_mlp_numpy"])[1],
        "imports + get_cifar10": run_process(["-c", load, data_dir])[1],
    }


def breakdown_rows(data_dir, data, batches, device, repeats):
    """(part, figure, share of its whole) rows, context for docs/performance.md."""
    rows = []
    for title, parts, unit in (
        ("NumPy step", numpy_step_parts(batches, repeats), "whole step"),
        ("PyTorch step", torch_step_parts(batches, device, repeats), "whole step"),
        ("data pipelines, per batch", loader_parts(data, repeats), None),
    ):
        whole = parts.get(unit)
        for name, seconds in parts.items():
            share = f"{seconds / whole:.0%}" if whole else ""
            rows.append((f"{title}: {name}", f"{seconds * 1e3:.3f} ms", share))
    data_bytes = dataset_bytes(data)
    for name, peak in rss_parts(data_dir).items():
        rows.append((f"peak RSS: {name}", f"{peak / 1e6:.0f} MB", f"{peak / data_bytes:.2f} x data"))
    return rows


# ---------------------------------------------------------------- report


def note(message):
    """Progress on stderr: a full run takes minutes (an hour on a loaded machine)."""
    print(f"benchmark: {message}", file=sys.stderr, flush=True)


def numpy_figures(data_dir, data, batches, repeats, results, context):
    note("NumPy step against its products, with batch norm against without, and the weights' two layouts")
    results["numpy_gemm_gflops"] = gemm_gflops(torch.device("cpu"), repeats, xp="numpy")
    steps, batch_norm, layout = measure_numpy_steps(batches, repeats)
    results["numpy_step_vs_matmuls"] = steps.ratio
    context["numpy_step_vs_matmuls"] = f"step {steps.a * 1e3:.2f} ms, products {steps.b * 1e3:.2f} ms"
    results["numpy_bn_step_vs_step"] = batch_norm.ratio
    context["numpy_bn_step_vs_step"] = (
        f"with batch norm {batch_norm.a * 1e3:.2f} ms, without {batch_norm.b * 1e3:.2f} ms"
    )
    results["numpy_step_colmajor_vs_rowmajor"] = layout.ratio
    context["numpy_step_colmajor_vs_rowmajor"] = f"{layout.a * 1e3:.2f} / {layout.b * 1e3:.2f} ms"
    note(f"the default NumPy run end to end ({repeats} runs)")
    with tempfile.TemporaryDirectory() as out_dir:
        run = measure_numpy_run(data_dir, data, batches, repeats, out_dir)
    results["numpy_run_vs_steps"] = run["ratio"]
    context["numpy_run_vs_steps"] = (
        f"run {run['wall']:.2f} s, its epochs {run['epochs']:.2f} s, step {run['step'] * 1e3:.2f} ms"
    )
    results["numpy_run_peak_rss_vs_data"] = run["peak"] / dataset_bytes(data)
    context["numpy_run_peak_rss_vs_data"] = f"{run['peak'] / 1e6:.0f} MB / {dataset_bytes(data) / 1e6:.0f} MB"


def torch_figures(batches, device, repeats, results, context):
    note(f"PyTorch step on {device.type} against its products, and the weights' two layouts")
    results["gemm_gflops"] = gemm_gflops(device, repeats)
    context["gemm_gflops"] = f"torch on {device.type}"
    steps, layout = measure_torch_steps(batches, device, repeats)
    results["torch_step_vs_matmuls"] = steps.ratio
    context["torch_step_vs_matmuls"] = f"step {steps.a * 1e3:.2f} ms, products {steps.b * 1e3:.2f} ms"
    results["torch_step_colmajor_vs_rowmajor"] = layout.ratio
    context["torch_step_colmajor_vs_rowmajor"] = f"{layout.a * 1e3:.2f} / {layout.b * 1e3:.2f} ms"


def loader_figures(data, device, repeats, results, context):
    note("data pipelines")
    host, on_device = measure_loaders(data, device, repeats)
    results["loader_speedup_numpy"] = host.ratio
    results["loader_speedup_device"] = on_device.ratio
    results["loader_speedup_vs_course_pipeline"] = min(host.ratio, on_device.ratio)
    per_image = 1e6 / (LOADER_BATCHES * BATCH)
    context["loader_speedup_numpy"] = (
        f"course {host.a * per_image:.2f} us/image, loader {host.b * per_image:.3f}"
    )
    context["loader_speedup_device"] = (
        f"course {on_device.a * per_image:.2f} us/image, loader {on_device.b * per_image:.3f}"
    )


def study_figures(data_dir, data, device, repeats, results, context, epochs=None):
    note("the six-run batch-norm study (minutes)")
    with tempfile.TemporaryDirectory() as out_dir:
        ratio, wall, flops, rate = measure_study(data_dir, data, device, repeats, out_dir, epochs)
    results["study_vs_flop_bound"] = ratio
    context["study_vs_flop_bound"] = f"{wall:.0f} s for {flops / 1e12:.1f} TFLOP at {rate:.0f} GFLOP/s"


def run_all(data_dir, data, batches, device, repeats, study=False, study_epochs=None):
    """Every measurement on the splits `data` and the step batches `batches` (host_batches):
    (results for --json, {key: context text for the table})."""
    load_start = os.getloadavg()[0]
    results, context = {"device": describe_device(device)}, {}
    # NumPy first: no torch work has run yet, so no idle OpenMP thread competes with OpenBLAS
    numpy_figures(data_dir, data, batches, repeats, results, context)
    torch_figures(batches, device, repeats, results, context)
    loader_figures(data, device, repeats, results, context)
    if study:
        study_figures(data_dir, data, device, repeats, results, context, study_epochs)
    load_end = os.getloadavg()[0]
    # on a shared machine, the other processes' load is part of every figure
    results["load_average_1min"] = max(load_start, load_end)
    context["load_average_1min"] = (
        f"at start {load_start:.1f}, at end {load_end:.1f}, {available_cores()} cores"
    )
    return results, context


ROW_ORDER = [
    "numpy_step_vs_matmuls",
    "numpy_run_vs_steps",
    "numpy_run_peak_rss_vs_data",
    "numpy_bn_step_vs_step",
    "torch_step_vs_matmuls",
    "loader_speedup_vs_course_pipeline",
    "loader_speedup_numpy",
    "loader_speedup_device",
    "study_vs_flop_bound",
    "numpy_step_colmajor_vs_rowmajor",
    "torch_step_colmajor_vs_rowmajor",
    "gemm_gflops",
    "numpy_gemm_gflops",
    "load_average_1min",
]


def table_rows(results, context):
    """(key, value, target, met, context) for every figure measured, in a fixed order."""
    rows = []
    for key in ROW_ORDER:
        if key not in results:
            continue
        value = results[key]
        target, met = "", ""
        if key in TARGETS:
            op, bound = TARGETS[key]
            target = f"{'≤' if op == '<=' else '≥'} {bound:.3g}"
            met = "yes" if (value <= bound if op == "<=" else value >= bound) else "no"
        rows.append((key, f"{value:.3g}", target, met, context.get(key, "")))
    return rows


def print_table(header, rows, markdown=False):
    if markdown:
        for row in [header, ("---",) * len(header), *rows]:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def print_report(results, context, repeats, breakdown=None, markdown=False):
    """The figures' table, then (with --breakdown) where the time goes; the same as Markdown."""
    print(f"Measured on {results['device']}; --repeats {repeats}.\n")
    header = ("key", "measured", "target", "met", "parts (context only)")
    print_table(header, table_rows(results, context), markdown)
    if breakdown:
        print()
        print_table(("part", "median", "share"), breakdown, markdown)


def parse_args(argv=None):
    parser = cli.OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=cifar10_utils.default_data_dir(), help="CIFAR-10 directory")
    parser.add_argument("--json", help="also write the figures as one JSON object to this file")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the torch parts")
    parser.add_argument(
        "--repeats", default=5, type=int, help="runs per run ratio; 10 x N pairs of blocks per step ratio"
    )
    parser.add_argument("--study", action="store_true", help="also time the six-run study (minutes)")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the parts of each step and pipeline"
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown rows")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but CUDA is not available on this machine")
    return args


def check_json_path(path):
    """ValueError (one line, exit 2 under run_cli) when the figures could not be written to
    `path`: checked before any measurement, so a typo does not cost a run of many minutes."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        checks.check_output_dir(directory, filenames=(name,))
    except ValueError as e:
        raise ValueError(f"--json {path}: {e}") from None


def main(argv=None, study_epochs=None):
    args = parse_args(argv)
    if args.json is not None:  # an empty path is refused too, not ignored
        check_json_path(args.json)
    # torch keeps its own thread count (the cores this process may use, or OMP_NUM_THREADS), as the
    # PyTorch trainer does
    data_dir, device = os.path.abspath(args.data_dir), torch.device(args.device)
    data = cifar10_utils.get_cifar10(data_dir)  # read once, for the figures and the breakdown
    batches = host_batches(data)
    results, context = run_all(data_dir, data, batches, device, args.repeats, args.study, study_epochs)
    breakdown = None
    if args.breakdown:
        note("where the time goes")
        breakdown = breakdown_rows(data_dir, data, batches, device, args.repeats)
    print_report(results, context, args.repeats, breakdown, args.markdown)
    if args.json is not None:
        # atomically: an interrupt or a full disk leaves the old file (or none), never half of one
        output.write_json(args.json, results)
    return results


if __name__ == "__main__":
    cli.run_cli(main, freeze_gc=False)
