"""Argument types of the command line: each parses one option's text or says, in one line, why not."""

from __future__ import annotations

import argparse


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def non_negative_float(text: str) -> float:
    value = number(text)
    if not 0 <= value < float("inf"):
        msg = f"must be finite and >= 0: {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def fraction(text: str) -> float:
    value = number(text)
    if not 0 < value <= 1:
        msg = f"must be in (0, 1]: {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def positive_float(text: str) -> float:
    value = number(text)
    if not value > 0:
        msg = f"must be positive: {text}"
        raise argparse.ArgumentTypeError(msg)
    return value
