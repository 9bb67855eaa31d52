"""Results pages rendered whole from a template and the sweep data: ``natpg report --page TEMPLATE``.

A template is Markdown with a header naming the page it renders and the sweeps it draws on::

    <!-- natpg report template
    page: ../results.md
    paper: ../../benchmarks/results/paper ../../benchmarks/results/paper-sb3 -> ../../benchmarks/results/report
    -->

Each ``NAME: DIR... -> OUT`` line is a *set*: its sweep directories are reported into OUT (every
table and figure of :func:`natpg.bench.report.write.write_report`; without ``-> OUT`` nothing is
written), and ``{{NAME.KEY}}`` in the template is one of its values (:func:`facts`). Paths are relative to the template. Every number
of the rendered page comes from a placeholder, so the page cannot drift from the data; an
unknown placeholder is an error, not a blank.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from natpg.bench.report import anchors, paper, targets
from natpg.bench.report.runs import BINS, EWM_ALPHA, env_order, final_returns, invocations, planned_seeds
from natpg.bench.report.stats import RULE, Verdict, steps_text
from natpg.bench.report.tables import cell, fmt
from natpg.bench.report.write import SMAC_AGAINST, Report, build_report, write_built
from natpg.bench.suites import PAPER_BUDGETS, SUITES
from natpg.runlog import atomic_write_bytes

__all__ = ["Template", "read_template", "facts", "render", "render_page"]

_HEADER = re.compile(r"\A<!-- natpg report template\n(.*?)\n-->\n+", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


@dataclass
class Template:
    path: Path
    page: Path
    sets: dict[str, tuple[list[Path], Path | None]]  # name → (sweep directories, report directory or None)
    body: str


def read_template(path: str | Path) -> Template:
    path = Path(path)
    text = path.read_text()
    m = _HEADER.match(text)
    if not m:
        raise ValueError(f"{path} does not start with a '<!-- natpg report template' header")
    base, page, sets = path.parent, None, {}
    for line in m.group(1).splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        dirs, arrow, out = value.partition("->")
        if key == "page":
            page = _under(base, value)
        elif key and dirs.split():
            sets[key] = ([_under(base, d) for d in dirs.split()], _under(base, out.strip()) if arrow else None)
        elif key:
            raise ValueError(f"{path}: header line {line!r} is neither 'page: PATH' nor 'NAME: DIR... [-> OUT]'")
    if page is None:
        raise ValueError(f"{path}: the header names no page ('page: PATH')")
    return Template(path, page, sets, text[m.end():])


def _under(base: Path, relative: str) -> Path:
    return Path(os.path.normpath(base / relative))


def _short(env: str) -> str:
    return re.sub(r"-v\d+$", "", env)


def _listing(found: dict[str, Verdict], word: str) -> str:
    """The tasks (env → verdict) whose verdict is ``word``, by short name, with the reason where
    there was no test: ``Pendulum (500k of 3M steps), HalfCheetah (1M of 5M steps)``; 'none'."""
    envs = env_order(e for e, v in found.items() if v.word == word)
    return ", ".join(_short(e) + (f" ({found[e].why})" if found[e].why else "") for e in envs) or "none"


def _slug(words: str) -> str:
    return words.replace(" ", "-")


def facts(name: str, rep: Report) -> dict[str, str]:
    """The values ``{{NAME.KEY}}`` of one set (KEY below; ENV a Gymnasium id, LABEL a method label):

    * every section of the report by its file name: ``table1``, ``verdicts``, ``smac_vs``, …;
    * ``return.ENV.LABEL`` (mean ± std, or the mean of one seed; without a completed
      run, what became of the runs: ``– (3 failed)``, ``– (1 unfinished)``), ``mean.``, ``seeds.``, ``budget.``,
      ``run.ENV.LABEL.seedN`` (one run's final return; ``run_wall.`` its wall time, s), ``cell.ENV.LABEL`` (the return,
      with ``(N seeds, partial)`` below the set's largest seed count; ``not run yet`` for a label
      the set ran on other tasks only), ``timed.ENV.LABEL`` (the cell and its mean wall time),
      ``paper.ENV.METHOD`` (the paper's Table 1);
    * ``verdict.ENV.METHOD`` (against the paper) and ``vs.ENV.OTHER`` (SMAC against OTHER), and the
      tasks of each verdict: ``tasks.WORD.METHOD`` and ``vs_tasks.OTHER.WORD`` (words with dashes:
      ``does-not-reproduce``, ``no-significant-difference``);
    * ``best.ENV`` / ``best_sb3.ENV`` (the best natpg rule / SB3 row, as ``anchors.md`` shows it),
      ``anchor.ENV.SOURCE.ALGORITHM`` (a published number: ``anchor.Hopper-v5.tianshou.trpo``);
    * ``rank1.ENV.damping`` / ``.removed`` (a percentage) / ``.cosine``;
    * ``versus.ENV.A.B``: label A against label B on ENV, by the rule (*inconclusive* below 3 seeds
      a side, ``–`` where a side has no completed run),
      and ``best_versus.ENV.SB3LABEL``: the best natpg rule (``best.ENV``) against an SB3 row;
      ``best_vs_best.ENV``: the best natpg rule against the best SB3 row; ``best_timed.ENV`` /
      ``best_sb3_timed.ENV``: those rows with their mean wall time;
    * ``seed_range.ENV``: the completed seeds per label on ENV (``3``, or ``1–3`` where labels
      differ), ``seed_range_all`` the same over every task, and ``labels.ENV``: the labels with a completed run;
    * ``update_ms.ENV.LABEL``, ``steps_per_second.ENV.LABEL``, ``wall_time.ENV.LABEL`` (s, mean over the completed seeds),
      ``episode_length.ENV.LABEL`` (steps per training episode over a whole run, mean over the completed seeds),
      ``wall_ratio.ENV.A.B``: B's mean wall time per run over A's (``3.2×``: A ran 3.2 times as fast);
    * ``targets_met.best`` / ``.trpo`` / ``.wall``: the tasks meeting each field target, ``N of M`` (``targets.md``);
    * ``runs``, ``done``, ``failed``, ``unfinished``, ``machine``, ``versions``, ``commits``, ``dates``.

    Across two sets A and B of one template: ``versus.A.B.ENV.LABEL`` (:func:`_cross_facts`).
    """
    out = {f"{name}.{k}": v.strip() for k, v in rep.sections.items()}

    def put(key: str, value: str) -> None:
        out[f"{name}.{key}"] = value

    def timed(text: str, env: str, label: str) -> str:  # a cell with its mean wall time, where recorded
        wall = out.get(f"{name}.wall_time.{env}.{label}")
        return text + (f", {wall} s" if wall not in (None, "–") else "")

    groups = final_returns(rep.runs)
    target = max([planned_seeds(rep.dirs), *(g.seeds for g in groups.values())])  # below it, a row is partial
    for (env, label), g in groups.items():
        if not g.seeds:  # no completed run: say what became of them
            put(f"return.{env}.{label}", f"– ({g.not_counted()})")
            put(f"cell.{env}.{label}", f"– ({g.not_counted()})")
        else:
            put(f"return.{env}.{label}", fmt(g.mean) if g.std is None else cell(g.mean, g.std))
            lost = g.not_counted()  # failed or unfinished seeds are said, not hidden behind "partial"
            partial = (f" ({g.seeds} seed{'s' if g.seeds > 1 else ''}, partial{'' if lost == '–' else '; ' + lost})"
                       if g.seeds < target else "")
            put(f"cell.{env}.{label}", out[f"{name}.return.{env}.{label}"] + partial)
            put(f"mean.{env}.{label}", fmt(g.mean))
            put(f"budget.{env}.{label}", steps_text(g.budget) if g.budget else "–")
            for seed, value in g.by_seed.items():
                put(f"run.{env}.{label}.seed{seed}", fmt(value))
            for seed, wall in g.wall_by_seed.items():
                put(f"run_wall.{env}.{label}.seed{seed}", fmt(wall, 0))
        put(f"seeds.{env}.{label}", str(g.seeds))
        if g.update_times:
            ms = 1e3 * sum(g.update_times) / len(g.update_times)
            put(f"update_ms.{env}.{label}", fmt(ms, 1))
        if g.steps_per_second:
            put(f"steps_per_second.{env}.{label}", fmt(sum(g.steps_per_second) / len(g.steps_per_second), 0))
        if g.wall_times:
            put(f"wall_time.{env}.{label}", fmt(sum(g.wall_times) / len(g.wall_times), 0))
        if g.episode_lengths:
            put(f"episode_length.{env}.{label}", fmt(sum(g.episode_lengths) / len(g.episode_lengths), 0))
    labels = {lab for _, lab in groups}
    for env in {e for e, _ in groups}:  # a label that ran on other tasks of the set but not on this one
        for label in labels:
            out.setdefault(f"{name}.cell.{env}.{label}", "not run yet")
            put(f"timed.{env}.{label}", timed(out[f"{name}.cell.{env}.{label}"], env, label))
    per_env: dict[str, list[tuple[str, int]]] = {}
    for (env, label), g in groups.items():
        per_env.setdefault(env, []).append((label, g.seeds))
    def seed_range(counts: set[int]) -> str:  # labels with no completed run do not count
        n = sorted(counts - {0}) or [0]
        return str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"

    for env, rows in per_env.items():
        put(f"seed_range.{env}", seed_range({n for _, n in rows}))
        put(f"labels.{env}", ", ".join(f"`{label}`" for label, n in rows if n) or "none")
    put("seed_range_all", seed_range({g.seeds for g in groups.values()}))
    verdicts: dict[tuple[str, str, str], str] = {}  # (env, A, B) → A against B
    for (env, a), ga in groups.items():
        for (env_b, b), gb in groups.items():
            if env_b != env or a == b:
                continue
            v = paper.compare(ga, gb)
            if v is not None:
                verdicts[env, a, b] = v.text()
                put(f"versus.{env}.{a}.{b}", v.text())
            if ga.wall_time_mean and gb.wall_time_mean:  # how many times as fast A ran as B
                put(f"wall_ratio.{env}.{a}.{b}", f"{gb.wall_time_mean / ga.wall_time_mean:.1f}×")
    best = anchors.best_rows(groups, target)
    for key, value in targets.met_counts(targets.field_targets(groups, target)).items():
        put(f"targets_met.{key}", value)
    for env in {e for e, _ in groups}:  # no test where a side has no completed run
        for a in labels:
            for b in labels - {a}:
                out.setdefault(f"{name}.versus.{env}.{a}.{b}", "–")
    for env, row in best[False].items():
        put(f"best.{env}", anchors.ours_cell(row))
        for (env_v, a, other), text in verdicts.items():  # the best natpg rule against every SB3 row
            if env_v == env and a == row.label and anchors.is_sb3(other):
                put(f"best_versus.{env}.{other}", text)
        for other in filter(anchors.is_sb3, labels):
            out.setdefault(f"{name}.best_versus.{env}.{other}", "–")
    for env, row in best[True].items():
        put(f"best_sb3.{env}", anchors.ours_cell(row))
    for side, key in ((False, "best"), (True, "best_sb3")):  # the best rows with their wall times
        for env, row in best[side].items():
            put(f"{key}_timed.{env}", timed(anchors.ours_cell(row), env, row.label))
    for env in {e for e, _ in groups}:  # the best natpg rule against the best SB3 row
        ours, rival = best[False].get(env), best[True].get(env)
        put(f"best_vs_best.{env}", verdicts.get((env, ours.label, rival.label), "–") if ours and rival else "–")
    for key, value in anchors.anchor_cells().items():
        task, rest = key.split(".", 1)
        for env in {e for e, _ in groups if anchors.task_name(e) == task}:
            put(f"anchor.{env}.{rest}", value)
    for env, methods in paper.paper_table1().items():
        for method, (mean, std) in methods.items():
            put(f"paper.{env}.{method}", cell(mean, std))
    found = paper.verdicts(rep.runs)
    for (env, method), v in found.items():
        put(f"verdict.{env}.{method}", v.text())
    for method in paper.PAPER_TABLE1_METHODS:
        per_env = {e: v for (e, m), v in found.items() if m == method}
        for word in ("reproduces", "does not reproduce", "inconclusive"):
            put(f"tasks.{_slug(word)}.{method}", _listing(per_env, word))
    vs = paper.comparisons(rep.runs, "smac", SMAC_AGAINST)
    for (env, other), v in vs.items():
        put(f"vs.{env}.{other}", v.text())
    for other in SMAC_AGAINST:
        per_env = {e: v for (e, o), v in vs.items() if o == other}
        for word in ("higher", "lower", "no significant difference", "inconclusive"):
            put(f"vs_tasks.{other}.{_slug(word)}", _listing(per_env, word))
    for env, r in paper.rank1(rep.runs).items():
        put(f"rank1.{env}.damping", f"{r.damping:g}")
        put(f"rank1.{env}.removed", f"{100 * r.removed:.1f}%")
        put(f"rank1.{env}.cosine", "–" if r.cosine is None else f"{r.cosine:.3f}")
    statuses = [r.status for r in rep.runs]
    for status in ("done", "failed", "unfinished"):
        put(status, str(statuses.count(status)))
    put("runs", str(len(statuses)))
    _provenance(rep, put)
    return out


def _provenance(rep: Report, put) -> None:
    """Where and with what the runs ran: machines and dates of the sweeps, package versions and
    natpg commits of the runs."""
    invs = invocations(rep.dirs)
    machines = sorted({f"{m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} CPUs"
                       for m in (inv.get("machine", {}) for inv in invs)})
    put("machine", "; ".join(machines) or "not recorded")
    days = sorted({str(inv.get("started", ""))[:10] for inv in invs if inv.get("started")})
    put("dates", (days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}") if days else "not recorded")
    versions: dict[str, set[str]] = {}
    commits: dict[str, int] = {}
    for r in rep.runs:
        v = r.config.get("versions") or {}
        for pkg in ("python", "torch", "gymnasium", "mujoco"):
            if pkg in v:
                versions.setdefault(pkg, set()).add(str(v[pkg]))
        commit = v.get("natpg_commit")
        key = commit[:7] + (" (uncommitted changes)" if commit.endswith("+dirty") else "") if commit else "not recorded"
        commits[key] = commits.get(key, 0) + 1
    put("versions", ", ".join(f"{pkg} {' / '.join(sorted(vs))}" for pkg, vs in versions.items()) or "not recorded")
    put("commits", ", ".join(f"`{c}` ({n} runs)" if c != "not recorded" else f"{n} runs without a record"
                             for c, n in sorted(commits.items(), key=lambda kv: -kv[1])))


def _global_facts() -> dict[str, str]:
    """Values that do not depend on a set: ``rule``, ``bins`` and ``ewm`` (the curves' smoothing),
    ``budget.ENV`` (the ``paper`` suite's budget), ``suite.NAME.steps`` (a suite's budgets), ``suite.NAME.seeds``."""
    out = {"rule": RULE, "bins": str(BINS), "ewm": f"{EWM_ALPHA:g}"}
    for env, b in PAPER_BUDGETS.items():
        out[f"budget.{env}"] = steps_text(b.steps)
    for name, suite in SUITES.items():
        steps = sorted({suite.steps_for(env) for env in suite.envs})
        out[f"suite.{name}.steps"] = "–".join(steps_text(s) for s in dict.fromkeys((steps[0], steps[-1])))
        out[f"suite.{name}.seeds"] = f"{suite.seeds} (seeds 0–{suite.seeds - 1})" if suite.seeds > 1 else "1 (seed 0)"
    return out


def _cross_facts(reports: dict[str, Report]) -> dict[str, str]:
    """``versus.A.B.ENV.LABEL``: LABEL of set A against the same LABEL of set B on ENV, by the
    rule (:func:`natpg.bench.report.stats.versus`), e.g. the defaults against ``--preset paper``."""
    groups = {name: final_returns(rep.runs) for name, rep in reports.items()}
    out = {}
    for a, ga in groups.items():
        for b, gb in groups.items():
            for key in (ga.keys() & gb.keys()) if a != b else ():
                v = paper.compare(ga[key], gb[key])
                if v is not None:
                    out[f"versus.{a}.{b}.{key[0]}.{key[1]}"] = v.text()
    return out


def render(template: Template, reports: dict[str, Report]) -> str:
    """The page: the template's body with every placeholder replaced; an unknown one is an error."""
    values = _global_facts()
    for name, rep in reports.items():
        values.update(facts(name, rep))
    values.update(_cross_facts(reports))
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template.body)} - set(values))
    if missing:
        raise ValueError(f"{template.path}: no value for {', '.join('{{' + k + '}}' for k in missing[:10])}"
                         + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""))
    body = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template.body)
    source = Path(os.path.relpath(template.path, template.page.parent)).as_posix()
    note = f"<!-- Generated from {source} and the sweep data by `natpg report --page`; edit the template, not this page. -->\n\n"
    return note + body


def render_page(path: str | Path, write: bool = True, plots: bool = True) -> tuple[Path, str, list[Path]]:
    """Render a template: build each set's report (and with ``write``, write its files and the
    page). Returns the page's path, its text and the files written."""
    template = read_template(path)
    reports, files = {}, []
    for name, (dirs, out) in template.sets.items():
        reports[name] = build_report(dirs)
        if write and out is not None:
            files += write_built(reports[name], out, plots)
    text = render(template, reports)
    if write:
        atomic_write_bytes(template.page, text.encode())
        files.append(template.page)
    return template.page, text, files
