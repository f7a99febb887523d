"""The benchmark's own arithmetic (pure logic, no server): wrk's output
parsed right, percentiles taken right."""

from bench.__main__ import _parse_wrk
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
    assert result["socket_errors"] is None


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
