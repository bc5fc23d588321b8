"""The reference for splits-cpython.test.ts: the design's `apply_split` ("Split Handling"),
run by CPython itself on a batch of cases read as JSON from stdin.

For each case it prints the split of every image in file order (one letter per image:
t = train, v = val, s = test) and the SHA-1 of `random.shuffle` applied to 0..n-1.
"""

import hashlib
import json
import random
import sys


def design_auto_split(images, seed, ratio):
    # The design's apply_split, method "auto", verbatim; the third part is the runtime's
    # extension: n_val = int(len * ratio[1]), the rest test (a zero third part = two parts).
    random.seed(seed)
    shuffled = images.copy()
    random.shuffle(shuffled)
    split_idx = int(len(shuffled) * ratio[0])
    splits = {}
    if len(ratio) >= 3 and ratio[2] > 0:
        val_end = min(len(shuffled), split_idx + int(len(shuffled) * ratio[1]))
    else:
        val_end = len(shuffled)
    for img in shuffled[:split_idx]:
        splits[img] = "train"
    for img in shuffled[split_idx:val_end]:
        splits[img] = "val"
    for img in shuffled[val_end:]:
        splits[img] = "test"
    return splits


LETTER = {"train": "t", "val": "v", "test": "s"}


def run(case):
    n = case["n"]
    images = list(range(n))
    fixed = {int(k): v for k, v in case.get("fixed", {}).items()}
    if case["level"] == "default":
        seed, ratio = 42, [0.8, 0.2]
    else:
        seed, ratio = case["seed"], case["ratio"]
    rest = [i for i in images if i not in fixed]
    splits = dict(fixed)
    splits.update(design_auto_split(rest, seed, ratio))
    random.seed(case["seed"])
    perm = list(range(n))
    random.shuffle(perm)
    return {
        "letters": "".join(LETTER[splits[i]] for i in images),
        "perm_sha1": hashlib.sha1(",".join(map(str, perm)).encode()).hexdigest(),
    }


cases = json.load(sys.stdin)
json.dump({"python": sys.version.split()[0], "results": [run(c) for c in cases]}, sys.stdout)
