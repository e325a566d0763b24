"""Notebook 08's scene experiment, section by section (`SceneSections`): each method shows one
section's tables and figures. A profile without scenes (`experiments.scenes_supported`: the
experiment needs the frozen, cached EfficientNet-Lite0 trunk of `mini` and `smoke`) is told why
once, when the sections are made, and every section then shows nothing, so the notebook keeps
one structure for every profile and its at-paper-scale section still runs."""

from __future__ import annotations

import pandas as pd

from .. import figures
from . import experiments
from . import figures as objects_figures
from . import verdicts as objects_verdicts
from .models import object_scenes


def _display(*items) -> None:
    from IPython.display import display  # a notebook's kernel is the only caller

    display(*items)


def _markdown(text: str) -> None:
    from IPython.display import Markdown

    _display(Markdown(text))


class SceneSections:
    """The sections of notebook 08's scene experiment on the notebook's run folder `run`
    (`ue_lib.runfolder.RunFolder`): `scenes`, `experiment` (runs every seed), then `detector`,
    `objects`, `gallery`, `clean`, `spliced`, `costs`, `measured` and `findings`, each showing
    the tables and figures of its section. Unsupported profiles: one line, at construction."""

    def __init__(self, run):
        self.run, self.profile = run, run.profile
        self.supported, why_not = experiments.scenes_supported(self.profile)
        self.seeds: list[experiments.ObjectSeed] = []
        ks = self.profile.k_list("objects_ks")
        self.metrics = [f"recall@{ks[0]}", "map@r"]
        self.spliced_metrics = [f"recall@{ks[0]}", f"donor_recall@{ks[0]}", f"host_recall@{ks[0]}",
                                f"donor_recall@{ks[-1]}"]
        self.recall_ks = [f"recall@{ks[-1]}"] if len(ks) > 1 else []
        if not self.supported:
            _markdown(f"**The scene experiment does not run in this profile:** {why_not}. "
                      "Its sections below stay empty.")

    @property
    def rows(self) -> pd.DataFrame:
        return self.run.results()

    def scenes(self) -> None:
        """The run seed's scenes: one summary row per split and the first 12 test scenes with
        their true boxes."""
        if not self.supported:
            return
        scenes = object_scenes(self.run, self.run.seed)
        _display(pd.DataFrame([s.summary() for s in scenes.values()]).set_index("split"))
        test = scenes["test"]
        self.run.show(objects_figures.scenes_figure(
            test.images[:12], [test.box[test.objects_of(i)] for i in range(12)]), "scenes")

    def experiment(self) -> None:
        """Every seed of `objects_seeds` (`experiments.object_experiment`), its rows added to
        the run's results."""
        if not self.supported:
            return
        self.seeds = experiments.object_experiment(self.run)
        for s in self.seeds:
            self.run.add_rows(pd.DataFrame(s.rows))

    def detector(self) -> None:
        """`verdicts.detector_table` and the detector's boxes on the first test scenes."""
        if not self.seeds:
            return
        _display(objects_verdicts.detector_table(self.rows))
        ex = self.seeds[0].examples
        self.run.show(objects_figures.scenes_figure(ex["images"], ex["boxes"], ex["detections"]),
                      "detections")

    def objects(self) -> None:
        """`verdicts.object_table` of object retrieval, `verdicts.floor_note`, and its bars per
        domain."""
        if not self.seeds:
            return
        rows, metric = self.rows, self.metrics[0]
        _display(objects_verdicts.object_table(rows, "objects", self.metrics + self.recall_ks))
        if note := objects_verdicts.floor_note(rows, "objects", metric):
            _markdown(note)
        self.run.show(figures.bars(objects_verdicts.condition_rows(rows, "objects"), metric, hue="model",
                                   title=f"object retrieval {metric} per domain, mean ± std over seeds"),
                      "object_retrieval")

    def gallery(self) -> None:
        """`figures.object_gallery` of the first seed."""
        if self.seeds:
            self.run.show(objects_figures.object_gallery(self.seeds[0].examples["gallery"]), "gallery")

    def clean(self) -> None:
        """`verdicts.object_table` on clean items, then `verdicts.trunk_vs_head`."""
        if not self.seeds:
            return
        _display(objects_verdicts.object_table(self.rows, "clean", self.metrics))
        _markdown(objects_verdicts.trunk_vs_head(self.rows, self.metrics[0]))

    def spliced(self) -> None:
        """`verdicts.object_table` of spliced retrieval and its bars per domain."""
        if not self.seeds:
            return
        rows, metric = self.rows, self.spliced_metrics[1]
        _display(objects_verdicts.object_table(rows, "spliced", self.spliced_metrics))
        self.run.show(figures.bars(objects_verdicts.condition_rows(rows, "spliced"), metric, hue="model",
                                   title=f"spliced retrieval: {metric} of the donor scene"),
                      "spliced_retrieval")

    def costs(self) -> None:
        """`verdicts.pipeline_costs`, `verdicts.cost_sentence` and the time-against-accuracy plot."""
        if not self.seeds:
            return
        rows, metric = self.rows, self.metrics[0]
        costs = objects_verdicts.pipeline_costs(rows)
        _display(costs.drop(columns=["method", "total_mean"]))
        _markdown(objects_verdicts.cost_sentence(costs, rows, metric))
        self.run.show(objects_figures.tradeoff_plot(objects_verdicts.tradeoff_points(rows, metric),
                                                    metric), "time_vs_accuracy")

    def measured(self) -> None:
        """`verdicts.student_margins` and `verdicts.measures_sentence`."""
        if not self.seeds:
            return
        margins = objects_verdicts.student_margins(self.rows, self.metrics[0])
        if len(margins):
            _display(margins)
        _markdown(objects_verdicts.measures_sentence(self.rows, self.metrics[0]))

    def findings(self) -> None:
        """`verdicts.answer` with the measured students' `verdicts.measures_reading`, then
        `verdicts.findings_markdown` of `verdicts.object_findings`."""
        if not self.seeds:
            _markdown(objects_verdicts.answer(pd.DataFrame()))
            return
        rows = self.rows
        found = objects_verdicts.object_findings(rows, self.metrics, self.spliced_metrics[:2])
        reading = objects_verdicts.measures_reading(rows, self.metrics[0])
        _markdown(objects_verdicts.answer(found, objects_verdicts.pipeline_costs(rows)) +
                  (f" **Why does the student stay below its teacher?** {reading}" if reading else ""))
        _markdown(objects_verdicts.findings_markdown(found))
