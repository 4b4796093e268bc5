"""Parsing user-given quantization and clip modes."""

from __future__ import annotations

import pytest

from distiller.errors import ConfigError
from distiller.quantization.modes import (
    ClipMode,
    LinearQuantMode,
    ModuleQuantMode,
    is_restricted,
    is_signed,
    is_symmetric,
    verify_clip_mode,
    verify_quant_mode,
)

SYM, SYM_R = LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED
ASYM_U, ASYM_S = LinearQuantMode.ASYMMETRIC_UNSIGNED, LinearQuantMode.ASYMMETRIC_SIGNED


@pytest.mark.parametrize(
    "value, expected",
    [
        (SYM, SYM),
        ("SYMMETRIC", SYM),
        ("symmetric_restricted", SYM_R),
        ("Asymmetric_Unsigned", ASYM_U),
        ("sym", SYM),
        ("sym_restr", SYM_R),
        ("asym_u", ASYM_U),
        ("ASYM_S", ASYM_S),
    ],
)
def test_verify_quant_mode_single(value, expected):
    assert verify_quant_mode(value) == ModuleQuantMode(expected, expected)


def test_verify_quant_mode_mapping():
    assert verify_quant_mode({"activations": "asym_u", "weights": "SYMMETRIC"}) == ModuleQuantMode(ASYM_U, SYM)
    assert verify_quant_mode({"weights": "asym_s"}) == ModuleQuantMode(SYM, ASYM_S)
    assert verify_quant_mode(ModuleQuantMode(SYM_R, "asym_u")) == ModuleQuantMode(SYM_R, ASYM_U)


def test_verify_quant_mode_errors_list_choices():
    with pytest.raises(ConfigError, match=r"'symmetrik'.*sym, sym_restr, asym_u, asym_s"):
        verify_quant_mode("symmetrik")
    with pytest.raises(ConfigError, match="quantization mode 3"):
        verify_quant_mode(3)
    with pytest.raises(ConfigError, match=r"\['wts'\].*'activations'"):
        verify_quant_mode({"wts": "sym"})


@pytest.mark.parametrize(
    "value, expected",
    [
        (ClipMode.AVG, ClipMode.AVG),
        ("none", ClipMode.NONE),
        ("avg", ClipMode.AVG),
        ("N_STD", ClipMode.N_STD),
        ("gauss", ClipMode.GAUSS),
        ("Laplace", ClipMode.LAPLACE),
    ],
)
def test_verify_clip_mode(value, expected):
    assert verify_clip_mode(value) is expected


def test_verify_clip_mode_error_lists_choices():
    with pytest.raises(ConfigError, match=r"'gaussian'.*NONE, AVG, N_STD, GAUSS, LAPLACE"):
        verify_clip_mode("gaussian")


def test_mode_predicates():
    assert [is_symmetric(m) for m in (SYM, SYM_R, ASYM_U, ASYM_S)] == [True, True, False, False]
    assert [is_signed(m) for m in (SYM, SYM_R, ASYM_U, ASYM_S)] == [True, True, False, True]
    assert [is_restricted(m) for m in (SYM, SYM_R, ASYM_U, ASYM_S)] == [False, True, False, False]
