"""Profiles: every setting of a run, in one place, as data.

`Profile` is composed of settings groups, each declared with the code it configures: the shared
core's (`ue_lib.settings.CoreSettings`: data, network, optimiser, training) and one per paper's
system (`ue_lib.<system>.settings`: universal, opqn, sgml, objects). Each setting is held once,
with its default; a model's settings are the `ModelSettings` part of a profile (same names), so
no setting is declared twice or renamed on its way. Settings are grouped (`group=` in each
field's metadata): a model's fingerprint holds the groups it depends on, so a change of, say, a
distillation setting retrains only the students.

The named profiles below list what they change, the core's part here and each system's in its
settings module (``PROFILES``):

* `smoke` — tiny subsets and 2-3 epochs: seconds per notebook, for CI regression.
* `mini` — the default demo, in the paper's regime: an ImageNet-pretrained trunk (frozen,
  its features cached) adapted to five real domains of very different size, 3 seeds.
* `scratch` — the earlier demo: a small CNN from scratch on three grayscale domains.
* `paper` — the real experiment on a GPU: CUB-200-2011, Cars196, Stanford Online Products and
  In-Shop from their official layouts, read lazily at 224 px, an ImageNet-pretrained ResNet-50
  with frozen BatchNorm, bfloat16 mixed precision (README, "Reproduce at paper scale").

This module does not import torch (the runner and the sweep use it before any kernel starts);
validating a profile's loss parameters imports it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .objects import settings as objects
from .opqn import settings as opqn
from .sgml import settings as sgml
from .universal import settings as universal


@dataclass
class Profile(objects.ObjectsSettings, sgml.SGMLSettings, opqn.OPQNSettings,
              universal.UniversalSettings):
    """Every setting of a run: the core's and each system's settings groups, checked in that
    order (`ue_lib.settings`)."""


# The core's part of the named profiles (each system's part: its settings module's PROFILES).
CORE: dict[str, dict] = {
    # The mini regime shrunk to seconds per notebook, for CI: the same pretrained, cached path
    # (at 32 px), four domains with tiny subsets (clip-art's first render alone would take
    # half a minute), 4 batches per domain.
    "smoke": dict(
        domains="omniglot,fashion,glyphs,orl", image_size=32, channels=3,
        per_domain={"omniglot": {"max_classes": 40}, "fashion": {"max_per_class": 40},
                    "glyphs": {"max_classes": 30, "max_per_class": 24}},
        backbone="efficientnet_lite0", weights="imagenet", frozen_bn=True, trainable_stages=0,
        head_hidden=64, embedding_dim=32, p=8, k=4, lr=2e-3, batches_per_domain=4, threads=1,
        checkpoint_seconds=30.0,
        workers=1,  # at toy size two workers' start-up (30 s) costs more than they save
        eval_every=1),
    # The pretrained regime (the default demo): ImageNet EfficientNet-Lite0 features at 64 px,
    # frozen and cached (computed once per run), an MLP head trained on them; five domains of
    # very different size and kind. Every model sees the same 10 batches of each domain per
    # epoch (equal budgets), evaluated every epoch (cheap on cached features) so that an early
    # peak is located. Training steps dominate the time: a 256-unit head instead of 512 keeps
    # the run short. Times: README.
    "mini": dict(
        domains="clipart,fashion,glyphs,omniglot,orl", image_size=64, channels=3,
        per_domain={"fashion": {"max_per_class": 300}},
        backbone="efficientnet_lite0", weights="imagenet", frozen_bn=True, trainable_stages=0,
        head_hidden=256, embedding_dim=64, lr=2e-3, batches_per_domain=10, threads=1,
        workers=2, eval_every=1, checkpoint_seconds=30.0),
    # The earlier demo: a small CNN from scratch on the three grayscale domains. Kept for its
    # contrast with `mini`: here the over-fitting of naive fusion does not appear. One naive
    # epoch is ~7 s of training plus ~5 s of evaluating val and test (SPEC §9), so curves are
    # evaluated every 2nd epoch.
    "scratch": dict(per_domain={"fashion": {"max_per_class": 300}}, eval_every=2),
    # The paper's setting, for one modern GPU (times and memory: README). ResNet-50 from
    # ImageNet with frozen BatchNorm: P x K batches hold few images per class and each batch
    # holds one domain, so batch statistics would be both noisy and domain-biased (SPEC §9);
    # freezing them, as most metric-learning papers do, keeps ImageNet's statistics.
    "paper": dict(
        domains="cub,cars,sop,inshop", image_size=224, channels=3, lazy=True,
        num_workers=8, backbone="resnet50", weights="imagenet", frozen_bn=True,
        embedding_dim=512, optimizer="adamw", lr=3e-5, weight_decay=1e-4, lr_schedule="cosine",
        p=32, k=4, eval_every=5, augment=True),
}
SYSTEM_PROFILES = (universal.PROFILES, opqn.PROFILES, sgml.PROFILES, objects.PROFILES)
NAMED: dict[str, dict] = {name: {k: v for part in (CORE, *SYSTEM_PROFILES)
                                 for k, v in part.get(name, {}).items()} for name in CORE}
"""Every named profile: what it changes of the defaults, all groups together."""


def parse_value(text: str):
    """A command-line value: a Python literal when it is one (3, 0.5, None, True, {...}),
    else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def profile_fields() -> list[str]:
    return Profile.field_names()


def setting_path(name: str) -> tuple[str, ...]:
    """('lr',) for a setting, ('loss_params', 'kl', 'temperature') for 'kl.temperature';
    an unknown name raises ValueError listing the valid ones."""
    return Profile.setting_path(name)


def load_profile(name: str, domains: str | None = None, overrides: dict | None = None) -> Profile:
    """The named profile with `domains` (if given, non-empty) and `overrides` applied."""
    if name not in NAMED:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(NAMED)}")
    overrides = dict(overrides or {})
    for key in overrides:
        setting_path(key)  # names are checked before any value
    if domains:
        overrides["domains"] = domains
    return Profile(name=name).with_overrides({**NAMED[name], **overrides})
