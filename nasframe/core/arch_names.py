"""Names of published architectures, as people write them.

Papers, their code and their readers spell the same architecture differently: `NEAS-S` and
`neas_s`, `DARTS-V2` and `DARTS_V2`, `MdeNAS (GPU)` and `mdenas_gpu`. Every space resolves names
through `NameIndex`, so any spelling that differs only in case and separators (anything but
letters and digits) names the same architecture, other spellings a space lists (`ProxylessNAS-GPU`
for `proxyless_gpu`) name it too, and a typo gets the nearest name as a suggestion.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
#: text that can be meant as a name (a word with separators), not a mapping, list or cell string
_NAME_LIKE = re.compile(r"^[A-Za-z0-9][\w\-.+() ]{0,63}$")


def name_key(text: str) -> str:
    """`text` with case and every character but letters and digits dropped: the form names are compared in."""
    return _NOT_ALNUM.sub("", text.casefold())


class NameIndex:
    """Resolves spellings of a space's architecture names.

    `names` maps each name (as `named_architectures` keys it) to its other spellings. Two names
    whose spellings share a key would make a spelling ambiguous; that is refused when built.
    """

    def __init__(self, names: Mapping[str, Iterable[str]]):
        self._by_key: dict[str, str] = {}
        self._exact: dict[str, str] = {}
        for name, others in names.items():
            for spelling in (name, *others):
                self._exact[spelling] = name
                key = name_key(spelling)
                held = self._by_key.setdefault(key, name)
                if held != name:
                    raise ValueError(f"architecture names {held!r} and {name!r} are both spelled {spelling!r}")

    def resolve(self, text: str) -> str | None:
        """The name `text` spells, or None (also for text that is no word, such as a mapping or a list)."""
        text = text.strip()
        if text in self._exact:  # any name as given, also one of other characters
            return self._exact[text]
        if not _NAME_LIKE.match(text):
            return None
        return self._by_key.get(name_key(text))

    def nearest(self, text: str) -> str | None:
        """The name whose spelling is closest to `text` (difflib, ratio at least 0.6), when `text` looks like
        a name at all; None otherwise."""
        if not _NAME_LIKE.match(text.strip()):
            return None
        found = difflib.get_close_matches(name_key(text), list(self._by_key), n=1, cutoff=0.6)
        return self._by_key[found[0]] if found else None
