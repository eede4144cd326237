"""Where a split forward's time goes at G5 (LSTM, T = 1000, B = 1, I = 64, H = 256), one process: the B = 1 step
product over one part's packed W^T (1 x 256 by 256 x 512, 512 KB) from a block that starts on a cache line and 16
and 32 bytes past one; then one call's two parts run by threads.together with its phases added one at a time
(pack, projection, products, gate steps, barrier), on the call's own arrays; then the whole call and PyTorch's.
For the kernels at 709efb1 (``split_parts_float32.txt``) run the script as it was there (``git show
709efb1:benchmarks/cpu_issue37/aligned/split_parts.py``): the parts' arguments changed after.

    python benchmarks/cpu_issue37/aligned/split_parts.py [float32|float64]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from rnnspec.kernels.cpu import blas, lstm, split
from rnnspec.kernels.cpu.bench import SIZES, make_case, runner
from rnnspec.kernels.cpu.threads import arrive_and_wait, counter, together

PACK, PROJECT, PRODUCTS, STEPS, BARRIER = 1, 2, 4, 8, 16
MODES = {"pack": PACK, "projection": PROJECT, "pack + projection": PACK | PROJECT, "products": PRODUCTS,
         "products + steps": PRODUCTS | STEPS, "products + steps + barrier": PRODUCTS | STEPS | BARRIER,
         "all (the call's lstm_forward)": PACK | PROJECT | PRODUCTS | STEPS | BARRIER}


def ms(call, repeats: int = 15) -> str:
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return f"median {np.median(times) * 1e3:6.3f} ms, best {min(times) * 1e3:6.3f}"


@njit(nogil=True)
def _products(hs, blocks, product, scratch):
    for t in range(hs.shape[0] - 1):
        split._step_product(hs[t], blocks, product, scratch)


@njit(nogil=True)
def _phases(barrier, Ws, x2, U_p, b_p, packed_UT, blocks, a, gates, product, hs, cs, tcs, lo, mode):
    """split.lstm_forward with its phases on or off by ``mode``'s bits."""
    steps = gates.shape[0]
    if mode & PACK:
        split._pack_blocks(Ws, lo, blocks)
    scratch = np.empty(blocks.shape[2], blocks.dtype)
    if mode & PROJECT:
        split._project(x2, U_p, b_p, packed_UT, a)
    if mode & PRODUCTS:
        for t in range(steps):
            split._step_product(hs[t], blocks, product, scratch)
            if mode & STEPS:
                lstm.step(a[t], product, gates[t], hs[t + 1], cs[t], cs[t + 1], tcs[t], lo)
            if mode & BARRIER and not arrive_and_wait(barrier, 2 * (t + 1)):
                return


def at_offset(source: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``source`` whose first element is ``offset`` bytes past a 64-byte boundary."""
    raw = np.empty(source.nbytes + 128, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    copy = raw[start:start + source.nbytes].view(source.dtype).reshape(source.shape)
    copy[...] = source
    return copy


def main(dtype: str) -> None:
    case = make_case(*SIZES["G5"], dtype, cell="lstm")
    forward = runner("rnnspec-cpu", "lstm")(case)[0]
    calls = []
    spied = split.lstm_forward

    def spy(*arguments):
        calls.append(arguments)
        return spied(*arguments)

    split.lstm_forward = spy
    forward()
    split.lstm_forward = spied
    parts = calls[-2:]
    blocks, hs, product = parts[0][6], parts[0][10], parts[0][9]
    scratch = np.empty(blocks.shape[2], blocks.dtype)
    print(f"# LSTM G5 {dtype}; the call's part 0 blocks start {blocks.ctypes.data % 64} bytes past a cache line")
    for offset in (0, 16, 32):
        shifted = at_offset(blocks, offset)
        print(f"1000 B = 1 products, one part's W^T {offset:2d} bytes past a line: "
              f"{ms(lambda shifted=shifted: _products(hs, shifted, product, scratch))}")
    with blas.one_thread():
        for name, mode in MODES.items():
            def both(mode=mode):
                barrier = counter()
                together(_phases, [(barrier, *part[1:], mode) for part in parts], barrier)
            print(f"two parts, {name:30s}: {ms(both)}")
    torch_forward = runner("torch", "lstm")(case)[0]
    for _ in range(2):
        print(f"the whole call: {ms(forward)};  PyTorch: {ms(torch_forward)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "float32")
