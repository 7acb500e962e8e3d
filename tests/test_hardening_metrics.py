"""Issue 24, class 8: a non-finite metric is an error where it is read, naming the run's file and the key,
never a number that prints as "n/a" (the not-applicable mark) or a crash in claims that names no run."""
from __future__ import annotations

import json

import pytest

from tensorar.errors import InputError
from tensorar.reporting import claims, tables


@pytest.fixture
def runs(tmp_path):
    good = tmp_path / "runs" / "llamagen-B" / "tensorar" / "seed0" / "metrics.json"
    bad = tmp_path / "runs" / "llamagen-B" / "tensorar" / "seed1" / "metrics.json"
    for path, fid in ((good, 12.5), (bad, float("nan"))):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"fid": fid, "fid_bootstrap": {"replicates": [fid, 1.0]},
                                    "scores": {"overall": fid}}))
    return [{"metrics": str(good), "seed": 0}, {"metrics": str(bad), "seed": 1}]


def test_tables_refuse_a_nan_metric_naming_the_run(runs):
    assert tables._metric_values({}, runs[0])["fid"] == 12.5
    with pytest.raises(InputError, match=r"seed1/metrics.json: non-finite metric values \(fid = nan"):
        tables._metric_values({}, runs[1])
    with pytest.raises(InputError, match=r"seed1/metrics.json.*scores.overall = nan"):
        tables._metric_values({"benchmark": "geneval"}, runs[1])


def test_claims_refuse_a_nan_metric_naming_the_run(runs):
    with pytest.raises(InputError, match=r"seed1/metrics.json"):
        claims.arm(runs, "fid")


def test_infinite_values_and_nested_replicates_are_caught(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text('{"scores": {"overall": 0.5}, "overall_bootstrap": {"replicates": [0.4, Infinity]}}')
    from tensorar.fileio import read_finite_json

    with pytest.raises(InputError, match=r"overall_bootstrap.replicates\[1\] = inf"):
        read_finite_json(path)
