"""Command line: ``xdiffsr demo`` (or ``python -m xdiffsr demo``)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xdiffsr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="super-resolve a held-out state offline and score it")
    demo.add_argument("--model", default="default", help="registry name or model file")
    demo.add_argument("--out", default="xdiffsr-demo", help="output folder")
    demo.add_argument("--members", type=int, default=4)
    demo.add_argument("--steps", type=int, default=12)
    demo.add_argument("--guidance", default="mmps", choices=["sda", "mmps", "none"])
    demo.add_argument("--cg-iters", type=int, default=2)
    demo.add_argument("--device", default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-figure", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(
            model=args.model,
            out=args.out,
            members=args.members,
            steps=args.steps,
            guidance=args.guidance,
            cg_iters=args.cg_iters,
            device=args.device,
            seed=args.seed,
            figure=not args.no_figure,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
