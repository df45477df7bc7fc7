"""Published architecture names as the papers spell them: every one resolves, case and separators
ignored, in every space; `inspect` and `list` show every name; a typo gets the nearest name."""

from __future__ import annotations

import pytest

from nasframe.common.errors import InvalidArchitecture
from nasframe.common.options import build_options
from nasframe.core.arch_names import NameIndex, name_key
from nasframe.core.registry import spaces

#: (space, spelling as published, the space's name). Sources: DARTS (Liu et al., ICLR 2019) Table 1
#: "DARTS (first order)" / "(second order)"; NAS-Bench-201 (Dong and Yang, ICLR 2020) tables "DARTS-V1",
#: "DARTS-V2", "ResNet"; MdeNAS (Zheng et al., ICCV 2019) Table 3 "MdeNAS (GPU)", "MdeNAS (CPU)",
#: "Proxyless (GPU)", "MobileNetV2"; ProxylessNAS' models "ProxylessNAS-GPU", "ProxylessNAS-CPU"; ABS' code
#: (megvii-model/AngleNAS) "DARTS_ABS", "PDARTS_ABS", "SPOS_ABS", "ProxylessNAS_ABS", "FairNAS_ABS";
#: GM-NAS (Hu et al., ICLR 2022) "GM-NAS"; SPOS (Guo et al., ECCV 2020) "SPOS"; NSE's "NSENet",
#: "NSENet-27", "NSENet-GPU"; NEAS (Chen et al., CVPR 2021) "NEAS-S", "NEAS-M", "NEAS-L".
PUBLISHED = [
    ("darts", "DARTS (first order)", "DARTS_V1"),
    ("darts", "DARTS (second order)", "DARTS_V2"),
    ("darts", "DARTS-V1", "DARTS_V1"),
    ("darts", "DARTS-V2", "DARTS_V2"),
    ("darts", "DARTS", "DARTS"),
    ("darts", "MdeNAS", "MDENAS"),
    ("darts", "DARTS_ABS", "DARTS_ABS"),
    ("darts", "PDARTS_ABS", "PDARTS_ABS"),
    ("darts", "GM-NAS", "GM_NAS"),
    ("mobilenet", "MobileNetV2", "mobilenetv2"),
    ("mobilenet", "ProxylessNAS-GPU", "proxyless_gpu"),
    ("mobilenet", "ProxylessNAS-CPU", "proxyless_cpu"),
    ("mobilenet", "Proxyless (GPU)", "proxyless_gpu"),
    ("mobilenet", "MdeNAS (GPU)", "mdenas_gpu"),
    ("mobilenet", "MdeNAS (CPU)", "mdenas_cpu"),
    ("mobilenet", "SPOS_ABS", "spos_abs"),
    ("mobilenet", "ProxylessNAS_ABS", "proxyless_abs"),
    ("mobilenet", "FairNAS_ABS", "fairnas_abs"),
    ("nb201", "ResNet", "resnet"),
    ("shufflenet", "SPOS", "SPOS"),
    ("nse", "NSENet", "NSENet"),
    ("nse", "NSENet-27", "NSENet-27"),
    ("nse", "NSENet-GPU", "NSENet-GPU"),
    ("neas", "NEAS-S", "neas_s"),
    ("neas", "NEAS-M", "neas_m"),
    ("neas", "NEAS-L", "neas_l"),
]
SPACES = ["darts", "mobilenet", "nb201", "shufflenet", "nse", "neas"]


def space_for(space_name: str, text: str):
    """The space as `inspect --arch TEXT` builds it: with the options the named architecture needs."""
    cls = spaces.get(space_name)
    name = cls.published_name(text)
    assert name is not None, text
    return cls(build_options(cls.Options, cls.options_for_arch(name) or {}, "space"))


def variants(text: str) -> list[str]:
    return [text, text.upper(), text.lower(), text.replace("-", "_"), text.replace("_", "-"), f" {text} "]


@pytest.mark.parametrize("space_name, spelling, name", PUBLISHED)
def test_every_published_spelling_names_its_architecture(space_name, spelling, name):
    space = space_for(space_name, spelling)
    expected = space.named_architectures()[name]
    for text in variants(spelling):
        assert space.parse_arch(text) == expected, text


@pytest.mark.parametrize("space_name", SPACES)
def test_every_name_of_a_space_is_published_and_resolves_in_any_case(space_name):
    cls = spaces.get(space_name)
    names = cls.published_names()
    assert names and {n for s, _, n in PUBLISHED if s == space_name} == set(names)
    for name in names:
        space = space_for(space_name, name)
        assert name in space.named_architectures()
        for text in variants(name):
            assert cls.published_name(text) == name, text


def test_the_index_ignores_case_and_separators_refuses_ambiguity_and_skips_non_names():
    index = NameIndex({"neas_s": (), "proxyless_gpu": ("ProxylessNAS-GPU",), "odd/name": ()})
    assert name_key("NEAS-S") == name_key("neas_s") == name_key("Neas S") == "neass"
    assert index.resolve("NEAS-S") == index.resolve("neas.s") == "neas_s"
    assert index.resolve("proxylessnas_gpu") == index.resolve("Proxyless (GPU)") == "proxyless_gpu"
    assert index.resolve("odd/name") == "odd/name"  # a name as given always resolves
    assert index.resolve('{"neas_s": 1}') is None and index.resolve("neas_m") is None
    assert index.nearest("neas_x") == "neas_s" and index.nearest("[1, 2, 3]") is None
    with pytest.raises(ValueError, match="'a_b' and 'ab' are both spelled 'ab'"):
        NameIndex({"a_b": (), "ab": ()})


def test_inspect_lists_every_name_and_which_need_other_options(cli):
    code, out, _ = cli("inspect", "--space", "nse")
    assert code == 0
    assert "named architectures: NSENet, NSENet-27, NSENet-GPU" in out
    assert "on other space options, which --arch NAME sets: NSENet, NSENet-27, NSENet-GPU" in out
    code, out, _ = cli("inspect", "--space", "mobilenet")
    assert "proxyless_gpu (ProxylessNAS-GPU)" in out and "(none)" not in out
    for space_name in SPACES:
        code, out, _ = cli("inspect", "--space", space_name)
        listed = next(line for line in out.splitlines() if line.startswith("named architectures:"))
        assert all(name in listed for name in spaces.get(space_name).published_names()), space_name


def test_list_shows_the_names_under_each_space(cli):
    code, out, _ = cli("list", "spaces")
    assert code == 0
    lines = out.splitlines()
    for space_name in SPACES:
        header = next(i for i, line in enumerate(lines) if line.startswith(f"  {space_name}: "))
        listed = lines[header + 1]
        assert listed.startswith("      named architectures: "), space_name
        assert all(name in listed for name in spaces.get(space_name).published_names()), space_name
    assert "DARTS_V2 (DARTS (second order))" in out and "proxyless_gpu (ProxylessNAS-GPU)" in out


@pytest.mark.parametrize(
    "space_name, typo, suggestion",
    [
        ("neas", "NEAS-XS", "neas_s"),
        ("darts", "DART_V2", "DARTS_V2"),
        ("darts", "MDNAS", "MDENAS"),
        ("mobilenet", "proxyles-gpu", "proxyless_gpu"),
        ("nse", "NSENet-28", "NSENet-27"),
        ("shufflenet", "SPSO", "SPOS"),
        ("nb201", "resnte", "resnet"),
    ],
)
def test_a_typo_is_refused_with_the_nearest_name(cli, space_name, typo, suggestion):
    code, _, err = cli("inspect", "--space", space_name, "--arch", typo)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"did you mean {suggestion!r}?" in err and "((none))" not in err


def test_a_name_on_other_options_says_which_and_a_space_without_names_asks_for_a_mapping():
    cls = spaces.get("nse")
    with pytest.raises(InvalidArchitecture, match=r"'NSENet-GPU' is defined on another layout; add --set space\."):
        cls().parse_arch("nsenet_gpu")
    from nasframe.testing import ToySpace

    with pytest.raises(InvalidArchitecture, match=r"give a JSON mapping$"):
        ToySpace().parse_arch("nothing")
