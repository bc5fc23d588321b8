"""Python side of vision-trainer, imported by the TypeScript runtime through pythonia.

Everything here is called from Node's bridge on Python's main thread. Values sent to JavaScript
are plain dicts of finite numbers and strings (see `support.plain`): NaN/Infinity crash Node's
IPC parser, and objects passed to JS are never freed on the Python side.
"""

from . import cpu_budget
from .safe_load import install_on_import

# Before any framework code runs: whoever calls torch.load in this process gets weights_only=True.
install_on_import()
# Before torch, OpenMP or MKL start their thread pools: sized to the CPUs this process may use.
cpu_budget.apply()
