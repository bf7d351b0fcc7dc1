#!/usr/bin/env python3
"""Run the turns workload with 2,000, 20,000 and 200,000 stored prospects
and draw turns/s and peak RSS against the number of stored prospects.

    python3 benches/scaling.py --data DIR [--out docs/scaling.svg]

Each point is one run of `cargo bench --bench workloads -- turns --data DIR
--stored N`. The SVG is written without plotting libraries so that the
script needs only Python 3.
"""

import argparse
import re
import subprocess
import sys

STORED = (2_000, 20_000, 200_000)
FIGURE = re.compile(r"kalify turns_per_s=(\d+) rss_mb=(\d+)")
LIMIT = re.compile(r"kalify turns_limit commits_per_s=(\d+)")
CHECK = "kalify turns_check "


def run(data, stored):
    command = ["cargo", "bench", "--bench", "workloads", "--", "turns", "--data", data, "--stored", str(stored)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figure = FIGURE.search(output)
    limit = LIMIT.search(output)
    if not figure or not limit or CHECK not in output:
        sys.exit(f"unexpected output of {' '.join(command)}:\n{output}")
    print(output.strip(), flush=True)
    return int(figure.group(1)), int(figure.group(2)), int(limit.group(1))


def panel(x0, title, unit, values, color, top):
    """One panel: a polyline over the three stored-prospect counts."""
    width, height = 300, 200
    parts = [f'<text x="{x0 + width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    parts.append(f'<line x1="{x0}" y1="{30 + height}" x2="{x0 + width}" y2="{30 + height}" stroke="black"/>')
    parts.append(f'<line x1="{x0}" y1="30" x2="{x0}" y2="{30 + height}" stroke="black"/>')
    points = []
    for index, value in enumerate(values):
        x = x0 + 30 + index * (width - 60) / (len(values) - 1)
        y = 30 + height - value / top * height
        points.append(f"{x:.1f},{y:.1f}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle" font-size="11">{value} {unit}</text>')
        parts.append(f'<text x="{x:.1f}" y="{height + 48}" text-anchor="middle" font-size="11">{STORED[index]:,}</text>')
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"/>')
    parts.append(f'<text x="{x0 + width / 2}" y="{height + 66}" text-anchor="middle" font-size="11">stored prospects</text>')
    return parts


def svg(rates, rss):
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="700" height="310" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>']
    parts += panel(40, "turns per second", "/s", rates, "#1f77b4", max(rates) * 1.25)
    parts += panel(380, "peak RSS", "MB", rss, "#d62728", max(rss) * 1.25)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder written by the workload generator")
    parser.add_argument("--out", default="docs/scaling.svg", help="SVG file to write")
    args = parser.parse_args()
    results = [run(args.data, stored) for stored in STORED]
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(svg([rate for rate, _, _ in results], [rss for _, rss, _ in results]))
    for stored, (rate, rss, limit) in zip(STORED, results):
        print(f"stored={stored} turns_per_s={rate} rss_mb={rss} commits_per_s={limit} ratio={rate / limit:.2f}")


if __name__ == "__main__":
    main()
