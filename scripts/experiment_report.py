"""The report of `scripts/experiment.sh` over several data seeds (DATA_SEEDS): reads the
cvrl-eval result files of every data seed's results folder and prints markdown tables of
linear-probe top-1 (%), mean ± std over every data seed x model seed, with each data seed's
mean beside it, then each label's gain over random init and its share of the supervised
run's gain, per data seed and over all of them.

    python3 experiment_report.py OUT/d1/exp1-TAG/results OUT/d2/exp1-TAG/results ...

A results folder's data seed is the `dN` folder in its path; a file's model seed is the
`-seedN.json` at the end of its name (cvrl-eval's naming). Standard deviations are sample
ones (n - 1), as `cvrl-eval report` prints.
"""
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# Labels that are baselines rather than methods, by experiment.
RANDOM = "random-init"
SUPERVISED = ("supervised", "supervised-source")


def data_seed(folder: Path) -> int:
    for part in reversed(folder.parts):
        m = re.fullmatch(r"d(\d+)", part)
        if m:
            return int(m.group(1))
    sys.exit(f"{folder}: no dN folder (data seed) in the path")


def read(folders):
    """{(label, target): {data seed: {model seed: top-1}}}"""
    scores = defaultdict(lambda: defaultdict(dict))
    for folder in map(Path, folders):
        d = data_seed(folder)
        files = sorted(folder.glob("*.json"))
        if not files:
            sys.exit(f"{folder}: no result files")
        for f in files:
            m = re.search(r"-seed(\d+)\.json$", f.name)
            if not m:
                continue
            try:
                v = json.loads(f.read_text())
                label, top1 = v["label"], float(v["report"]["scores"]["top1"])
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"{f}: not a cvrl-eval result ({e})")
            target = v["report"].get("data", {}).get("target", "class")
            scores[(label, target)][d][int(m.group(1))] = top1
    return scores


def mean_std(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def cell(by_model):
    """A data seed's mean, its model seeds' values in brackets when there are several."""
    xs = [by_model[s] for s in sorted(by_model)]
    text = f"{statistics.mean(xs):.1f}"
    if len(xs) > 1:
        text += " (" + ", ".join(f"{x:.1f}" for x in xs) + ")"
    return text


def order(labels):
    """Methods first, then random init, then supervised."""
    rank = lambda l: (2 if l in SUPERVISED else 1 if l == RANDOM else 0, l)
    return sorted(labels, key=rank)


def main(folders):
    scores = read(folders)
    dseeds = sorted({d for by_d in scores.values() for d in by_d})
    mseeds = sorted({s for by_d in scores.values() for m in by_d.values() for s in m})
    print(
        f"Linear-probe top-1 (%), data seeds {', '.join(map(str, dseeds))} x model seeds "
        f"{', '.join(map(str, mseeds))}: mean ± std over every pair (n), then each data "
        "seed's mean.\n"
    )
    head = "| label | target | all | " + " | ".join(f"data {d}" for d in dseeds) + " |"
    print(head)
    print("|---" * (3 + len(dseeds)) + "|")
    targets = sorted({t for _, t in scores}, key=lambda t: (t != "class", t))
    labels = order({l for l, _ in scores})
    for target in targets:
        for label in labels:
            by_d = scores.get((label, target))
            if not by_d:
                continue
            xs = [x for m in by_d.values() for x in m.values()]
            mean, std = mean_std(xs)
            cells = [cell(by_d[d]) if d in by_d else "" for d in dseeds]
            print(f"| {label} | {target} | {mean:.1f} ± {std:.1f} ({len(xs)}) | " + " | ".join(cells) + " |")
    gains(scores, targets, labels, dseeds)


def gains(scores, targets, labels, dseeds):
    """Each method's gain over random init, and its share of the supervised run's gain, on
    the means of each data seed (paired by data seed: the same proxy)."""
    sup = next((l for l in SUPERVISED if any((l, t) in scores for t in targets)), None)
    methods = [l for l in labels if l != RANDOM and l not in SUPERVISED]
    if not methods or not any((RANDOM, t) in scores for t in targets):
        return
    print(
        f"\nGain over random init (points) and, with {sup or 'no supervised run'}, the share of "
        "its gain over random init, on each data seed's means; `all` is the mean over data seeds "
        "(the share: of the mean gains).\n"
    )
    head = "| label | target | | all | " + " | ".join(f"data {d}" for d in dseeds) + " |"
    print(head)
    print("|---" * (4 + len(dseeds)) + "|")
    dmean = lambda label, t, d: statistics.mean(scores[(label, t)][d].values())
    for target in targets:
        for label in methods:
            if (label, target) not in scores or (RANDOM, target) not in scores:
                continue
            common = [d for d in dseeds if d in scores[(label, target)] and d in scores[(RANDOM, target)]]
            gain = {d: dmean(label, target, d) - dmean(RANDOM, target, d) for d in common}
            row = [f"{gain[d]:+.1f}" if d in gain else "" for d in dseeds]
            print(f"| {label} | {target} | gain | {statistics.mean(gain.values()):+.1f} | " + " | ".join(row) + " |")
            if sup is None or (sup, target) not in scores:
                continue
            both = [d for d in common if d in scores[(sup, target)]]
            ceiling = {d: dmean(sup, target, d) - dmean(RANDOM, target, d) for d in both}
            share = {d: gain[d] / ceiling[d] for d in both if ceiling[d] > 0}
            total = sum(ceiling[d] for d in both)
            overall = f"{100 * sum(gain[d] for d in both) / total:.0f} %" if total > 0 else "n/a"
            row = [
                f"{100 * share[d]:.0f} %" if d in share else "n/a" if d in both else ""
                for d in dseeds
            ]
            print(f"| {label} | {target} | share | {overall} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
