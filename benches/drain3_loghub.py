#!/usr/bin/env python3
"""drain3 on Loghub-2k, scored like examples/loghub_eval.rs, to compare side by side.

    python3 -m venv /tmp/drain3 && /tmp/drain3/bin/pip install drain3==0.9.11
    /tmp/drain3/bin/python benches/drain3_loghub.py /path/to/loghub-2k

Headers are split with each system's `log_format` from settings.json (as the Loghub
benchmark does); drain3 runs with its default configuration (one for all systems) on the
contents; each line's group is the final cluster it was put in. GA (Zhu et al. 2019) and
FGA (Jiang et al. 2024) against *_structured_corrected.csv, and lines/s (single process,
the contents already in memory).
"""
import csv
import json
import re
import sys
import time
from collections import Counter, defaultdict

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

SYSTEMS = ["HDFS", "Hadoop", "Spark", "Zookeeper", "BGL", "HPC", "Thunderbird", "Windows",
           "Linux", "Android", "HealthApp", "Apache", "Proxifier", "OpenSSH", "OpenStack", "Mac"]


def header_regex(log_format):
    parts = re.split(r"(<[^<>]+>)", log_format)
    pattern = ""
    for k, part in enumerate(parts):
        if k % 2 == 0:
            pattern += re.sub(" +", r"\\s+", part)
        else:
            pattern += "(?P<%s>.*?)" % part.strip("<>")
    return re.compile("^" + pattern + "$")


def accuracy(pred, truth):
    groups = defaultdict(list)
    for i, p in enumerate(pred):
        groups[p].append(i)
    sizes = Counter(truth)
    lines = correct = 0
    for members in groups.values():
        t = truth[members[0]]
        if all(truth[i] == t for i in members) and sizes[t] == len(members):
            lines += len(members)
            correct += 1
    ga = lines / len(pred)
    p, r = correct / len(groups), correct / len(sizes)
    return ga, (2 * p * r / (p + r) if p + r else 0.0)


def main(root):
    settings = json.load(open(f"{root}/settings.json"))
    total_lines, total_time, sums = 0, 0.0, [0.0, 0.0]
    print(f"{'system':<12} {'GA':>6} {'FGA':>6} {'lines/s':>10}")
    for name in SYSTEMS:
        regex = header_regex(settings[name]["log_format"])
        contents = []
        with open(f"{root}/{name}/{name}_2k.log", encoding="utf-8", errors="replace") as f:
            for line in f:
                m = regex.search(line.strip())
                if m:
                    contents.append(m.group("Content"))
        with open(f"{root}/{name}/{name}_2k.log_structured_corrected.csv", newline="") as f:
            truth = [row["EventTemplate"] for row in csv.DictReader(f)]
        assert len(truth) == len(contents), name
        config = TemplateMinerConfig()
        config.profiling_enabled = False
        miner = TemplateMiner(config=config)
        start = time.perf_counter()
        ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
        elapsed = time.perf_counter() - start
        ga, fga = accuracy(ids, truth)
        sums[0] += ga
        sums[1] += fga
        total_lines += len(contents)
        total_time += elapsed
        print(f"{name:<12} {ga:>6.3f} {fga:>6.3f} {len(contents) / elapsed:>10.0f}")
    k = len(SYSTEMS)
    print(f"{'average':<12} {sums[0] / k:>6.3f} {sums[1] / k:>6.3f} {total_lines / total_time:>10.0f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: drain3_loghub.py <path to loghub-2k>")
    main(sys.argv[1])
