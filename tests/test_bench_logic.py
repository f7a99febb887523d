"""The benchmark's own arithmetic (pure logic, no server): wrk's output
parsed right, the capacity search, the CPU model, py-spy's samples summed
right, percentiles taken right."""

from pathlib import Path

from bench.__main__ import _parse_wrk
from bench.overload import find_capacity, model_goodput, passes, send_cost_us
from bench.profile import summarize
from bench.stats import percentile

WRK_OUTPUT = """Running 6s test @ http://127.0.0.1:8080/api/send
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.37ms    4.12ms  78.00ms   80.00%
  Latency Distribution
     50%   12.37ms
     75%   14.00ms
     90%   17.50ms
     99%  850.00us
  29964 requests in 6.00s, 4.63MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   4994.12
Transfer/sec:    790.00KB
"""


def test_wrk_output_is_parsed_with_units() -> None:
    result = _parse_wrk(WRK_OUTPUT)
    assert result["rps"] == 4994.12
    assert result["p50_ms"] == 12.37
    assert result["p99_ms"] == 0.85  # us converted
    assert result["non_2xx"] == 12
    assert result["ok_rps"] == round(4994.12 * (29964 - 12) / 29964, 2)  # refusals are no throughput
    assert result["socket_errors"] is None


def _run(requests: int, ok: int, p99_ms: float | None, refused: int = 0) -> dict[str, object]:
    return {"requests": requests, "ok": ok, "refused": refused, "p99_ms": p99_ms}


def test_a_rate_is_within_capacity_when_its_p99_and_its_failures_are() -> None:
    assert passes(_run(10_000, 10_000, 99.0))
    assert not passes(_run(10_000, 10_000, 101.0))
    assert passes(_run(10_000, 9_950, 50.0))  # 0.5% refused or timed out: still within
    assert not passes(_run(10_000, 9_949, 50.0))
    assert not passes(_run(10_000, 0, None))


def test_the_capacity_search_brackets_the_highest_rate_that_passes() -> None:
    tried = []

    def run(rate: float) -> dict[str, object]:
        tried.append(rate)
        return {**_run(1000, 1000, 10.0 if rate <= 3300 else 500.0), "offered_rate": rate}

    found = find_capacity(run, start=1000, bisections=3, pause_s=0)
    assert tried[:3] == [1000, 2000, 4000]  # doubling until a rate fails
    assert 3000 <= found["capacity_per_s"] <= 3300, found
    assert len(found["points"]) == len(tried)


def test_the_cpu_model_splits_the_cores_between_sends_and_refusals() -> None:
    # 2 cores, 8000 answered/s; a send 300 us, a refusal 50 us: 2 = 300e-6 G + 50e-6 (8000 - G) -> G = 6400
    run = {"cpu_stack_s": 18.0, "cpu_idle_s": 2.0, "wall_s": 10.0, "elapsed_s": 10.0, "ok": 60_000, "refused": 20_000}
    assert model_goodput(run, 300.0, 50.0) == 6400.0
    # never more than was offered
    assert model_goodput({**run, "cpu_idle_s": 20.0}, 300.0, 50.0) == 8000.0


def test_a_sends_cost_leaves_out_what_its_runs_refusals_cost() -> None:
    """2 s of stack CPU for 1,000 sends and 2,000 refusals at 250 µs each:
    1.5 s was the sends', 1,500 µs each (not 2,000)."""
    run = {"cpu_stack_s": 2.0, "ok": 1000, "refused": 2000}
    assert send_cost_us(run, refusal_us=250.0) == 1500.0
    assert send_cost_us({"cpu_stack_s": 2.0, "ok": 0, "refused": 10}, 250.0) is None  # no send: no cost


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_profile_sums_self_and_inclusive_shares_over_processes(tmp_path: Path) -> None:
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("serve (s.py:1);call (c.py:5);send (k.py:9) 6\nserve (s.py:1);log (l.py:3) 2\n")
    two.write_text("serve (s.py:2);call (c.py:7) 2\nnot a sample line\n")
    profile = summarize([one, two])
    assert profile["samples"] == 10, profile
    # line numbers are dropped, so one function is one entry whatever line it was on
    assert profile["self"] == [["send (k.py)", 60.0], ["log (l.py)", 20.0], ["call (c.py)", 20.0]], profile
    assert profile["inclusive"][:2] == [["serve (s.py)", 100.0], ["call (c.py)", 80.0]], profile
    assert summarize([]) == {"samples": 0, "self": [], "inclusive": []}
