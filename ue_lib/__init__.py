"""ue_lib: a runnable reproduction of *Unifying Specialist Image Embedding into Universal Image
Embedding* (Feng et al., 2020) and of three papers around it.

The layout (README, "What is in here"): a shared core (data, models, losses, evaluation,
training, verdicts, palette and figures), one folder per paper's system, and the run machinery
on top (profiles, run spec, run folder, runner, sweep, check, CLI, bench).
"""
