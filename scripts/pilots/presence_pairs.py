"""How often CVRL's two clips disagree on the class on a `--presence` proxy.

A Monte Carlo of the pair sampler (`trainer/src/sampler.rs`: gap by inverse CDF over
`[0, M)`, `M = frames - span`, first start uniform in `[0, M - gap)`) on the `easy`
preset's videos (3-6 s at 25 fps) with the object on screen for one stretch of a fraction
`presence` of each video at a random place (`tools/src/synth/scene.rs`). A clip counts as
showing the object when its middle frame is inside the stretch. Prints, per interval
distribution, the share of positive pairs where exactly one clip shows the object (a
false positive for the class) and where both do. EXPERIMENTS.md ("Experiment 2 when the
object leaves the screen") quotes it.

    python3 scripts/pilots/presence_pairs.py --presence 0.75 0.5
"""

import argparse
import math
import random

INVERSE_CDF = {
    "decreasing": lambda u: 1 - math.sqrt(1 - u),
    "uniform": lambda u: u,
    "increasing": math.sqrt,
}


def shares(presence, inverse_cdf, rng, pairs, frames=8, stride=2, fps=25.0):
    span = (frames - 1) * stride + 1
    one = both = 0
    for _ in range(pairs):
        length = rng.randint(int(3 * fps), int(6 * fps))
        max_offset = length - span
        gap = min(int(inverse_cdf(rng.random()) * max_offset), max_offset - 1)
        first = rng.randrange(0, max_offset - gap)
        shown = length * presence
        enter = rng.uniform(0, length - shown)
        on = [enter <= start + span // 2 < enter + shown for start in (first, first + gap)]
        one += on[0] != on[1]
        both += on[0] and on[1]
    return one / pairs, both / pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presence", type=float, nargs="+", default=[0.75, 0.5])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print("presence  distribution  one clip shows the object  both do")
    for presence in args.presence:
        for name, inverse_cdf in INVERSE_CDF.items():
            one, both = shares(presence, inverse_cdf, rng, args.pairs)
            print(f"{presence:8}  {name:12}  {one:25.2f}  {both:7.2f}")


if __name__ == "__main__":
    main()
