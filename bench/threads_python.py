"""The workload of bench/threads.ts: resnet18 training steps (64 px, batch 16) on random data
with torch's intra-op pool at THREADS, for SECONDS after one warm-up step. Prints
{"threads": N, "steps": S, "seconds": T, "steps_per_second": S/T} on stdout.

    python bench/threads_python.py THREADS SECONDS
"""

import json
import sys
import time

import timm
import torch

threads, seconds = int(sys.argv[1]), float(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = timm.create_model("resnet18", pretrained=False, num_classes=10)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))


def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


step()
steps, started = 0, time.perf_counter()
while time.perf_counter() - started < seconds:
    step()
    steps += 1
elapsed = time.perf_counter() - started
print(json.dumps({"threads": threads, "steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed}))
