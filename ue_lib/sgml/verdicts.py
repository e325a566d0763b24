"""SGML's verdicts (notebook 07): what each domain declares (attributes, coarse groups), each
rung's settings in words; the ladder and the students are compared with the generic rules of
`ue_lib.verdicts` (`model_table`, `verdicts_against`, `verdicts_sentence`, `favoured_sentence`),
which name models by the rows' `model` (the rung, or "kl ← <rung>")."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..verdicts import num, setting_label


def attribute_table(domains: Mapping) -> pd.DataFrame:
    """Notebook 07: what each domain declares (`Domain.attribute_names`, `Domain.group_names`):
    the number of attributes and coarse groups, a few names of each, and the mean number of
    attributes an image has on (training split); "–" where a domain has none."""
    rows = []
    for name, d in domains.items():
        a = d.train.attributes
        rows.append({"domain": name, "attributes": len(d.attribute_names) or "–",
                     "e.g.": ", ".join(d.attribute_names[:4]) or "–",
                     "on per image": "–" if a is None else num(float((a >= 0.5).sum(1).mean()), 1),
                     "coarse groups": len(d.group_names) or "–",
                     "groups, e.g.": ", ".join(d.group_names[:4]) or "–"})
    return pd.DataFrame(rows).set_index("domain")


def ladder_settings(ladder: Mapping[str, Mapping]) -> str:
    """Notebook 07, Markdown: each rung of `Profile.sgml_ladder` with the settings its
    specialists change ("the profile's own" for none)."""
    return "\n".join(f"- **{rung}**: " + (", ".join(f"`{k}` = {setting_label(v)}" for k, v in s.items())
                                          or "the profile's own")
                     for rung, s in ladder.items())
