"""The old path of OPQN's codebooks and quantizer, kept for the code that imports it (SPEC §5:
``ue_lib.quantize.dct_codebooks``): they live in `ue_lib.opqn.loss`, with the rest of OPQN's
system in `ue_lib.opqn`."""

from .opqn.loss import (
    CODEBOOKS,
    OPQNLoss,
    OrthonormalQuantizer,
    dct_codebooks,
    dct_matrix,
    make_codebooks,
    random_codebooks,
)

__all__ = ["CODEBOOKS", "OPQNLoss", "OrthonormalQuantizer", "dct_codebooks", "dct_matrix",
           "make_codebooks", "random_codebooks"]
