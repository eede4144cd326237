"""Compare two pickles of expected_speed.py: the same cases, every value's bytes and every tolerance equal."""
import pickle
import sys

import numpy as np


def same(x, y) -> bool:
    x, y = np.atleast_1d(np.asarray(x)), np.atleast_1d(np.asarray(y))
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


before, after = (pickle.load(open(path, "rb")) for path in sys.argv[1:3])
assert before.keys() == after.keys(), "the cases differ"
differ = 0
for case in before:
    (values, tolerances, *reasons), (values2, tolerances2, *reasons2) = before[case], after[case]
    assert values.keys() == values2.keys() and tolerances == tolerances2 and reasons == reasons2, case
    for key in values:
        if not same(values[key], values2[key]):
            differ += 1
            print("differs:", case[:2], key)
print(len(before), "cases compared;", differ, "values differ")
