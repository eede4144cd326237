"""torch.compile (inductor, CPU): the layers (``TorchCompiled``) and a cell loop with its step compiled
(``TorchCompiledLoop``), conformant forward and through autograd of the compiled code; and the Dynamo
behaviour the targets are built around, pinned so that a PyTorch release that changes it fails here."""

import pytest

torch = pytest.importorskip("torch")

from rnnspec.spec.cases import Case  # noqa: E402
from rnnspec.spec.frameworks.torch_compiled import CELLS, TorchCompiled, TorchCompiledLoop  # noqa: E402
from rnnspec.spec.runner import check  # noqa: E402
from rnnspec.spec.worker import TargetName, start_method  # noqa: E402

#: seconds a call may take: a layer's first call at a new T compiles for 15-140 s on 2 loaded cores, and the loop's
#: first call of a dtype took over 60 s there once (the default per-call timeout, 60 s, reports those as timeouts)
COMPILE_TIMEOUT = 600.0
STALE = "update docs/compilers.md and spec/frameworks/torch_compiled.py's docstring"


def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:1]) for r in report.results
            if r.status not in ("passed", "not provided")]


def _graphs_and_breaks(fn) -> tuple[object, int, dict]:
    """fn()'s result, the graphs Dynamo compiled during it and its graph breaks (reason -> count)."""
    from torch._dynamo.utils import counters

    counters.clear()
    result = fn()
    return result, counters["stats"]["unique_graphs"], dict(counters["graph_break"])


def test_dynamo_runs_the_recurrent_layers_eagerly_unless_allow_rnn():
    """Why ``torch-compile`` sets allow_rnn: without it, torch.compile(nn.GRU) compiles nothing (a graph break at
    the layer, run eagerly), so checking it would check the eager layer again."""
    torch._dynamo.reset()
    layer = torch.nn.GRU(2, 3)
    compiled = torch.compile(layer)
    _, graphs, breaks = _graphs_and_breaks(lambda: compiled(torch.ones(2, 1, 2)))
    assert graphs == 0 and any("RNN, GRU, or LSTM" in reason for reason in breaks), (
        f"torch {torch.__version__} now compiles nn.GRU by default ({graphs} graphs, breaks {list(breaks)}): {STALE}")


def _vjp(target, case: Case) -> dict:
    """The target's vjp on the case's arrays, called here (check() calls it in a forked child)."""
    a = case.arrays()
    state0 = {k: a[k] for k in ("h0", "c0") if k in a}
    cotangents = {k.removeprefix("cot_"): v for k, v in a.items() if k.startswith("cot_")}
    skip = {"x", "targets", "lengths", *state0}
    params = {k: v for k, v in a.items() if k not in skip and not k.startswith("cot_")}
    target.cell = case.cell
    return target.vjp(a["x"], state0, params, cotangents)


@pytest.mark.slow
def test_the_compiled_layer_is_compiled_whole_and_conformant_on_a_short_case():
    """One elman case of two steps (each new T is a new graph, 10-60 s of C++ compile: the rest is -m slow).
    The vjp here compiles the training graph (forward and backward, no graph break); check() then runs in a child
    forked from this process, which inherits it and compiles the inference graph of forward()."""
    torch._dynamo.reset()
    case = Case(T=2, B=2, I=3, H=2, K=3, activation="tanh", dtype="float64", regime="contracting", seed=0)
    target = TorchCompiled()
    _, graphs, breaks = _graphs_and_breaks(lambda: _vjp(target, case))
    assert graphs == 1 and not breaks, (graphs, breaks)
    report = check(target, target="torch-compile", cases=[case], timeout=COMPILE_TIMEOUT)
    assert report.conformant, _failing(report)


#: a compile costs tens of seconds: CI checks one cell, -m slow the others
QUICK = ("elman",)


@pytest.mark.parametrize("cell", [c if c in QUICK else pytest.param(c, marks=pytest.mark.slow) for c in CELLS])
def test_the_compiled_loop_is_conformant(cell):
    """Loaded by name in the worker, as on the command line."""
    report = check(TargetName("torch-compile-loop"), target="torch-compile-loop", cell=cell, examples=4,
                   timeout=COMPILE_TIMEOUT)
    assert report.conformant, _failing(report)
    assert any("-VJP-" in r.clause.id and r.status == "passed" for r in report.results)
    assert any("-LOSS-" in r.clause.id and r.status == "passed" for r in report.results)


def test_the_loop_compiles_its_step_once_whatever_the_sizes():
    """dynamic=True: B, I and H are symbolic, so new sizes above 1 compile nothing new (sizes 0 and 1 are
    specialised by Dynamo: a second graph)."""
    torch._dynamo.reset()
    cases = [Case(T=T, B=B, I=I, H=H, K=3, activation="tanh", dtype="float64", regime="contracting", seed=1)
             for T, B, I, H in ((3, 2, 3, 4), (5, 3, 2, 6), (2, 4, 5, 3))]
    target = TorchCompiledLoop()
    _, first, _ = _graphs_and_breaks(lambda: _vjp(target, cases[0]))
    _, more, breaks = _graphs_and_breaks(lambda: [_vjp(target, case) for case in cases[1:]])
    assert first == 1 and more == 0 and not breaks, (first, more, breaks)


def test_a_default_check_of_the_loop_meets_the_edge_sizes_on_a_few_step_graphs():
    """The loop's declared few shapes (a speed fix: each size of 1 in B, I or H is a graph of its own, with its
    backward) keep the edge sizes of the default check's cases (T = 1, B = 1, H = 1 and I != H, where drawn), and
    leave at most that many (B, I, H) size-1 patterns per dtype, so at most that many step graphs per dtype."""
    from rnnspec.spec.cases import few_shapes, generate

    shapes = TorchCompiledLoop.shapes
    assert isinstance(shapes, int) and shapes <= 4
    for cell in CELLS:
        drawn = generate(50, 0, TorchCompiledLoop.dtypes, ("tanh",), cell)
        cases = few_shapes(drawn, shapes)
        assert len(cases) == len(drawn)
        for size in ("T", "B", "H"):
            assert min(getattr(c, size) for c in cases) == min(getattr(c, size) for c in drawn), (cell, size)
        assert any(c.I != c.H for c in cases) or all(c.I == c.H for c in drawn)
        for dtype in TorchCompiledLoop.dtypes:
            patterns = {(c.B == 1, c.I == 1, c.H == 1) for c in cases if c.dtype == dtype}
            assert len(patterns) <= shapes, (cell, dtype, patterns)


def test_a_default_check_of_the_layers_meets_the_edge_sizes_on_a_few_short_graphs():
    """The layers unroll T into each graph, so their few shapes are also short (``max_T``): the default check's
    cases keep the edge sizes (T = 1, B = 1, H = 1 and I != H), run the recurrence (a T of 2 or more), and unroll
    at most shapes x max_T steps per dtype in all, against the 76 of the four drawn shapes (1, 7, 25, 43 for elman).
    Seeds 0-2: the edge sizes are those of the first few drawn shapes, which two shapes hold for these seeds."""
    from rnnspec.spec.cases import few_shapes, generate

    shapes, max_T = TorchCompiled.shapes, TorchCompiled.max_T
    assert isinstance(max_T, int) and 2 <= max_T <= 16 and shapes <= 4
    for cell, seed in [(cell, seed) for cell in CELLS for seed in (0, 1, 2)]:
        drawn = generate(50, seed, TorchCompiled.dtypes, ("tanh",), cell)
        cases = few_shapes(drawn, shapes, max_T)
        assert len(cases) == len(drawn)
        for size in ("T", "B", "H"):
            assert min(getattr(c, size) for c in cases) == min(getattr(c, size) for c in drawn), (cell, size)
        assert any(c.I != c.H for c in cases) or all(c.I == c.H for c in drawn)
        assert max(c.T for c in cases) <= max_T and any(c.T >= 2 for c in cases), cell
        for dtype in TorchCompiled.dtypes:
            steps = sum({(c.T, c.B, c.I, c.H): c.T for c in cases if c.dtype == dtype}.values())
            assert steps <= shapes * max_T, (cell, dtype, steps)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_the_compiled_loop_is_conformant_over_200_cases(cell, seed):
    """The long run (benchmarks/long_run_torch_compile.log)."""
    report = check(TorchCompiledLoop(), target="torch-compile-loop", cell=cell, seed=seed, examples=200,
                   timeout=COMPILE_TIMEOUT)
    assert report.conformant, _failing(report)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_the_compiled_layers_are_conformant_on_short_sequences(cell):
    """The layers compile one graph per sequence length: short cases of every cell, both dtypes."""
    cases = [Case(T=T, B=B, I=I, H=H, K=3, activation="tanh", dtype=dtype, regime="contracting", seed=T,
                  cell=cell, P=1 if cell == "lstm-proj" else 0)
             for T, B, I, H in ((1, 1, 1, 2), (3, 2, 3, 4)) for dtype in ("float32", "float64")]
    report = check(TorchCompiled(), target="torch-compile", cell=cell, cases=cases, timeout=COMPILE_TIMEOUT)
    assert report.conformant, _failing(report)


def test_a_process_that_has_compiled_spawns_its_workers():
    """A child forked after inductor has compiled here waits forever on compile workers it does not have (seen: a
    check of torch-compile-loop hung in CI after another test compiled in-process): the worker is spawned instead."""
    compiled = torch.compile(lambda v: v * 2 + 1)
    assert float(compiled(torch.ones(1))[0]) == 3.0
    assert start_method(TargetName("torch-compile-loop")) == "spawn"
