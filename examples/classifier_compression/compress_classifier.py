#!/usr/bin/env python3
"""Distiller's image-classifier compression app, as in the original repository.

Same flags and behaviour as ``distiller classify`` (it runs the same code):

    python examples/classifier_compression/compress_classifier.py -a simplenet_digits --epochs 10 --lr 0.1
"""

import sys

from distiller.cli.classify import run
from distiller.cli.classify_parser import build_classify_parser
from distiller.cli.main import run_guarded


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_classify_parser(prog="compress_classifier.py").parse_args(argv)
    return run_guarded(run, args, ["compress_classifier.py", *argv], debug=False)


if __name__ == "__main__":
    sys.exit(main())
