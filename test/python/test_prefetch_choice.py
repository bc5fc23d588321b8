"""PREFETCH_NEXT_BATCH: an explicit choice stands; auto prefetches only where the decoding has a CPU of its own."""

from vision_trainer.common.infer_session import prefetch_choice


def test_an_explicit_choice_stands_whatever_the_cpus():
    assert prefetch_choice(True, 2, 2) == (True, "PREFETCH_NEXT_BATCH")
    assert prefetch_choice(False, 1, 8) == (False, "PREFETCH_NEXT_BATCH")


def test_auto_prefetches_beside_a_gpu_or_a_runtime_that_leaves_a_cpu_free():
    on_gpu, why = prefetch_choice("auto", None, 2)
    assert on_gpu and "GPU" in why
    spare, why = prefetch_choice("auto", 1, 2)
    assert spare and "1 of the 2 CPU(s)" in why


def test_auto_does_not_prefetch_when_the_runtime_computes_on_every_cpu_of_the_budget():
    busy, why = prefetch_choice("auto", 2, 2)
    assert not busy and "all 2 CPU(s)" in why
    # A runtime asked for more threads than the budget holds leaves nothing free either.
    assert prefetch_choice("auto", 4, 2)[0] is False
    # Absent (an older caller): auto.
    assert prefetch_choice(None, 1, 2)[0] is True
