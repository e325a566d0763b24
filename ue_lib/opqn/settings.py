"""The settings of OPQN's system (notebook 06): the OPQN networks' embedding size and code
shapes, the experiments and seeds, the faiss baselines, the queries, the search benchmark and
the ablation. The setting names keep the prefix ``quantize_`` (and ``epochs_quantize``), the
spelling that run folders and sweeps already record.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import choice, positive
from ..settings import CoreSettings, setting

FAISS_KINDS = ("pq", "opq", "ivfpq")  # the post-hoc faiss indexes (`ue_lib.opqn.indexes`)


@dataclass
class OPQNSettings(CoreSettings):
    epochs_quantize: int = setting(10, "train", "OPQN models (notebook 06)")
    quantize_dim: int = setting(192, "opqn", "embedding size of the OPQN networks (D = M x d)")
    quantize_codes: str = setting("4x16,6x16,8x16,12x16", "opqn",
                                  "code shapes MxK compared (M subspaces of K codewords: M log2 K bits)")
    quantize_experiments: str = setting("orl:seen,orl:unseen,omniglot:unseen,universal", "opqn",
                                        "DOMAIN:PROTOCOL experiments, and `universal` (all domains)")
    quantize_seeds: str | int | tuple | list = setting("0,1,2", "opqn")
    quantize_baselines: str = setting("pq,opq", "opqn", "faiss indexes compared: pq, opq, ivfpq")
    quantize_queries: int = setting(1000, "opqn", "at most this many queries (a seeded sample) per "
                                    "experiment rank the whole database; 0: all")
    quantize_bench_items: int = setting(1_000_000, "opqn", "items of the synthetic search benchmark")
    quantize_ablation: dict = setting(lambda: {"opqn.codebook": ["dct", "random", "learned"],
                                               "opqn.entropy_weight": [0.1, 0.0],
                                               "opqn.x_branch": [True, False]}, "opqn",
                                      "OPQN settings varied one at a time (first value: the default)")
    quantize_ablation_on: str = setting("omniglot:unseen", "opqn",
                                        "the experiment of the ablations (one of quantize_experiments; "
                                        "when absent, the first): below the metric's ceiling, where a "
                                        "change can show (ORL seen sits near it)")

    LOSS_MODULES = ("ue_lib.opqn.loss",)  # registers the loss "opqn"

    def check(self) -> None:
        super().check()
        positive("Profile", epochs_quantize=self.epochs_quantize, quantize_dim=self.quantize_dim)
        self.canonical_seeds("quantize_seeds")
        for knob in self.quantize_ablation:
            self.setting_path(knob)
        self.code_shapes()
        self.quantize_experiment_list()
        for kind in self.methods("quantize_baselines"):
            choice("Profile", "quantize_baselines", kind, FAISS_KINDS)

    def code_shapes(self) -> list[tuple[int, int]]:
        """`quantize_codes` as (M, K) pairs; each must fit `quantize_dim` (M divides it and K is
        a power of two no larger than the subvector size, as orthonormal codewords need)."""
        fix = '; e.g. -p quantize_codes "4x16,8x16"'
        shapes = []
        for part in self.quantize_codes.split(","):
            m, x, k = part.strip().partition("x")
            if not (x and m.isdigit() and k.isdigit()):
                raise ValueError(f"Profile.quantize_codes: {part.strip()!r} is not MxK{fix}")
            m, k = int(m), int(k)
            if m < 1 or self.quantize_dim % m:
                raise ValueError(f"Profile.quantize_codes: {m} subspaces do not divide quantize_dim "
                                 f"{self.quantize_dim}{fix}")
            if k < 2 or k & (k - 1) or k > self.quantize_dim // m:
                raise ValueError(f"Profile.quantize_codes: {k} codewords must be a power of two "
                                 f"<= the subvector size {self.quantize_dim // m}{fix}")
            shapes.append((m, k))
        return shapes

    def ablation_experiment(self) -> tuple[str, str]:
        """The (domain, protocol) of notebook 06's ablations: `quantize_ablation_on` when it is
        one of `quantize_experiments`, else the first of them."""
        experiments = self.quantize_experiment_list()
        on = self.quantize_ablation_on.strip()
        wanted = ("universal", "") if on == "universal" else tuple(on.rpartition(":")[::2])
        return wanted if wanted in experiments else experiments[0]

    def quantize_experiment_list(self) -> list[tuple[str, str]]:
        """`quantize_experiments` as (domain, protocol) pairs; ("universal", "") is the merged
        index of all the profile's domains."""
        out = []
        for part in self.quantize_experiments.split(","):
            if part.strip() == "universal":
                out.append(("universal", ""))
                continue
            domain, _, protocol = part.strip().rpartition(":")  # folder:<path>:seen works
            if not domain or protocol not in ("seen", "unseen"):
                raise ValueError(f"Profile.quantize_experiments: {part.strip()!r} must be "
                                 f"DOMAIN:seen, DOMAIN:unseen or universal")
            out.append((domain, protocol))
        return out


# What the named profiles (`ue_lib.profiles.NAMED`) change of these settings.
PROFILES: dict[str, dict] = {
    # at toy size: two code shapes of a 64-d OPQN head, 3 epochs, a small benchmark
    "smoke": dict(
        quantize_dim=64, quantize_codes="4x8,8x8", quantize_seeds="0,1", epochs_quantize=3,
        quantize_queries=300, quantize_bench_items=20_000,
        quantize_ablation={"opqn.codebook": ["dct", "random"], "opqn.entropy_weight": [0.1, 0.0],
                           "opqn.x_branch": [True, False]}),
    "mini": dict(epochs_quantize=20, quantize_queries=500),
    # on the benchmarks: a 512-d OPQN embedding (the paper's size) at 16-48 bits, IVFPQ among
    # the baselines, 2000 sampled queries rank each whole database; a face set of your own is
    # one more experiment: -p quantize_experiments "folder:/data/faces:seen,…"
    "paper": dict(
        quantize_dim=512, quantize_codes="2x256,4x64,8x16,8x64", epochs_quantize=30,
        quantize_experiments="cub:unseen,cars:unseen,sop:unseen,inshop:unseen,universal",
        quantize_baselines="pq,opq,ivfpq", quantize_queries=2000),
}
