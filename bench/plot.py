#!/usr/bin/env python3
"""Draws bench/pack-time.png from the data bench/harness.py writes (run with matplotlib)."""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "cargo containerize (gzip)": dict(color="#d62728", marker="o", linewidth=2.5),
    "cargo containerize (zstd)": dict(color="#ff7f0e", marker="o", linewidth=2.5),
    "podman build + save": dict(color="#1f77b4", marker="s"),
    "buildah": dict(color="#17becf", marker="s"),
    "umoci": dict(color="#2ca02c", marker="^"),
    "gzip -6 (floor)": dict(color="#7f7f7f", marker="v", linestyle="--"),
    "pigz -6 (floor)": dict(color="#000000", marker="v", linestyle="--"),
}


def main():
    data = json.load(open(sys.argv[1]))
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    for label, points in data["series"].items():
        points.sort()
        xs = [p[0] for p in points]
        med = [p[1] for p in points]
        lo = [p[1] - p[2] for p in points]
        hi = [p[3] - p[1] for p in points]
        ax.errorbar(xs, med, yerr=[lo, hi], label=label, capsize=3, **STYLE.get(label, {}))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("binary size (MB, log scale)")
    ax.set_ylabel("wall time to an image on disk (s, log scale; median, bars min–max)")
    ax.set_title(data["title"], fontsize=10)
    sizes = sorted({p[0] for points in data["series"].values() for p in points})
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(data["out"])


if __name__ == "__main__":
    main()
