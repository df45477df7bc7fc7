"""`nasframe inspect` reports the published parameter counts to the digit (ref. D1, D2, M6, P1, P2)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    "argv, name, params, macs",
    [
        (
            [
                "--space",
                "darts",
                "--arch",
                "DARTS_V2",
                "--set",
                "space.C=36",
                "--set",
                "space.layers=20",
                "--set",
                "space.auxiliary=true",
            ],
            "DARTS_V2",
            3_349_342,
            None,
        ),
        (
            [
                "--space",
                "darts",
                "--arch",
                "MDENAS",
                "--set",
                "space.C=36",
                "--set",
                "space.layers=20",
                "--set",
                "space.auxiliary=true",
            ],
            "MDENAS",
            3_783_286,
            None,
        ),
        (
            [
                "--space",
                "darts",
                "--arch",
                "DARTS_V2",
                "--data",
                "imagenet",
                "--set",
                "space.C=48",
                "--set",
                "space.layers=14",
            ],
            "DARTS_V2",
            4_718_752,
            529.9e6,
        ),
        (["--space", "mobilenet", "--arch", "proxyless_gpu"], "proxyless_gpu", 7_119_848, 465.3e6),
        (["--space", "mobilenet", "--arch", "proxyless_cpu"], "proxyless_cpu", 4_361_648, 439.2e6),
        (["--space", "mobilenet", "--arch", "mobilenetv2"], "mobilenetv2", 3_504_872, 300.77e6),
    ],
)
def test_inspect_published_counts(cli, argv, name, params, macs):
    code, out, err = cli("inspect", *argv, "--json", *([] if macs else ["--no-macs"]))
    assert code == 0, err
    info = json.loads(out)
    assert info["name"] == name
    assert info["params"] == params
    if macs:
        assert info["macs"] == pytest.approx(macs, rel=1e-3)


def test_inspect_plot_writes_a_png(cli, tmp_path):
    code, out, err = cli(
        "inspect", "--space", "darts", "--arch", "MDENAS", "--plot", tmp_path / "cell.png", "--no-macs"
    )
    assert code == 0, err
    assert (tmp_path / "cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
