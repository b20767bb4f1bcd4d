"""Verdict words by rules fixed before the numbers (memdiff.claims, docs/THEORY.md §7.6), from synthetic
paired differences: each part's outcome, each of the four verdicts, and the claims.md rows built from them."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from memdiff.claims import (CLAIMS, CONTRADICTED, HOLDS, NOISE, NOT_SHOWN, OPPOSITE, PARTLY, REPRODUCED, Claim, Judged, Part,
                            claims_markdown, comparisons, equivalence_margin, judge_part, verdict)

LOWER, EQUAL = Part("copy_share", "lower"), Part("fd", "equal")
BELOW = [-0.11, -0.10, -0.09]  # 95% interval wholly below 0
ABOVE = [0.09, 0.10, 0.11]
AROUND = [-0.2, 0.0, 0.2]  # interval across 0: within noise
BASE = 10.0  # baseline mean: the default margin is +-1
INSIDE = [0.1, -0.1, 0.0, 0.05]  # 90% interval inside +-1
BEYOND = [3.0, 3.2, 2.9]  # 95% interval wholly above +1
NOISY = [-3.0, 3.0, 1.0]  # neither


@pytest.mark.parametrize("diffs, lower, higher", [(BELOW, HOLDS, OPPOSITE), (ABOVE, OPPOSITE, HOLDS),
                                                   (AROUND, NOISE, NOISE), ([-1.0, math.nan], NOISE, NOISE)])
def test_a_directional_part_by_its_95_percent_interval(diffs, lower, higher):
    assert judge_part(LOWER, diffs, BASE).outcome == lower
    assert judge_part(Part("copy_share", "higher"), diffs, BASE).outcome == higher


@pytest.mark.parametrize("diffs, outcome", [(INSIDE, HOLDS), (BEYOND, OPPOSITE), ([-d for d in BEYOND], OPPOSITE),
                                            (NOISY, NOISE), ([0.1], NOISE)])
def test_an_equal_part_by_tost_within_the_margin(diffs, outcome):
    judged = judge_part(EQUAL, diffs, BASE)
    assert judged.outcome == outcome
    if outcome != NOISE or len(diffs) > 1:
        assert "±1 (10% of 10)" in judged.evidence


def test_the_margin_is_a_fraction_of_the_baseline_mean():
    assert judge_part(EQUAL, [0.5, 1.3, 0.9], BASE).outcome == NOISE  # 90% interval reaches past +-1
    assert judge_part(EQUAL, [0.5, 1.3, 0.9], BASE, margin=0.2).outcome == HOLDS  # +-2
    assert judge_part(EQUAL, INSIDE, 0.0).outcome == NOISE  # no margin around a zero baseline
    with pytest.raises(ValueError, match="margin"):
        judge_part(EQUAL, INSIDE, BASE, margin=0.0)


def judged(*outcomes_and_sides) -> list[Judged]:
    return [Judged(Part("m", side), outcome, "numbers") for outcome, side in outcomes_and_sides]


@pytest.mark.parametrize("parts, word", [
    ([(HOLDS, "lower"), (HOLDS, "equal")], REPRODUCED),
    ([(OPPOSITE, "lower"), (HOLDS, "equal")], CONTRADICTED),  # the core's opposite wins over a holding part
    ([(OPPOSITE, "lower"), (OPPOSITE, "equal")], CONTRADICTED),
    ([(HOLDS, "lower"), (OPPOSITE, "equal")], PARTLY),
    ([(HOLDS, "lower"), (NOISE, "lower")], PARTLY),
    ([(NOISE, "lower"), (HOLDS, "lower")], PARTLY),  # a non-core directional part holds
    ([(NOISE, "lower"), (HOLDS, "equal")], NOT_SHOWN),  # equal quality alone: the baseline has it too
    ([(NOISE, "lower"), (OPPOSITE, "equal")], NOT_SHOWN),
    ([(NOISE, "lower")], NOT_SHOWN),
])
def test_verdict_rules(parts, word):
    assert verdict(judged(*parts))[0] == word


def test_the_four_verdicts_from_synthetic_differences():
    """C2 in each of its four outcomes: lower copy share (core) at equal FD."""
    def c2(copy, fd):
        return verdict([judge_part(LOWER, copy, 0.2), judge_part(EQUAL, fd, BASE)])

    assert c2(BELOW, INSIDE)[0] == REPRODUCED
    assert c2(ABOVE, INSIDE)[0] == CONTRADICTED
    assert c2(AROUND, NOISY)[0] == NOT_SHOWN
    word, sentence = c2(BELOW, BEYOND)
    assert word == PARTLY  # the sentence names the part that holds and the one that does not
    assert sentence.startswith("lower copy share: holds (Δ -0.1, 95% CI [")
    assert "equal FD: opposite holds (Δ +3.03, 95% CI [" in sentence and "TOST p = " in sentence


def test_rules_reject_ill_formed_claims():
    with pytest.raises(ValueError, match="side"):
        Part("fd", "better")
    with pytest.raises(ValueError, match="parts"):
        Claim("C9", "equal quality at lower copies", (EQUAL, LOWER))
    with pytest.raises(ValueError, match="judged"):
        verdict(judged((HOLDS, "equal"), (HOLDS, "lower")))
    assert verdict(judged((HOLDS, "equal")))[0] == REPRODUCED  # one equal part alone (C6) is a claim
    assert verdict(judged((OPPOSITE, "equal")))[0] == CONTRADICTED
    with pytest.raises(ValueError, match="judged"):
        verdict([])


def test_equivalence_margin_from_the_grid_config():
    assert equivalence_margin(None) == equivalence_margin({"eval": {}}) == 0.10
    assert equivalence_margin({"eval": {"equivalence_margin": 0.05}}) == 0.05
    for bad in (0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="eval.equivalence_margin"):
            equivalence_margin({"eval": {"equivalence_margin": bad}})


# --- claims.md -------------------------------------------------------------------------------------------
def grid_frame(copy: dict[str, float], fd: dict[str, float]) -> pd.DataFrame:
    """Three seeds per method; per-seed noise shared by all methods, so paired differences are exact."""
    rows = []
    for seed, wobble in enumerate((-0.01, 0.0, 0.012)):
        for m, share in copy.items():
            rows.append({"dataset": "mnist1d", "n": 100, "method": m, "seed": seed, "copy_share": share + wobble,
                         "nn_distance": 1.0, "fd": fd.get(m, 30.0) + 10 * wobble + 0.01 * seed * (m != "edm"),
                         "wasserstein": 0.5 + wobble, "js": 0.1, "copy_onset": 0.5, "sigma_c": 0.7})
    return pd.DataFrame(rows)


def test_comparisons_per_claim():
    methods = {"edm", "ddpm", "ambient_1.0", "ci_ddpm_low_0.4", "ci_ddpm_low_0.8", "ci_ddpm_high_0.6",
               "ci_edm_low", "ambient_1.0_ci_edm_low"}
    pairs = comparisons(methods)
    assert pairs["C2"] == [("ambient_1.0", "edm")]
    assert pairs["C4"] == [("ci_ddpm_low_0.4", "ci_ddpm_low_0.8")]  # one width of high: nothing to compare
    assert set(pairs["C5"]) == {("ci_ddpm_low_0.4", "ddpm"), ("ci_ddpm_low_0.8", "ddpm"),
                                ("ci_ddpm_high_0.6", "ddpm"), ("ci_edm_low", "edm")}
    assert pairs["C7"] == [("ambient_1.0_ci_edm_low", "ambient_1.0"), ("ambient_1.0_ci_edm_low", "ci_edm_low")]
    assert comparisons({"ambient_1.0", "ci_ddpm_low_0.4"})["C2"] == []  # no edm baseline
    on_images = comparisons(methods, images=True)  # Shah et al.'s headline: the same pairs, judged as C3
    assert "C2" not in on_images and on_images["C3"] == [("ambient_1.0", "edm")]
    assert {k: v for k, v in on_images.items() if k != "C3"} == {k: v for k, v in pairs.items() if k != "C2"}


def test_claims_markdown_rows_carry_verdicts_and_the_low_noise_reading_heads_the_ci_claims():
    copy = {"edm": 0.2, "ddpm": 0.2, "ambient_1.0": 0.1, "ci_ddpm_low_0.6": 0.4, "ci_ddpm_high_0.6": 0.05}
    text = claims_markdown(grid_frame(copy, {"ambient_1.0": 30.1}), {})
    assert "| mnist1d | 100 | ambient_1.0 - edm | 3 | **reproduced** | lower copy share: holds" in text
    assert "| mnist1d | 100 | ci_ddpm_low_0.6 - ddpm | 3 | **contradicted** |" in text
    assert "| mnist1d | 100 | ci_ddpm_high_0.6 - ddpm | 3 | **partly** |" in text  # less copying, FD unchanged
    c5 = text[text.index("## C5"):text.index("## C6")]
    headline, other = c5.index("### Headline: \"later denoising steps\" read literally"), c5.index("### The other reading")
    assert headline < c5.index("ci_ddpm_low_0.6 - ddpm") < other < c5.index("ci_ddpm_high_0.6 - ddpm")
    assert "ci_ddpm_high" not in c5[:other] and "ci_ddpm_low" not in c5[other:]  # never substituted
    assert "| mnist1d | 100 | ambient_1.0 - edm | 3 | -0.1 ± " in text  # the paired table is still there


def test_the_margin_of_the_grid_config_reaches_claims_md(tmp_path):
    from memdiff.figs_sim import make_all
    from sims.artifacts import atomic_write_json

    df = grid_frame({"edm": 0.2, "ambient_1.0": 0.1}, {"ambient_1.0": 31.5})  # FD +1.5 on 30: beyond 5%, inside 10%
    ratio = [0.1, 0.55, 1.0]
    for r in df.to_dict("records"):
        cell = {k: r[k] for k in ("dataset", "n", "method", "seed")}
        readout = {"sigma": [0.1, 1.0, 10.0], **{k: ratio for k in ("ratio", "necessity", "net_train", "net_test",
                                                                     "emp_train", "emp_test", "gen_train", "gen_test")}}
        metrics = {k: r[k] for k in ("copy_share", "nn_distance", "fd", "wasserstein", "js")}
        atomic_write_json(tmp_path / "runs" / "cells" / f"mnist1d-n100-{r['method']}-s{r['seed']}.json",
                          {"cell": cell, "family": "standard", "metrics": metrics, "readout": readout, "sigma_c": 0.7})
    line = "| mnist1d | 100 | ambient_1.0 - edm | 3 | **{}** |"
    for margin, word in ((None, REPRODUCED), (0.05, PARTLY)):
        grid = {"config": {"eval": {} if margin is None else {"equivalence_margin": margin}}, "cells": []}
        (tmp_path / "runs" / "grid.json").write_text(json.dumps(grid))
        make_all(tmp_path / "runs", tmp_path / "figs")
        assert line.format(word) in (tmp_path / "figs" / "claims.md").read_text()


def test_judge_part_drops_non_finite_differences():
    a = judge_part(LOWER, np.array(BELOW + [math.nan]), BASE)
    assert a == judge_part(LOWER, BELOW, BASE)


# --- C1 and C6: per-seed readout values of the baseline cells ------------------------------------------------
def readout_cell(seed: int, gap_low: float, r_low: float, onset: float, sigma_c: float = 1.0,
                 identity_below: float = 0.0) -> dict:
    """A baseline cell whose readout copies (``G = gap_low``, ``r = r_low``) up to ``onset`` and generalizes above
    (``G = 1``, ``r = 1``); the readout levels are dense, so ``copy_onset`` lands within a level of ``onset``.
    ``identity_below``: ``r = 1`` below it (every denoiser near the identity), so ``copy_onset`` is NaN."""
    sigma = np.geomspace(0.01, 10.0, 61)
    below = sigma < onset
    ratio = np.where(sigma < identity_below, 1.0, np.where(below, r_low, 1.0))
    return {"cell": {"dataset": "gmm", "n": 100, "method": "edm", "seed": seed}, "sigma_c": sigma_c,
            "two_net": None,
            "readout": {"sigma": sigma.tolist(), "ratio": ratio.tolist(),
                        "heldout_ratio": np.where(below, gap_low, 1.0).tolist(),
                        "necessity": np.where(sigma < sigma_c, 1.0, 0.0).tolist()}}


@pytest.mark.parametrize("onsets, c1_word, c6_word", [
    ((0.9, 1.0, 1.1, 1.2, 0.95), REPRODUCED, REPRODUCED),          # copies below ~sigma_C, G >> 1 there
    ((5.0, 6.0, 5.5, 6.5, 7.0), REPRODUCED, CONTRADICTED),         # onset 5-7 sigma_C: beyond a factor of 2
    ((0.3, 1.8, 0.6, 1.5, 0.4), REPRODUCED, NOT_SHOWN),            # too scattered to place within a factor 2
])
def test_c1_and_c6_verdicts_from_synthetic_readouts(onsets, c1_word, c6_word):
    from memdiff.claims import readout_bands, readout_verdicts
    raw = {f"c{s}": readout_cell(s, gap_low=20.0 + s, r_low=0.1, onset=o) for s, o in enumerate(onsets)}
    bands = readout_bands(raw)
    assert f"**{c1_word}**" in readout_verdicts(bands, CLAIMS["C1"])
    assert f"**{c6_word}**" in readout_verdicts(bands, CLAIMS["C6"])


def test_c1_is_not_shown_for_a_net_that_never_copies():
    from memdiff.claims import readout_bands, readout_verdicts
    raw = {f"c{s}": readout_cell(s, gap_low=1.0 + 0.01 * (s - 2), r_low=1.0 + 0.01 * (s - 2), onset=0.5)
           for s in range(5)}  # G ~ 1 and r ~ 1 in both bands: no contrast
    text = readout_verdicts(readout_bands(raw), CLAIMS["C1"])
    assert "**not shown**" in text and "within noise" in text


def test_verdict_summary_counts_each_rows_word_and_puts_the_headline_reading_first():
    from memdiff.claims import verdict_summary
    copy = {"edm": 0.2, "ddpm": 0.2, "ambient_1.0": 0.1, "ci_ddpm_low_0.6": 0.4, "ci_ddpm_high_0.6": 0.05}
    text = verdict_summary(grid_frame(copy, {"ambient_1.0": 30.1}), {})
    c2 = next(line for line in text.splitlines() if line.startswith("| C2"))
    assert "| 1 | **1**: mnist1d 100 ambient_1.0 - edm | **0** | **0** | **0** |" in c2
    c5 = [line for line in text.splitlines() if line.startswith("| C5")]
    assert "low noise (headline)" in c5[0] and "**1**: mnist1d 100 ci_ddpm_low_0.6 - ddpm" in c5[0]
    assert "high noise" in c5[1] and "| **1**: mnist1d 100 ci_ddpm_high_0.6 - ddpm |" in c5[1]  # partly


# --- the C1 and C6 rule options of the grid config (§7.7) ---------------------------------------------------
def test_readout_rules_from_the_grid_config():
    from memdiff.claims import ReadoutRules, readout_rules
    assert readout_rules(None) == readout_rules({"eval": {}}) == ReadoutRules("onset", None)
    assert readout_rules({"eval": {"c6_onset": "band_top", "c1_min_gap": 1.5}}) == ReadoutRules("band_top", 1.5)
    for key, bad in (("c6_onset", "other"), ("c1_min_gap", 0.5), ("c1_min_gap", 1), ("c1_min_gap", True),
                     ("c1_min_gap", math.inf)):
        with pytest.raises(ValueError, match=f"eval.{key}"):
            readout_rules({"eval": {key: bad}})


@pytest.mark.parametrize("key, bad", [("c6_onset", "other"), ("c1_min_gap", 0.5), ("c1_min_gap", "1.5")])
def test_check_config_rejects_a_bad_rule_option_naming_the_key(key, bad):
    from sims.grid import check_config
    config = {"run": {"seeds": [0]}, "train": {}, "eval": {"readout_sigmas": [1.0], "c6_onset": "band_top",
                                                            "c1_min_gap": 1.5},
              "datasets": [{"name": "a", "kind": "gmm", "n": [10], "source": 40, "test": 20, "pool": 50}],
              "methods": [{"name": "edm", "loss": "edm"}]}
    check_config(config, "grid.toml")  # both options as pre-registered in configs/sim_fitted.toml
    config["eval"][key] = bad
    with pytest.raises(ValueError, match=rf"grid\.toml: eval\.{key} must be"):
        check_config(config, "grid.toml")


def test_c6_on_band_top_places_a_net_whose_onset_is_undefined():
    """r ~ 1 at the lowest levels (near the identity), <= 1/2 from there up to ~sigma_C: no ``copy_onset`` (NaN,
    the default rule: not shown), ``band_top`` within a factor of 2 of sigma_C (``band_top``: reproduced)."""
    from memdiff.claims import ReadoutRules, readout_bands, readout_verdicts
    raw = {f"c{s}": readout_cell(s, gap_low=20.0, r_low=0.1, onset=o, identity_below=0.02)
           for s, o in enumerate((0.9, 1.0, 1.1, 1.2, 0.95))}
    bands = readout_bands(raw)
    assert bands.onset_over_sigma_c.isna().all() and bands.band_top.between(0.8, 1.3).all()
    default = readout_verdicts(bands, CLAIMS["C6"])
    assert "**not shown**" in default and "log(copy_onset / sigma_C)" in default
    text = readout_verdicts(bands, CLAIMS["C6"], ReadoutRules(c6_onset="band_top"))
    assert "**reproduced**" in text and "equal log(band_top / sigma_C): holds" in text
    md = claims_markdown(grid_frame({"edm": 0.2}, {}), raw, rules=ReadoutRules(c6_onset="band_top"))
    c6 = md[md.index("## C6"):md.index("## C7")]
    assert "C6 quantity (eval.c6_onset): band_top" in c6 and "| gmm | 100 | edm | 5 | **reproduced** |" in c6
    assert "C6 quantity (eval.c6_onset): onset" in claims_markdown(grid_frame({"edm": 0.2}, {}), raw)


def test_c1_min_gap_makes_a_significant_but_small_gap_partly():
    from memdiff.claims import ReadoutRules, readout_bands, readout_verdicts
    raw = {f"c{s}": readout_cell(s, gap_low=1.08 + 0.002 * (s - 2), r_low=0.1, onset=1.0) for s in range(5)}
    bands = readout_bands(raw)  # G_low ~1.08 against G_high = 1: a significant contrast of a net that barely copies
    assert "**reproduced**" in readout_verdicts(bands, CLAIMS["C1"])
    text = readout_verdicts(bands, CLAIMS["C1"], ReadoutRules(c1_min_gap=1.5))
    assert "**partly**" in text and "G_low = 1.08 < 1.5 (eval.c1_min_gap)" in text
    big = readout_bands({f"c{s}": readout_cell(s, gap_low=20.0 + s, r_low=0.1, onset=1.0) for s in range(5)})
    text = readout_verdicts(big, CLAIMS["C1"], ReadoutRules(c1_min_gap=1.5))
    assert "**reproduced**" in text and "G_low = 22 >= 1.5" in text


def test_the_rule_options_of_the_grid_config_reach_claims_md(tmp_path):
    """The options as pre-registered in configs/sim_fitted.toml, read by ``memdiff figs sim`` from grid.json: C6 on
    band_top reproduced where the default gives not shown, C1 partly for G_low ~1.08 (the defaults: above)."""
    from memdiff.figs_sim import make_all
    from sims.artifacts import atomic_write_json

    for r in grid_frame({"edm": 0.2}, {}).to_dict("records"):
        cell = readout_cell(r["seed"], gap_low=1.08 + 0.002 * r["seed"], r_low=0.1, onset=1.0, identity_below=0.02)
        cell["cell"]["dataset"] = "mnist1d"
        cell["readout"].update({k: cell["readout"]["ratio"] for k in ("net_train", "net_test", "emp_train",
                                                                     "emp_test", "gen_train", "gen_test")})
        cell.update(family="standard", metrics={k: r[k] for k in ("copy_share", "nn_distance", "fd", "wasserstein", "js")})
        atomic_write_json(tmp_path / "runs" / "cells" / f"mnist1d-n100-edm-s{r['seed']}.json", cell)
    grid = {"config": {"eval": {"c6_onset": "band_top", "c1_min_gap": 1.5}}, "cells": []}
    (tmp_path / "runs" / "grid.json").write_text(json.dumps(grid))
    make_all(tmp_path / "runs", tmp_path / "figs")
    text = (tmp_path / "figs" / "claims.md").read_text()
    c1, c6 = text[text.index("## C1"):text.index("## C2")], text[text.index("## C6"):text.index("## C7")]
    assert "| mnist1d | 100 | edm | 3 | **partly** |" in c1 and "eval.c1_min_gap): seed-mean G_low >= 1.5" in c1
    assert "| mnist1d | 100 | edm | 3 | **reproduced** |" in c6 and "C6 quantity (eval.c6_onset): band_top" in c6
    summary = (tmp_path / "figs" / "verdicts.md").read_text().splitlines()
    assert "| 1 | **0** | **1**: mnist1d 100 edm |" in next(line for line in summary if line.startswith("| C1"))
    assert "| 1 | **1**: mnist1d 100 edm | **0** |" in next(line for line in summary if line.startswith("| C6"))
