"""A bounded load test against the real service process over loopback (bench/load.py):
no error but the deliberate 429s, one score per item, bounded memory. It prints p99 and peak
RSS; it asserts no timings (those belong in bench/ and RELIABILITY.md)."""

import asyncio

from bench.load import peak_rss_mib, run_load, start_service

CLIENTS = 24
SECONDS = 6


def test_load_with_deliberate_429s_and_nothing_else(tmp_path, tiny_model):
    config = tmp_path / "load.yaml"
    config.write_text(f"""
default_backend: sentiment
server: {{max_concurrent_requests: 16}}
backends:
  sentiment: {{type: sentiment, model: {tiny_model}, runtime: onnx, max_length: 64}}
  lexicon: {{type: lexicon}}
""")
    process, url = start_service(config, ready_timeout_s=300)
    try:
        before = peak_rss_mib(process.pid)
        result = asyncio.run(run_load(url, CLIENTS, SECONDS, "sentiment", items=8))
        peak = peak_rss_mib(process.pid)
        assert process.poll() is None  # still serving
    finally:
        process.terminate()
        process.wait(30)
    print(f"\nload: {result}, peak RSS {before:.0f} -> {peak:.0f} MiB")
    assert result["errors"] == {}  # no 5xx, no connection errors, no wrong score counts
    assert result["requests_ok"] > 0
    assert result["rejected_429"] > 0  # 24 clients against a limit of 16 in flight: the cap really bites
    assert peak < 2048
