#!/usr/bin/env python3
"""Build the compendium's documentation site, offline: `python docs/build.py` (what `make docs`
runs).

nbdev's notebook processing (its directives, `show_doc`, doc links) prepares every page, and Sphinx
with myst-nb renders them into `_site/`. Quarto is not needed (it cannot be installed from the
package registries); `nbs/_quarto.yml` and `nbs/nbdev.yml` stay valid, so `nbdev-docs` also works
where Quarto exists.

Pages (staged as MyST markdown and notebooks under `_proc/site/`):
- `index`: `nbs/index.ipynb`, executed at build time (its table reads `settings.ini`, `figures/`,
  the claims).
- `<paper>/index`: the paper page, generated from the chain's notebooks, `settings.ini`, the config
  dataclass, `figures/<paper>/*.json` (provenance) and `figures/<paper>/claims.json`.
- `<paper>/<name>`: each chain notebook. The executed copy in `runs/default/<paper>/seed-<n>/` when
  the runner left one that is current (same sources, status ok), else the committed source with the
  committed default-scale figures placed after the cells that draw them. A fresh clone has no
  `runs/`, so the site never needs a default-scale run.
- `claims`: the claims ledger of every registered paper.
- `<name>`: each other top-level notebook `nbs/<name>.ipynb`, a guide (`cluster`: running on one).
- `core/index`, `core/<module>`: the API reference of `compendium.core` (nbdev's `show_doc`).
"""

from __future__ import annotations
import argparse
import copy
import json
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

# nbformat, on nbdev's in-memory cells
warnings.filterwarnings("ignore", message="Cell is missing an id field")

DOCS = Path(__file__).resolve().parent
# a verdict's badge colour: the claim badges' classes
VERDICT_CSS = {
    "reproduced": "pass",
    "partly": "partly",
    "not reproduced": "fail",
    "not-checked": "not-checked",
}
ROOT = DOCS.parent
STAGE = ROOT / "_proc" / "site"
DOCTREES = ROOT / "_proc" / "doctrees"
SCALES = ("ci", "default", "paper")
OPS = {"<=": "≤", "<": "<", ">=": "≥", ">": ">", "==": "="}


# ------------------------------------------------------------------------------------ small helpers
def rel(target: Path, page: str) -> str:
    """Path of `target` (a file) relative to the folder
    of the staged page `page` (e.g. 'cobra/index.md')."""
    return Path(os.path.relpath(target, (STAGE / page).parent)).as_posix()


def relpage(doc: str, page: str) -> str:
    "Link from staged page `page` to staged page `doc` (both relative to the stage root)."
    return Path(os.path.relpath(STAGE / doc, (STAGE / page).parent)).as_posix()


def esc(s) -> str:
    "Text safe inside a markdown table cell."
    return str(s).replace("|", "\\|").replace("\n", " ")


def fmt(v, digits=4) -> str:
    "A number in a table: compact, and empty for missing."
    if v is None:
        return ""
    try:
        import math

        if isinstance(v, float) and math.isnan(v):
            return ""
    except TypeError:
        pass
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def fmt_value(v, width=48) -> str:
    "A config value in a table cell (tuples shortened when long)."
    s = repr(v) if not isinstance(v, str) else f'"{v}"'
    if isinstance(v, tuple):
        s = "(" + ", ".join(repr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return s if len(s) <= width else s[: width - 1] + "…"


def slug(text: str) -> str:
    "The anchor myst-parser gives a heading (GitHub style), from the heading's plain text."
    from myst_parser.slugs import github_slugify

    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = (
        re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", text)
        if not re.search(r"\w_\w", text)
        else text
    )
    return github_slugify(text)


def nbdoc_name(stem: str) -> str:
    "The page name nbdev gives a notebook (numeric prefix stripped), e.g. 01_data -> data."
    name = re.sub(r"^\d+[a-zA-Z0-9]*_", "", stem.lower())
    return stem.lower() if name in ("index", "") else name


def md_cell(src: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": src}


def code_src(cell) -> str:
    "A code cell's source without nbdev/quarto directive lines."
    return "\n".join(l for l in src_text(cell).splitlines() if not re.match(r"^\s*#\|", l)).strip(
        "\n"
    )


def src_text(c) -> str:
    return "".join(c["source"]) if isinstance(c["source"], list) else c["source"]


def read_json(p: Path):
    try:
        return json.loads(Path(p).read_text())
    except (OSError, ValueError):
        return None


def plain_nb(nb) -> dict:
    "A fastcore AttrDict notebook as plain JSON-able dicts, without nbdev's private attributes."

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if not k.endswith("_") and k != "has_sd"}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return clean(dict(nb))


# -------------------------------------------------------------------------------- markdown sections
_HEAD = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def items(cells) -> list:
    """A notebook as a flat list of ('h', level, text), ('md',
    text) and ('code', cell) items (headings split out)."""
    res = []
    for c in cells:
        if c["cell_type"] == "code":
            res.append(("code", c))
            continue
        if c["cell_type"] != "markdown":
            continue
        buf, fence = [], False
        for line in src_text(c).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            m = None if fence else _HEAD.match(line)
            if m:
                if "".join(buf).strip():
                    res.append(("md", "\n".join(buf).strip("\n")))
                buf = []
                res.append(("h", len(m.group(1)), m.group(2)))
            else:
                buf.append(line)
        if "".join(buf).strip():
            res.append(("md", "\n".join(buf).strip("\n")))
    return res


def section(its: list, pattern: str, stop_any: bool = False):
    """The items under the first heading matching `pattern`
    (regex, case-insensitive): (heading, items) or None."""
    for i, it in enumerate(its):
        if it[0] == "h" and re.search(pattern, it[2], re.I):
            out = []
            for jt in its[i + 1 :]:
                if jt[0] == "h" and (stop_any or jt[1] <= it[1]):
                    break
                out.append(jt)
            return it[2], out
    return None


def demote(text: str, base: int = 3) -> str:
    "Shift markdown headings in `text` so that none is above level `base`."
    return re.sub(
        r"^(#{1,6})(\s)",
        lambda m: "#" * min(6, max(base, len(m.group(1)) + 1)) + m.group(2),
        text,
        flags=re.M,
    )


def render_items(its: list, base: int = 3, code: bool = False) -> str:
    "Markdown for section items (headings demoted; code cells shown only with `code`)."
    out = []
    for it in its:
        if it[0] == "h":
            out.append("#" * max(base, min(6, it[1] + 1)) + " " + it[2])
        elif it[0] == "md":
            out.append(it[1])
        elif code and code_src(it[1]).strip():
            out.append(f"```python\n{code_src(it[1])}\n```")
    return "\n\n".join(out)


def title_summary(nb: dict) -> tuple[str, str]:
    "A notebook's title (`# ...`) and one-line summary (`> ...`) from its first markdown cell."
    for c in nb["cells"]:
        if c["cell_type"] != "markdown":
            continue
        s = src_text(c)
        t = re.search(r"^#\s+(.+)$", s, re.M)
        d = re.findall(r"^>\s?(.*)$", s, re.M)
        return (t.group(1).strip() if t else ""), " ".join(x.strip() for x in d).strip()
    return "", ""


# ----------------------------------------------------------------------------------------- the site
class Site:
    def __init__(self, root: Path = ROOT):
        os.environ.setdefault("MPLBACKEND", "Agg")
        os.environ.setdefault("COMPENDIUM_ROOT", str(root))
        sys.path.insert(0, str(root))
        from compendium.core.config import papers, read_settings
        from nbdev.config import get_config

        self.root, self.nbs = root, root / "nbs"
        self.papers = papers(root)
        self.settings = read_settings(root)
        cfg = get_config(root)
        self.doc_prefix = (
            (cfg.get("doc_host", "") or "").rstrip("/")
            + "/"
            + (cfg.get("doc_baseurl", "") or "").strip("/")
            + "/"
        )
        self.pages: dict[str, object] = {}  # staged page -> markdown text or notebook dict
        self.srcmap: dict[str, str] = {}  # source notebook path relative to nbs/ -> staged page
        # staged page -> folder of its source (for relative links)
        self.pagesrc: dict[str, Path] = {}
        self.log: list[str] = []
        self.chain_docs = {}  # paper -> [(stem, staged page, title, summary, mode)]

    # --------------------------------------------------------- notebooks through nbdev's processors
    def process(self, nb, kind: str, cwd: Path):
        "Run nbdev's doc processors over the notebook `nb` (fastcore AttrDict) in place."
        from nbdev.process import NBProcessor
        from nbdev import processors as P
        from nbdev.frontmatter import FrontmatterProc

        def rm_defaultexp(cell):
            if cell.cell_type == "code" and "default_exp" in cell.directives_:
                del cell["source"]

        def rm_widgets(cell):
            outs = cell.get("outputs", [])
            cell["outputs"] = [
                o
                for o in outs
                if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
            ]

        if kind == "api":
            procs = [
                FrontmatterProc,
                P.populate_language,
                P.add_show_docs,
                P.strip_ansi,
                P.hide_line,
                P.filter_stream_,
                P.rm_header_dash,
                P.clean_show_doc,
                P.exec_show_docs,
                P.rm_export,
                P.clean_magics,
                P.hide_,
                P.add_links,
                P.add_fold,
                P.mv_exports,
                P.strip_hidden_metadata,
            ]
        else:
            # chain notebooks and the home page: exported
            # code stays visible (the method is the point)
            procs = [
                FrontmatterProc,
                P.populate_language,
                P.strip_ansi,
                P.hide_line,
                P.filter_stream_,
                P.rm_header_dash,
                rm_defaultexp,
                P.clean_magics,
                P.hide_,
                P.add_links,
                P.strip_hidden_metadata,
                rm_widgets,
            ]
        old, env_old = Path.cwd(), os.environ.get("IN_TEST")
        os.chdir(cwd)
        os.environ["IN_TEST"] = "1"
        try:
            NBProcessor(nb=nb, procs=procs, rm_directives="quarto").process()
        finally:
            os.chdir(old)
            if env_old is None:
                os.environ.pop("IN_TEST", None)
            else:
                os.environ["IN_TEST"] = env_old
        return nb

    def to_myst(self, nb, title: str, summary: str, banner: str = "", after_cell=None) -> dict:
        """A processed notebook as a myst-nb notebook: quarto
        directives become cell tags, `asis` output becomes markdown."""
        cells = [md_cell(f"# {title}" + (f"\n\n{{.lead}}\n{summary}" if summary else ""))]
        if banner:
            cells.append(md_cell(banner))
        for c in nb.cells:
            if c.cell_type == "raw":
                continue  # nbdev's frontmatter (title and summary are above)
            d = {
                k.rstrip(":"): (v or "").strip()
                for k, v in (getattr(c, "directives_", None) or {}).items()
            }
            for m in re.finditer(r"^\s*#\|\s*([\w-]+):?\s*(.*?)\s*$", c.get("source") or "", re.M):
                d[m.group(1)] = m.group(2)  # directives the processors added (clean_show_doc)
            if c.cell_type == "markdown":
                cells.append(md_cell(c.source))
                continue
            if d.get("include") == "false":
                continue
            if d.get("output") == "asis":
                md = []
                for o in c.get("outputs", []):
                    v = o.get("data", {}).get("text/markdown") or (
                        o.get("text") if o.get("output_type") == "stream" else None
                    )
                    if v:
                        md.append("".join(v) if isinstance(v, list) else v)
                txt = "\n\n".join(md).strip()
                txt = re.sub(r"^---\s*\n", "", txt)  # show_doc's leading rule
                txt = re.sub(r"(\[source\]\([^)]*\))\{[^}]*\}", r"\1{.showdoc-source}", txt)
                if txt:
                    cells.append(md_cell(txt))
                continue
            src = code_src(c)
            tags = [
                t
                for t in (c.get("metadata", {}).get("tags") or [])
                if t not in ("parameters", "injected-parameters")
            ]
            if d.get("echo") == "false":
                tags.append("remove-input")
            if d.get("output") == "false":
                tags.append("remove-output")
            if "code-fold" in d and d.get("echo") != "false":
                tags.append("hide-input")
            outs = [
                o
                for o in c.get("outputs", [])
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
            if not src.strip() and not outs:
                continue
            if not src.strip():
                tags.append("remove-input")
            cell = {
                "cell_type": "code",
                "metadata": {"tags": sorted(set(tags))} if tags else {},
                "source": src,
                "execution_count": None,
                "outputs": copy.deepcopy(outs),
            }
            cells.append(cell)
            if after_cell:
                cells.extend(after_cell(c.source))
        for i, c in enumerate(cells):
            c["id"] = f"c{i:03d}"
        return {
            "cells": cells,
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python", "pygments_lexer": "ipython3"},
            },
        }

    # ------------------------------------------------------------------ home page
    def home(self):
        from execnb.shell import CaptureShell
        from fastcore.nbio import read_nb

        nb = read_nb(self.nbs / "index.ipynb")
        title, summary = title_summary(nb)
        STAGE.mkdir(parents=True, exist_ok=True)
        old = Path.cwd()
        os.chdir(STAGE)  # figure links are made relative to the page
        try:
            sh = CaptureShell()
            sh.run_all(nb)
        finally:
            os.chdir(old)
        for c in nb.cells:
            for o in c.get("outputs", []):
                if o.get("output_type") == "error":
                    raise RuntimeError(
                        f"nbs/index.ipynb failed: {o.get('ename')}: {o.get('evalue')}"
                    )
        self.process(nb, "chain", self.nbs)
        page = self.to_myst(nb, title or "compendium", summary)
        toc = [
            "```{toctree}\n:hidden:\n:caption: Papers\n\n"
            + "\n".join(f"{p.id}/index" for p in self.papers)
            + "\n```",
            "```{toctree}\n:hidden:\n:caption: Reference\n\n"
            + "\n".join(
                ["claims", *(nbdoc_name(f.stem) for f in self.guide_notebooks()), "core/index"]
            )
            + "\n```",
        ]
        page["cells"].append(md_cell("\n\n".join(toc if self.papers else toc[1:])))
        self.pages["index.ipynb"] = page
        self.pagesrc["index.ipynb"] = self.nbs
        self.srcmap["index.ipynb"] = "index.ipynb"

    # ------------------------------------------------------------------ guides
    def guide_notebooks(self) -> list[Path]:
        "Top-level notebooks but the home page (`nbs/cluster.ipynb`): a page each, in Reference."
        return sorted(f for f in self.nbs.glob("*.ipynb") if f.stem != "index")

    def guides(self):
        from fastcore.nbio import read_nb

        for f in self.guide_notebooks():
            nb = read_nb(f)
            title, summary = title_summary(read_json(f))
            page = f"{nbdoc_name(f.stem)}.ipynb"
            self.srcmap[f.name] = page
            self.pagesrc[page] = self.nbs
            self.process(nb, "chain", self.nbs)
            self.pages[page] = self.to_myst(nb, title or f.stem, summary)

    # ------------------------------------------------------------------ chains
    def executed_copy(self, p, stem: str, src: Path):
        """The runner's executed copy of a chain notebook
        at default scale, when it is current; else None."""
        from compendium.core.artifacts import paths

        run = paths(p.id, "default", self.root, make=False).run  # the committed seed's run folder
        f, st = run / f"{stem}.ipynb", read_json(run / "status.json")
        if not f.exists() or not st:
            return None, None
        ent = {n.get("name"): n for n in st.get("notebooks", [])}.get(stem)
        if not ent or ent.get("status") != "ok":
            return None, None
        ex, sc = read_json(f), read_json(src)
        if not ex or not sc:
            return None, None
        keep = [
            c
            for c in ex["cells"]
            if "injected-parameters" not in (c.get("metadata", {}).get("tags") or [])
        ]
        same = [(c["cell_type"], src_text(c)) for c in keep] == [
            (c["cell_type"], src_text(c)) for c in sc["cells"]
        ]
        return (f, {**st, **ent}) if same else (None, "stale")

    def figure_meta(self, pid: str) -> list[dict]:
        """The chain's committed default-scale figures with their
        provenance, in the order the notebooks draw them."""
        d = self.root / "figures" / pid
        p = next(x for x in self.papers if x.id == pid)
        src = ""
        for nb in p.notebook_paths(self.root):
            j = read_json(nb)
            if j:
                src += "".join(src_text(c) for c in j["cells"])
        figs = []
        for png in d.glob("*.png"):
            prov = read_json(png.with_suffix(".json")) or {}
            pos = src.find(f'"{png.stem}"')
            pos = pos if pos >= 0 else src.find(f"'{png.stem}'")
            figs.append(
                dict(
                    name=png.stem,
                    png=png,
                    svg=png.with_suffix(".svg"),
                    json=png.with_suffix(".json"),
                    prov=prov,
                    order=(pos if pos >= 0 else len(src) + 1, png.stem),
                )
            )
        return sorted(figs, key=lambda f: f["order"])

    def provenance_line(self, prov: dict) -> str:
        "One line of provenance: commit, scale, seed, device, run time, date."
        if not prov:
            return "no provenance recorded"
        c = prov.get("commit", "?") + (" (uncommitted changes)" if prov.get("dirty") else "")
        wall = prov.get("wall_s")
        parts = [
            f"commit `{c}`",
            f"scale `{prov.get('scale', '?')}`",
            f"seed {prov.get('seed', '?')}",
            f"device `{prov.get('device', '?')}`",
        ]
        if wall is not None:
            parts.append(f"run time {wall:.0f} s" if wall >= 10 else f"run time {wall:.1f} s")
        if prov.get("created"):
            parts.append(prov["created"].replace("T", " ").replace("Z", " UTC"))
        return ", ".join(parts)

    def chain(self, p):
        from fastcore.nbio import read_nb

        figs = {f["name"]: f for f in self.figure_meta(p.id)}
        folder = self.nbs / (p.folder or p.id)
        docs = []
        for stem in p.notebooks:
            src = folder / f"{stem}.ipynb"
            page = f"{p.id}/{nbdoc_name(stem)}.ipynb"
            self.srcmap[src.relative_to(self.nbs).as_posix()] = page
            self.pagesrc[page] = folder
            if not src.exists():
                self.log.append(
                    f"{p.id}: {src.relative_to(self.root)} listed in settings.ini does not exist"
                )
                continue
            title, summary = title_summary(read_json(src))
            ex, st = self.executed_copy(p, stem, src)
            if ex:
                nb = read_nb(ex)
                nb.cells = [
                    c
                    for c in nb.cells
                    if "injected-parameters" not in (c.get("metadata", {}).get("tags") or [])
                ]
                mode = "executed"
                banner = (
                    f":::{{note}}\nExecuted by `compendium reproduce {p.id} --scale "
                    f"default` (seed {st.get('seed', 0)}, finished "
                    f"{str(st.get('finished', '?')).replace('T', ' ').replace('Z', ' UTC')}, "
                    f"{st.get('wall_s', 0):.0f} s for this notebook). The source is "
                    f"`nbs/{src.relative_to(self.nbs).as_posix()}`.\n:::"
                )
                after = None
            else:
                nb = read_nb(src)
                mode = "source"
                why = (
                    " (the executed copy in `runs/default/` is older than the source)"
                    if st == "stale"
                    else ""
                )
                banner = (
                    ":::{note}\nThe source of "
                    f"`nbs/{src.relative_to(self.nbs).as_posix()}`, without outputs{why}: "
                    "notebooks are committed clean. Figures are shown from the committed "
                    f"default-scale run (`figures/{p.id}/`). `compendium reproduce {p.id} "
                    "--scale default` executes the chain, and `make docs` then renders "
                    "its outputs here.\n:::"
                )

                def after(source, _page=page):
                    out = []
                    for name in re.findall(
                        r"save_figure\(\s*[\w.]+\s*,\s*[\"']([^\"']+)[\"']", source
                    ):
                        f = figs.get(name)
                        if not f:
                            continue
                        out.append(
                            md_cell(
                                f":::{{figure}} {rel(f['png'], _page)}\n:alt: "
                                f"{name}\n:class: committed-figure\n\n`{name}` "
                                f"(committed): {self.provenance_line(f['prov'])}\n:::"
                            )
                        )
                    return out

            self.process(nb, "chain", folder)
            self.pages[page] = self.to_myst(nb, title or stem, summary, banner, after)
            docs.append((stem, page, title or stem, summary, mode))
        self.chain_docs[p.id] = docs
        self.paper_page(p, figs)

    def config_class(self, p):
        "The chain's configuration dataclass (a ScaledConfig subclass in its package), or None."
        import importlib
        import pkgutil
        import inspect
        from compendium.core.config import ScaledConfig

        try:
            pkg = importlib.import_module(f"compendium.{p.id}")
        except Exception as e:
            self.log.append(f"{p.id}: cannot import compendium.{p.id}: {e}")
            return None
        found = []
        for m in sorted(pkgutil.iter_modules(getattr(pkg, "__path__", [])), key=lambda m: m.name):
            try:
                mod = importlib.import_module(f"compendium.{p.id}.{m.name}")
            except Exception as e:
                self.log.append(f"{p.id}: cannot import compendium.{p.id}.{m.name}: {e}")
                continue
            for _, obj in inspect.getmembers(mod, inspect.isclass):
                if (
                    issubclass(obj, ScaledConfig)
                    and obj is not ScaledConfig
                    and obj.__module__ == mod.__name__
                ):
                    found.append(obj)
        return found[0] if found else None

    def usage(self, p) -> str:
        import dataclasses

        out = [
            "## Usage",
            "Run the chain with the runner (papermill), from the project root:",
            "```bash",
        ]
        for s in SCALES:
            b = p.budgets.get(s)
            where = {
                "ci": f"runs/ci/{p.id}/seed-<n>/",
                "default": f"figures/{p.id}/ (other seeds: runs/default/{p.id}/seed-<n>/)",
                "paper": f"runs/paper/{p.id}/seed-<n>/",
            }[s]
            out += [
                f"# {s} scale: " + (f"budget {b:.0f} s, " if b else "") + f"writes {where}",
                f"compendium reproduce {p.id} --scale {s}",
            ]
        out += [
            "# another seed, and a field of the configuration overridden",
            f"compendium reproduce {p.id} --scale ci --seed 1 --set FIELD=VALUE",
            "```",
            f"Or open the notebooks in `nbs/{p.folder or p.id}/` with `make lab` and run "
            "them in order; the first "
            '(hidden) cell of each holds its parameters, `scale = "ci"`, `seed = 0`, '
            "`overrides = {}`.",
        ]
        cls = self.config_class(p)
        if cls is None:
            out.append("\n*The chain's configuration class could not be read.*")
            return "\n".join(out)
        try:
            from fastcore.docments import docments

            notes = docments(cls) or {}
        except Exception:
            notes = {}
        try:
            cfgs = {s: cls.for_scale(s) for s in SCALES}
        except Exception as e:
            out.append(f"\n*`{cls.__name__}.for_scale` failed: {e}*")
            return "\n".join(out)
        out += [
            "",
            f"Every size comes from `{cls.__module__}.{cls.__name__}`: the field defaults "
            "are the `default` scale, and the presets change some fields at `ci` and "
            "`paper` (in bold).",
            "",
            "| parameter | meaning | ci | default | paper |",
            "|---|---|---|---|---|",
        ]
        for f in dataclasses.fields(cls):
            if f.name in ("scale", "seed"):
                continue
            vals = {s: getattr(c, f.name) for s, c in cfgs.items()}

            def cell(s):
                return (
                    f"**`{esc(fmt_value(vals[s]))}`**"
                    if vals[s] != vals["default"]
                    else f"`{esc(fmt_value(vals[s]))}`"
                )

            out.append(
                f"| `{f.name}` | {esc(notes.get(f.name) or '')} | {cell('ci')} | "
                f"{cell('default')} | {cell('paper')} |"
            )
        return "\n".join(out)

    def paper_page(self, p, figs: dict):
        page = f"{p.id}/index.md"
        self.pagesrc[page] = self.nbs / (p.folder or p.id)
        docs = self.chain_docs.get(p.id, [])
        nbs = {
            stem: read_json(self.nbs / (p.folder or p.id) / f"{stem}.ipynb") for stem in p.notebooks
        }
        its = {stem: items(nb["cells"]) if nb else [] for stem, nb in nbs.items()}
        link = {stem: pg for stem, pg, *_ in docs}
        name, _, sub = p.title.partition(":")
        claims = read_json(self.root / "figures" / p.id / "claims.json")
        L = [f"# {name.strip()}" + (f": {sub.strip()}" if sub else ""), ""]
        facts = [
            f"arXiv [{p.arxiv}](https://arxiv.org/abs/{p.arxiv})" if p.arxiv else "",
            f"chain `nbs/{p.folder or p.id}/`: "
            + " → ".join(f"[{s}]({relpage(link[s], page)})" for s in p.notebooks if s in link),
            self.claim_badges(claims),
            self.verdict_badge(claims),
        ]
        L += ["{.lead}", " · ".join(f for f in facts if f), ""]

        # overview
        L.append("## Overview")
        ov = None
        for stem in p.notebooks:
            ov = section(its[stem], r"\bidea\b|overview", stop_any=True)
            if ov:
                break
        if ov:
            L.append(render_items(ov[1]))
        else:
            first = next(
                (
                    it[1]
                    for stem in p.notebooks
                    for it in its[stem]
                    if it[0] == "md" and not it[1].startswith(">")
                ),
                "",
            )
            L.append(first)
        L += ["", "The chain's notebooks, in order:", ""]
        for stem, pg, title, summary, mode in docs:
            L.append(f"1. [{title}]({relpage(pg, page)}){': ' + summary if summary else ''}")

        # method: the paper's equations, each above the exported code that computes it
        L += ["", "## Method"]
        pairs = []
        for stem in p.notebooks:
            cells, head = (nbs[stem] or {}).get("cells", []), ""
            for i, c in enumerate(cells[:-1]):
                if c["cell_type"] != "markdown":
                    continue
                # the cell cut at its headings
                chunks = re.split(r"^(?=#{1,6}\s)", src_text(c), flags=re.M)
                last = chunks[-1]
                if not re.match(r"#{1,6}\s", last) and len(chunks) == 1 and head:
                    last_head = head
                else:
                    last_head = ""
                for ch in chunks:
                    m = re.match(r"#{1,6}\s+(.+)", ch)
                    if m:
                        head = m.group(1).strip()
                nxt = cells[i + 1]
                if (
                    re.search(r"\$\$|\\begin\{", last)
                    and nxt["cell_type"] == "code"
                    and re.search(r"^\s*#\|\s*export", src_text(nxt), re.M)
                ):
                    pairs.append(
                        (stem, (f"## {last_head}\n" if last_head else "") + last.strip(), nxt)
                    )
        if pairs:
            L.append(
                "The paper's key equations, each right above the exported code that "
                "computes it (from "
                + ", ".join(
                    sorted({f"[{s}]({relpage(link[s], page)})" for s, *_ in pairs if s in link})
                )
                + ")."
            )
            for stem, md, nxt in pairs:
                md = demote(md)
                code = code_src(nxt)
                cls = ":class: long-code\n" if code.count("\n") > 30 else ""
                L += ["", md, "", f"```{{code-block}} python\n{cls}{code}\n```"]
        else:
            L.append(
                "*No equation cell above exported code was found in this chain's "
                "notebooks; see the notebooks.*"
            )

        L += ["", self.usage(p)]

        # results beside the paper
        L += ["", "## Results", "", self.verdict_block(claims), ""]
        rob = self.robustness_line(p.id)
        if rob:
            L += [rob, ""]
        L.append(self.claims_table(p, claims))
        for stem in reversed(p.notebooks):
            bs = section(
                its[stem],
                r"beside the paper|paper'?s (reported )?numbers|compared? (with|to) the "
                r"paper|vs\.? the paper",
            )
            if not bs:
                continue
            L += ["", f"### {bs[0]}", "", render_items(bs[1], base=4)]
            ex = self.chain_docs_mode(p.id, stem) == "executed" and self.pages.get(link.get(stem))
            if ex:
                L.append(self.section_outputs(self.pages[link[stem]], bs[0]))
            L.append(f"\nFrom [{stem}]({relpage(link[stem], page)})." if stem in link else "")
            break

        # deviations
        L += ["", "## Deviations from the paper"]
        devs = [(stem, section(its[stem], r"deviation")) for stem in p.notebooks]
        devs = [(s, d) for s, d in devs if d]
        if devs:
            for stem, (head, body) in devs:
                L += [
                    "",
                    render_items(body, base=4),
                    f"\n*(from [{stem}]({relpage(link[stem], page)}))*" if stem in link else "",
                ]
        else:
            L.append("*The chain's notebooks list no deviations.*")

        # figures with provenance
        L += ["", "## Figures", ""]
        if figs:
            L.append(
                f"The committed default-scale figures in `figures/{p.id}/`, each with the "
                "provenance of the run that drew it."
            )
            caps = self.figure_captions(nbs, p)
            for f in figs.values():
                prov = f["prov"]
                cap_title, cap_text = caps.get(f["name"], ("", ""))
                dl = " · ".join(
                    x
                    for x in [
                        f"{{download}}`SVG <{rel(f['svg'], page)}>`" if f["svg"].exists() else "",
                        f"{{download}}`provenance JSON <{rel(f['json'], page)}>`"
                        if f["json"].exists()
                        else "",
                    ]
                    if x
                )
                nbl = prov.get("notebook", "")
                nb_stem = Path(nbl).stem if nbl else ""
                nb_link = (
                    f"[{nb_stem}]({relpage(link[nb_stem], page)})"
                    if nb_stem in link
                    else (f"`{nbl}`" if nbl else "")
                )
                vers = prov.get("versions") or {}
                vs = ", ".join(
                    f"{k} {v}"
                    for k, v in vers.items()
                    if k in ("python", "torch", "numpy", "transformers")
                )
                L += [
                    f"### {cap_title or f['name']}",
                    "",
                    f":::{{figure}} {rel(f['png'], page)}\n:alt: {f['name']}\n:name: "
                    f"fig-{p.id}-{f['name']}\n\n`{f['name']}`"
                    + (f" from {nb_link}" if nb_link else "")
                    + f": {self.provenance_line(prov)}.\n:::",
                    "",
                ]
                if cap_text:
                    L += [cap_text, ""]
                extra = [x for x in [f"versions: {vs}" if vs else "", dl] if x]
                if extra:
                    L += ["{.provenance}", " · ".join(extra), ""]
        else:
            L.append(
                "*No default-scale figures are committed yet: `compendium reproduce "
                f"{p.id} --scale default` writes them to `figures/{p.id}/`.*"
            )

        L += [
            "",
            "```{toctree}\n:hidden:\n\n" + "\n".join(Path(pg).stem for _, pg, *_ in docs) + "\n```",
            "",
        ]
        self.pages[page] = "\n".join(L)

    def chain_docs_mode(self, pid, stem):
        return next((m for s, _, _, _, m in self.chain_docs.get(pid, []) if s == stem), None)

    @staticmethod
    def first_words(md: str) -> str:
        t = re.sub(r"\$\$.*?\$\$", "", md, flags=re.S).strip().split(".")[0]
        return (t[:60] + "…") if len(t) > 60 else (t or "Equation")

    def figure_captions(self, nbs: dict, p) -> dict:
        """For each figure name: the heading and the text
        of the markdown above the cell that saves it."""
        caps = {}
        for stem in p.notebooks:
            head, text = "", ""
            for c in (nbs[stem] or {}).get("cells", []):
                s = src_text(c)
                if c["cell_type"] == "markdown":
                    m = re.search(r"^#{1,6}\s+(.+)$", s, re.M)
                    if m:
                        head, text = (
                            m.group(1).strip(),
                            re.sub(r"^#{1,6}\s+.+$", "", s, flags=re.M).strip(),
                        )
                    else:
                        text = (text + "\n\n" + s).strip()
                    continue
                for name in re.findall(r"save_figure\(\s*[\w.]+\s*,\s*[\"']([^\"']+)[\"']", s):
                    caps.setdefault(name, (head, text))
        return caps

    def section_outputs(self, nbpage: dict, heading: str) -> str:
        """The outputs (tables) of the code cells under `heading`
        in a staged executed notebook, as raw HTML/markdown."""
        out, inside = [], False
        for c in nbpage["cells"]:
            if c["cell_type"] == "markdown":
                hs = [m.group(2) for m in (_HEAD.match(l) for l in src_text(c).splitlines()) if m]
                if hs:
                    inside = any(h.strip() == heading.strip() for h in hs)
                continue
            if not inside:
                continue
            for o in c.get("outputs", []):
                d = o.get("data", {})
                if "text/html" in d:
                    h = (
                        "".join(d["text/html"])
                        if isinstance(d["text/html"], list)
                        else d["text/html"]
                    )
                    out.append(
                        '```{raw} html\n<div class="nb-output-table">\n' + h + "\n</div>\n```"
                    )
                elif "text/markdown" in d:
                    out.append(
                        "".join(d["text/markdown"])
                        if isinstance(d["text/markdown"], list)
                        else d["text/markdown"]
                    )
        return "\n\n".join(out)

    # ------------------------------------------------------------------ claims
    @staticmethod
    def badge(status: str, text: str = "") -> str:
        return f'<span class="badge {status}">{text or status}</span>'

    def claim_badges(self, claims) -> str:
        if not claims:
            return self.badge("not-run", "claims: not run at default scale")
        from collections import Counter

        n = Counter(c.get("status", "?") for c in claims.get("claims", []))
        return " ".join(
            self.badge(s, f"{n[s]} {s}") for s in ("pass", "fail", "not-checked") if n[s]
        ) or self.badge("not-run", "no claims")

    def verdict_badge(self, claims) -> str:
        v = (claims or {}).get("verdict") or {}
        st = v.get("outcome")
        return (
            self.badge(VERDICT_CSS.get(st, "not-run"), f"verdict: {st or 'none'}") if claims else ""
        )

    def verdict_block(self, claims) -> str:
        "The verdict on the paper's headline, in words, above the claims table."
        v = (claims or {}).get("verdict")
        if not v:
            return "*This chain's claims carry no verdict on the paper's headline yet.*"
        ids = ", ".join(v.get("claims", []))
        comp = ", ".join(v.get("companions", []))
        return (
            f"**Verdict: {esc(v.get('outcome'))}** {self.verdict_badge(claims)}. "
            f"*The paper's headline:* {esc(v.get('headline', ''))} "
            f"*Our evidence:* {esc(v.get('why', ''))} "
            + (
                f"*Caveat (caps the verdict at partly):* {esc(v['caveat'])} "
                if v.get("caveat")
                else ""
            )
            + f"(judged from {ids}"
            + (f"; companions {comp}" if comp else "")
            + ": reproduced when "
            "every headline claim holds, partly when some or only their companions hold, not "
            "reproduced otherwise.)"
        )

    def robustness_line(self, pid: str) -> str:
        "The sweep over seeds, in one line (empty without a committed sweep)."
        from compendium.core.sweep import robustness_summary

        line = robustness_summary(pid, "default", self.root, self.root)
        return (
            f"**Over seeds** (the committed sweep, figure `robustness` below): {esc(line)}."
            if line
            else ""
        )

    def claims_table(self, p, claims) -> str:
        if not claims:
            return (
                f"*No default-scale claims are committed yet: `compendium reproduce {p.id} "
                f"--scale default` writes `figures/{p.id}/claims.json`.*"
            )
        L = [
            "The claims of this paper, checked by the default-scale run "
            f"({self.provenance_line(claims)}):",
            "",
            "| claim | statement | measured | target | tolerance | status |",
            "|---|---|---|---|---|---|",
        ]
        for c in claims.get("claims", []):
            L.append(
                f"| {esc(c.get('id'))} | {esc(c.get('statement', ''))} | "
                f"{fmt(c.get('measured'))} | {OPS.get(c.get('op'), esc(c.get('op', '')))} "
                f"{fmt(c.get('target'))} | {fmt(c.get('tolerance'))} | "
                f"{self.badge(c.get('status', '?'))} |"
            )
        return "\n".join(L)

    def ledger_page(self):
        from compendium.core.claims import ledger, verdicts

        page = "claims.md"
        L = [
            "# Claims ledger",
            "",
            "{.lead}",
            "Every claim of every registered paper, as checked by its committed "
            "default-scale run (`figures/<paper>/claims.json`). A claim is `measured op "
            "target`, with the tolerance in the claim's favour; its status is pass, fail, "
            "or not checked (the claim does not apply at that scale).",
            "",
        ]
        ver = verdicts("default", root=self.root, registry_root=self.root)
        L += [
            "## Verdicts",
            "",
            "Whether each chain reproduces its paper's headline (judged from the headline claims' "
            "natural readings), beside its claim count.",
            "",
            "| paper | verdict | claims | the paper's headline | our evidence |",
            "|---|---|---|---|---|",
        ]
        for _, r in ver.iterrows():
            L.append(
                f"| [{r.paper}]({relpage(r.paper + '/index.md', page)}) | "
                f"{self.badge(VERDICT_CSS.get(r.verdict, 'not-run'), r.verdict)} | "
                f"{esc(r.claims)} | "
                f"{esc(r.headline)} | {esc(r.evidence)} |"
            )
        L += ["", "## Claims", ""]
        df = ledger("default", root=self.root, registry_root=self.root)
        counts = df.status.value_counts().to_dict()
        L.append(
            "**Summary:** "
            + " ".join(
                self.badge(s, f"{counts[s]} {s}")
                for s in ("pass", "fail", "not-checked", "not-run", "corrupt")
                if counts.get(s)
            )
            + f" across {len(self.papers)} paper{'s' if len(self.papers) != 1 else ''}."
        )
        L += [
            "",
            "| paper | claim | statement | measured | target | tolerance | status | run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in self.papers:
            meta = read_json(self.root / "figures" / p.id / "claims.json") or {}
            rows = df[df.paper == p.id]
            plink = f"[{p.id}]({relpage(p.id + '/index.md', page)})"
            for _, r in rows.iterrows():
                if r.status in ("not-run", "corrupt"):
                    L.append(
                        f"| {plink} | | "
                        f"*{'no default-scale run committed yet' if r.status == 'not-run' else 'claims.json is unreadable'}* "  # noqa: E501
                        f"| | | | {self.badge(r.status)} | |"
                    )
                    continue
                run = (
                    f"`{meta.get('commit', r.commit) or '?'}`{' (dirty)' if meta.get('dirty') else ''}, "  # noqa: E501
                    f"seed {meta.get('seed', r.seed)}, {str(meta.get('created', ''))[:10]}"
                )
                L.append(
                    f"| {plink} | {esc(r.id)} | {esc(r.statement)} | {fmt(r.measured)} | "
                    f"{OPS.get(r.op, esc(r.op))} {fmt(r.target)} | {fmt(r.tolerance)} | "
                    f"{self.badge(r.status)} | {run} |"
                )
        # the committed sweeps: each claim over seeds
        from compendium.core.sweep import robustness, robustness_summary

        rob = robustness("default", self.root, self.root)
        swept = [
            p for p in self.papers if robustness_summary(p.id, "default", self.root, self.root)
        ]
        if swept:
            L += [
                "",
                "## Over seeds",
                "",
                "Each swept paper's claims over the seeds of its committed default-scale sweep "
                "(`compendium reproduce <paper> --seeds 0-4`, kept in "
                "`figures/<paper>/robustness.json`): how often each holds, with a 95% Wilson "
                "interval, and the median and 5th–95th percentile of the measured value.",
                "",
            ]
            for p in swept:
                line = robustness_summary(p.id, "default", self.root, self.root)
                L.append(f"- [{p.id}]({relpage(p.id + '/index.md', page)}): {esc(line)}")
            L += [
                "",
                "| paper | claim | seeds | holds | pass rate [95% CI] | measured: median [5–95%] "
                "| target |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in rob[rob.paper.isin([p.id for p in swept])].itertuples():
                rate = f"{r.rate:.0%} [{r.lo:.0%}, {r.hi:.0%}]" if r.checked else "not checked"
                L.append(
                    f"| {esc(r.paper)} | {esc(r.id)} | {r.seeds} | {r.holds}/{r.checked} | {rate} "
                    f"| {fmt(r.median)} [{fmt(r.p5)}, {fmt(r.p95)}] | "
                    f"{OPS.get(r.op, esc(r.op))} {fmt(r.target)} |"
                )
        # local runs at the other scales (not committed: only where this machine ran them)
        for scale in ("paper", "ci"):
            d = ledger(scale, root=self.root, registry_root=self.root)
            d = d[~d.status.isin(["not-run"])]
            if d.empty:
                continue
            L += [
                "",
                f"## Local runs at scale `{scale}`",
                "",
                f"From `runs/{scale}/<paper>/seed-<n>/figures/claims.json` (the committed "
                "seed) on the machine that built these pages (not committed)."
                + (
                    " At `ci` scale the claims are recorded but not checked."
                    if scale == "ci"
                    else ""
                ),
                "",
                "| paper | claim | measured | target | status |",
                "|---|---|---|---|---|",
            ]
            for _, r in d.iterrows():
                L.append(
                    f"| {esc(r.paper)} | {esc(r.id)} | {fmt(r.measured)} | "
                    f"{OPS.get(r.op, esc(r.op))} {fmt(r.target)} | {self.badge(r.status)} |"
                )
        self.pages[page] = "\n".join(L) + "\n"

    # ------------------------------------------------------------------ API reference
    def api(self):
        from fastcore.nbio import read_nb

        core = sorted((self.nbs / "core").glob("*.ipynb"))
        L = [
            "# API reference: `compendium.core`",
            "",
            "{.lead}",
            "The small library every chain shares, one module per notebook in `nbs/core/`. "
            "Each page is the module's notebook: the prose, the signatures and docstrings "
            "(`show_doc`), and the examples that test it.",
            "",
            "| module | what it does |",
            "|---|---|",
        ]
        docs = []
        for f in core:
            nb = read_nb(f)
            title, summary = title_summary(read_json(f))
            m = re.search(
                r"^\s*#\|\s*default_exp\s+(\S+)",
                "\n".join(c.source for c in nb.cells if c.cell_type == "code"),
                re.M,
            )
            mod = f"compendium.{m.group(1)}" if m else f.stem
            page = f"core/{nbdoc_name(f.stem)}.ipynb"
            self.srcmap[f.relative_to(self.nbs).as_posix()] = page
            self.pagesrc[page] = f.parent
            try:
                self.process(nb, "api", f.parent)
            except Exception as e:
                self.log.append(
                    f"API page {f.name}: show_doc processing failed ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:200]}); showing the notebook without it"
                )
                nb = read_nb(f)
                self.process(nb, "chain", f.parent)
            self.pages[page] = self.to_myst(nb, f"`{mod}`", summary)
            docs.append(page)
            L.append(f"| [`{mod}`]({relpage(page, 'core/index.md')}) | {esc(summary)} |")
        L += [
            "",
            "```{toctree}\n:hidden:\n\n" + "\n".join(Path(d).stem for d in docs) + "\n```",
            "",
        ]
        self.pages["core/index.md"] = "\n".join(L)

    # ------------------------------------------------------------------ links
    def anchors(self) -> dict:
        "The heading anchors of every staged page."
        res = {}
        for page, content in self.pages.items():
            texts = (
                [content]
                if isinstance(content, str)
                else [src_text(c) for c in content["cells"] if c["cell_type"] == "markdown"]
            )
            res[page] = {slug(it[2]) for t in texts for it in items([md_cell(t)]) if it[0] == "h"}
        return res

    def fix_links(self):
        """Point nbdev's doc links and links to source
        notebooks at the staged pages (offline, relative)."""
        from nbdev.config import nbpath2html

        html = {nbpath2html(Path(s)).as_posix(): pg for s, pg in self.srcmap.items()}
        anchors = self.anchors()

        def fix(target: str, page: str) -> str:
            t, _, anchor = target.partition("#")
            dest = None
            if self.doc_prefix != "/" and t.startswith(self.doc_prefix):
                dest = html.get(t[len(self.doc_prefix) :].removesuffix(".md"))
            elif t.endswith(".ipynb") and "://" not in t and page in self.pagesrc:
                srcp = os.path.normpath(self.pagesrc[page] / t)
                try:
                    dest = self.srcmap.get(Path(srcp).relative_to(self.nbs).as_posix())
                except ValueError:
                    dest = None
            if not dest:
                return target
            a = slug(anchor) if anchor else ""
            return relpage(dest, page) + (f"#{a}" if a and a in anchors.get(dest, ()) else "")

        link = re.compile(r"(\]\()([^)\s]+)(\))")

        def sub(text, page):
            return link.sub(lambda m: m.group(1) + fix(m.group(2), page) + m.group(3), text)

        for page, content in self.pages.items():
            if isinstance(content, str):
                self.pages[page] = sub(content, page)
                continue
            for c in content["cells"]:
                if c["cell_type"] == "markdown":
                    c["source"] = sub(src_text(c), page)
                for o in c.get("outputs", []):
                    d = o.get("data", {})
                    if "text/markdown" in d:
                        v = d["text/markdown"]
                        d["text/markdown"] = sub("".join(v) if isinstance(v, list) else v, page)

    # ------------------------------------------------------------------ write and render
    def write(self):
        STAGE.mkdir(parents=True, exist_ok=True)
        keep = set()
        for page, content in self.pages.items():
            f = STAGE / page
            keep.add(f)
            txt = (
                content
                if isinstance(content, str)
                else json.dumps(content, indent=1, ensure_ascii=False)
            )
            if not f.exists() or f.read_text() != txt:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(txt)
        for f in list(STAGE.rglob("*")):
            if f.is_file() and f not in keep:
                f.unlink()

    def build(self):
        self.home()
        self.guides()
        for p in self.papers:
            self.chain(p)
        self.ledger_page()
        self.api()
        self.fix_links()
        self.write()


def sphinx(out: Path, strict: bool = False, quiet: bool = True) -> int:
    from sphinx.cmd.build import build_main

    args = ["-b", "html", "-c", str(DOCS), "-d", str(DOCTREES), str(STAGE), str(out)]
    if quiet:
        args.insert(0, "-q")
    if strict:
        args[:0] = ["-W", "--keep-going"]
    return build_main(args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_site"), help="output folder (default: _site/)")
    ap.add_argument(
        "--clean",
        action="store_true",
        help="rebuild every page (drop Sphinx's cache and the staged pages)",
    )
    ap.add_argument("--strict", action="store_true", help="fail on any Sphinx warning")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.clean:
        for d in (STAGE, DOCTREES, Path(args.out)):
            shutil.rmtree(d, ignore_errors=True)
    site = Site()
    site.build()
    for line in site.log:
        print(f"docs: warning: {line}", file=sys.stderr)
    t1 = time.time()
    rc = sphinx(Path(args.out), args.strict)
    print(
        f"docs: {len(site.pages)} pages staged in {t1 - t0:.1f}s, rendered in "
        f"{time.time() - t1:.1f}s -> "
        f"{Path(args.out).resolve().relative_to(ROOT) if Path(args.out).resolve().is_relative_to(ROOT) else args.out}/index.html"  # noqa: E501
        + ("" if rc == 0 else f" (sphinx exit code {rc})")
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
