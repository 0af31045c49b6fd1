"""Parse `tether serve`'s /metrics with the Prometheus Python client's parser
and check what a scraper relies on: every family documented and typed, the
families the docs promise present, histogram buckets cumulative.

Usage: check_metrics.py URL [BEARER_TOKEN]
"""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

REQUIRED = {
    "tether_connections_open": "gauge",
    "tether_connections": "counter",
    "tether_tcp_accepted": "counter",
    "tether_http_requests": "counter",
    "tether_handshake_duration_seconds": "histogram",
    "tether_build_info": "gauge",
    "tether_config_reloads": "counter",
    "tether_config_last_reload_successful": "gauge",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def main():
    url = sys.argv[1]
    req = urllib.request.Request(url)
    if len(sys.argv) > 2:
        req.add_header("Authorization", "Bearer " + sys.argv[2])
    with urllib.request.urlopen(req, timeout=10) as resp:
        ctype = resp.headers.get_all("Content-Type")
        text = resp.read().decode("utf-8")
    assert ctype == ["text/plain; version=0.0.4; charset=utf-8"], ctype
    families = {f.name: f for f in text_string_to_metric_families(text)}
    problems = []
    for name, ty in REQUIRED.items():
        f = families.get(name)
        if f is None:
            problems.append(f"missing family {name}")
        elif f.type != ty:
            problems.append(f"{name}: type {f.type}, want {ty}")
    for f in families.values():
        if not f.documentation.strip():
            problems.append(f"{f.name}: no HELP text")
        if f.type in ("unknown", "untyped"):
            problems.append(f"{f.name}: no TYPE")
        if f.type == "histogram":
            buckets = [s for s in f.samples if s.name.endswith("_bucket")]
            counts = [s.value for s in buckets]
            if counts != sorted(counts) or buckets[-1].labels.get("le") != "+Inf":
                problems.append(f"{f.name}: buckets not cumulative or no +Inf")
            count = [s.value for s in f.samples if s.name.endswith("_count")]
            if count != [counts[-1]]:
                problems.append(f"{f.name}: _count {count} != +Inf bucket {counts[-1]}")
    info = [s for s in families["tether_build_info"].samples]
    if len(info) != 1 or "version" not in info[0].labels or info[0].value != 1:
        problems.append(f"tether_build_info: {info}")
    for p in problems:
        print("FAIL", p)
    if problems:
        sys.exit(1)
    print(f"metrics OK: {len(families)} families, {sum(len(f.samples) for f in families.values())} samples")


if __name__ == "__main__":
    main()
