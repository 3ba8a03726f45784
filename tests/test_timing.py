import time

from bench.measure.clocks import CpuClock, clock_for, time_calls


def test_cpu_clock_measures_a_sleep():
    clock = clock_for("cpu")
    assert isinstance(clock, CpuClock)
    a = clock.mark()
    time.sleep(0.01)
    b = clock.mark()
    clock.sync()
    assert clock.seconds(a, b) >= 0.009


def test_time_calls_one_sample_per_call():
    calls = []
    device_s, wall_s = time_calls(lambda: calls.append(1), CpuClock(), 5)
    assert len(calls) == 5 and len(device_s) == 5 and all(w >= d >= 0 for d, w in zip(device_s, wall_s))
