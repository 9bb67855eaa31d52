"""``natpg report``: tables, figures and results pages from sweep directories.

``natpg report DIR... --out OUT`` writes into OUT (:func:`write_report`):

* ``returns.csv`` / ``returns.md``: final return per env × method over the completed seeds
  (mean ± sample std; *partial* where a row has fewer seeds than the sweep's largest count);
* ``seeds.md`` / ``.csv``: per seed, the final return, the best running mean and the step it
  first reached a solved return (CartPole's 195);
* ``anchors.md`` (when a task has published 1M-step numbers): our best natpg rule and SB3 row
  beside them, with how the protocols differ;
* ``table1.md`` / ``.csv``: the paper's Table 1 beside ours, a cell whose runs are shorter than
  the task's budget saying so; ``budgets.md``: the budget per task and the paper's sentence it
  rests on; ``verdicts.md``: reproduces / does not / inconclusive per task and method;
* ``smac_vs.md``: SMAC against its step-size control, the baselines and SB3; ``smac_rank1.md``:
  how far SMAC's step is from the control's; ``ablation.md`` (Figure 1) and with it
  ``update_time.md`` / ``.csv`` (each variant's update time against the largest-batch SMAC's);
* ``damping.md`` / ``.csv`` (when a run adapted its damping): final return, KL per update and λ;
* ``thresholds.md``, ``timing.md``, ``step_size.md``, ``status.md``, ``commands.md``;
* ``curves_ENV.png``, ``learning_curves.png`` (Figures 2-3), ``log_prob.png`` (Figures 4-5),
  ``ablation_batch_size.png`` (Figure 1), ``return_vs_update_time.png`` (with the ablation),
  ``damping.png`` (λ over training);
* ``report.md``: all of the above in one page.

``natpg report --page TEMPLATE`` renders a results page whole from a template and the data
(:mod:`natpg.bench.report.page`). Verdicts follow one rule (:mod:`natpg.bench.report.stats`).

Modules: :mod:`~natpg.bench.report.runs` (loading, ordering, aggregation, smoothing),
:mod:`~natpg.bench.report.stats` (the verdict rule), :mod:`~natpg.bench.report.plots`,
:mod:`~natpg.bench.report.tables` (the tables of any sweep, and the formatting every table shares),
:mod:`~natpg.bench.report.seeds`, :mod:`~natpg.bench.report.anchors`, :mod:`~natpg.bench.report.thresholds`,
:mod:`~natpg.bench.report.damping`, :mod:`~natpg.bench.report.paper` (the SMAC paper's tables and Figure 1),
:mod:`~natpg.bench.report.update_time` (the ablation's update cost), :mod:`~natpg.bench.report.write`
(the report directory), :mod:`~natpg.bench.report.page`.
"""

from natpg.bench.report.page import render_page
from natpg.bench.report.runs import Run, load_runs
from natpg.bench.report.write import build_report, write_report

__all__ = ["Run", "load_runs", "build_report", "write_report", "render_page"]
