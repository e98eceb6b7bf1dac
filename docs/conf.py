# Sphinx configuration of the compendium's docs site; `python
# docs/build.py` stages the pages and runs Sphinx with it.
import importlib.util
from pathlib import Path

project = "compendium"
author = "compendium developers"
copyright = "compendium developers, Apache-2.0"

extensions = ["myst_nb"]

# myst-nb writes notebook output files beside the output
# folder (`<out>/../jupyter_execute`); keep them under _proc/
import myst_nb.sphinx_ext

myst_nb.sphinx_ext.OUTPUT_FOLDER = str(
    Path(__file__).resolve().parents[1] / "_proc" / "jupyter_execute"
)
exclude_patterns = ["**.ipynb_checkpoints", "_build"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

# MyST: $math$, $$display$$ and amsmath environments; {.class} attributes; ::: fences; <img> tags
myst_enable_extensions = [
    "dollarmath",
    "amsmath",
    "attrs_inline",
    "attrs_block",
    "colon_fence",
    "html_image",
]
myst_heading_anchors = 4
myst_dmath_double_inline = True

# notebooks: never executed by Sphinx (docs/build.py stages executed copies or the sources)
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True
nb_render_markdown_format = "myst"

# MathJax served from the site itself (no CDN at view time):
# the parts that tex-chtml needs (the TeX input and its
# autoloaded extensions, the CHTML output and its fonts,
# the menu and the accessibility parts it may load), copied
# from the `sphinx-mathjax-offline` package (MathJax
# 3.2) into _proc/ and published as _static/mathjax/
_mj = importlib.util.find_spec("sphinx-mathjax-offline")
if _mj is None:
    raise RuntimeError(
        "the docs need the `sphinx-mathjax-offline` package (MathJax for offline pages)"
    )
_MJ_SRC = Path(_mj.origin).parent / "static" / "mathjax"
_MJ = Path(__file__).resolve().parents[1] / "_proc" / "mathjax"
if not (_MJ / "mathjax" / "tex-chtml.js").exists():
    import shutil

    for part in ["tex-chtml.js", "input/tex", "input/mml", "output/chtml", "ui", "a11y", "sre"]:
        src, dst = _MJ_SRC / part, _MJ / "mathjax" / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dst, dirs_exist_ok=True) if src.is_dir() else shutil.copy2(src, dst))
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "furo"
html_title = "compendium"
html_static_path = ["_static", str(_MJ)]
html_css_files = ["site.css"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {"navigation_with_keys": True, "top_of_page_buttons": []}
html_favicon = "_static/favicon.svg"
