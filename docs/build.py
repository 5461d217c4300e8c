"""Build the documentation site of tda from its notebooks, without Quarto; and make README.md from the front page.

    python docs/build.py                 # the site in _site/; tutorials at CI's tiny parameters (nbs/tutorials/ci.yaml)
    python docs/build.py --full          # tutorials at their own parameters (minutes each), as the published site has
    python docs/build.py --out /tmp/site # somewhere else than _site/
    python docs/build.py --readme        # README.md (and README_files/) from nbs/index.ipynb, nothing else
    python docs/build.py --check-readme  # exit 1 when README.md is not what nbs/index.ipynb makes (CI)

Why this way: nbdev's own `nbdev-docs` and `nbdev-readme` render with Quarto, which is not installable offline (the
published `quarto-cli` package downloads its binary while building; `nbdev-readme` without Quarto fails). MkDocs and
its Material theme are plain Python packages from the package index and build a static site with search;
mkdocstrings reads signatures and docstrings from the generated package statically (griffe), so API pages need no
import and no execution of the module notebooks. What nbdev's notebook processing does for Quarto is done here in a
few lines:

1. `nbs/index.ipynb` and every tutorial (`nbs/tutorials/*.ipynb`) are executed with papermill in a scratch folder
   (never inside nbs/), so their figures are real; an error in a cell fails the build. An executed notebook is kept in
   `<work>/cache/` under a key of everything it depends on (its text, its parameters, the package's source, weights
   and shipped files) and used again while none of that changes.
2. Every notebook becomes one Markdown page (`_docs/src/`): prose as written, code as code, outputs as text,
   tables and PNG files. A module notebook (`#| default_exp`) is not executed: each `#| export` cell is
   replaced by the API documentation of the public names it defines (`::: tda.module.Name`), its examples and
   tests are shown as code, hidden cells are left out. The guides (`nbs/guides/*.ipynb`) are prose. Page names
   follow nbdev's (`01_data.mref.ipynb` -> `data.mref.html`), so the `Docs:` links nbdev writes into every module
   docstring resolve in the built site, where each page also has its Markdown beside it (`data.mref.html.md`,
   signatures and docstrings inline). Links between notebooks (`[x](03_models.hattnet.ipynb)`) become links
   between pages.
3. `mkdocs build --strict` renders the site into `_site/`: a missing page, a link to a missing page or
   anchor, or an API name that does not exist is an error. Formulas (`$...$`) are found by pymdownx.arithmatex and
   written into the pages as MathML (latex2mathml), which browsers render natively: no script, nothing fetched.
   Then every internal `href` and `src` of every built HTML file is checked to point at an existing file (and
   anchor); any broken one fails the build.
4. README.md is the executed front page as GitHub-flavoured Markdown (nbdev's README, with nbdev's own rule for
   links: a link to a notebook becomes a link to its page of the published site); its figures go to README_files/.
"""
from __future__ import annotations

import argparse
import ast
import base64
import difflib
import hashlib
import html
import html.parser
import inspect
import importlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import yaml

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/'nbs'
TUTORIALS = NBS/'tutorials'
GUIDES = NBS/'guides'


class BuildError(Exception):
    "The site cannot be built as it stands: the message names the page or link."


# ---------------------------------------------------------------- which notebooks, which pages
def page_name(nb: Path) -> str:
    "nbdev's page name of a notebook, relative to nbs/: `01_data.mref.ipynb` -> `data.mref.md`."
    rel = nb.relative_to(NBS)
    return rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.md').as_posix()


def notebooks() -> dict[str, list[Path]]:
    "The notebooks of the site, in the order of its navigation."
    return {'home': [NBS/'index.ipynb'], 'tutorials': sorted(TUTORIALS.glob('*.ipynb')),
            'guides': sorted(GUIDES.glob('*.ipynb')), 'modules': sorted(NBS.glob('[0-9]*.ipynb'))}


def ci_parameters() -> dict:
    "The tiny parameters CI runs each tutorial with (`nbs/tutorials/ci.yaml`)."
    f = TUTORIALS/'ci.yaml'
    return (yaml.safe_load(f.read_text()) or {}) if f.exists() else {}


# ---------------------------------------------------------------- executing
def execute(nb: Path, out: Path, parameters: dict | None = None, cwd: Path | None = None) -> Path:
    """Run `nb` top to bottom into `out`, in the scratch folder `cwd`, in a papermill process of its own (so several
    run at once); a failing cell raises `BuildError` naming it. The data and runs it makes go under `cwd`'s parent
    (shared by the notebooks of one build, removed with it), unless TDA_DATA_DIR / TDA_RUNS_DIR say otherwise."""
    cwd = Path(cwd or tempfile.mkdtemp(prefix='tda-docs-run-'))
    cwd.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {'TDA_DATA_DIR': str(cwd.parent/'data'), 'TDA_RUNS_DIR': str(cwd.parent/'runs'), **os.environ}
    r = subprocess.run([sys.executable, '-m', 'papermill', str(nb), str(out), '-y', json.dumps(parameters or {}),
                        '--cwd', str(cwd), '-k', 'python3', '--no-progress-bar', '--no-log-output'],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise BuildError(f"{nb.relative_to(REPO)}: {cell_error(out) or r.stderr.strip()[-2000:]}")
    return out


def cell_error(executed: Path) -> str | None:
    "The failing cell of a notebook papermill stopped on, as `cell N failed: Error: value`; None if there is none."
    try: cells = nbformat.read(str(executed), as_version=4).cells
    except Exception: return None
    for c in cells:
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error': return f"cell {c.get('execution_count')} failed: {o.ename}: {o.evalue}"
    return None


# What an executed notebook depends on besides itself: the package (source, weights) and the files it ships and reads
DEPENDS_ON = ('tda/**/*.py', 'tda/weights/*', 'data_gen/*.yaml', 'configs/*.yaml', 'nbs/experiments/*',
              'bench/results/table1_paper_cpu/*.md', 'bench/results/table1_paper_cpu/*.png')


def inputs_key(nb: Path, parameters: dict) -> str:
    "A key of all an executed `nb` depends on: its text, its `parameters`, the package and its shipped files."
    h = hashlib.sha256(nb.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    for f in sorted({f for pattern in DEPENDS_ON for f in REPO.glob(pattern) if f.is_file()}):
        h.update(f.relative_to(REPO).as_posix().encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:20]


def execute_cached(runs: dict[Path, dict], cache: Path | None, scratch: Path, log, jobs: int = 2) -> dict[Path, Path]:
    """Each notebook of `runs` (notebook: parameters) executed: the copy in `cache` made from the same inputs
    (`inputs_key`), else a new run (`jobs` at once), kept there; older copies of the same notebook are removed."""
    done, todo = {}, {}
    for nb, params in runs.items():
        hit = cache/nb.relative_to(NBS).parent/f"{nb.stem}.{inputs_key(nb, params)}.ipynb" if cache else None
        if hit is not None and hit.is_file():
            log('reusing', nb.relative_to(REPO), '(its inputs have not changed)')
            done[nb] = hit
        else: todo[nb] = hit
    def run(nb):
        log('running', nb.relative_to(REPO), runs[nb] or '')
        ran = execute(nb, scratch/'executed'/nb.relative_to(NBS), runs[nb], scratch/nb.stem)
        if (hit := todo[nb]) is None: return ran
        for old in hit.parent.glob(f"{nb.stem}.*.ipynb"): old.unlink()
        hit.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ran, hit)
        return hit
    with ThreadPoolExecutor(max(1, jobs)) as ex: done.update(zip(todo, ex.map(run, todo)))
    return {nb: done[nb] for nb in runs}


# ---------------------------------------------------------------- notebook -> Markdown
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.*)$')


def directives(src: str) -> tuple[dict[str, str], str]:
    "The `#| key value` lines at the top of a cell, and the source without them."
    lines, d = src.split('\n'), {}
    while lines and _DIRECTIVE.match(lines[0]):
        k, _, v = _DIRECTIVE.match(lines.pop(0)).group(1).strip().partition(' ')
        d[k.rstrip(':')] = v.strip()
    return d, '\n'.join(lines).strip('\n')


def public_names(src: str, module_all: set[str] | None) -> list[str]:
    "The public names an exported cell defines, in order (those in the module's `__all__`; all with None)."
    names = []
    for node in ast.parse(src).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in dict.fromkeys(names) if module_all is None or n in module_all]


def nbdev_anchors(module: str) -> dict[str, list[str]]:
    "The anchors nbdev's index (`tda/_modidx.py`) links on the page of `module`, by the top-level name they belong to."
    text = (REPO/'tda'/'_modidx.py').read_text()
    syms = ast.literal_eval(text[text.index('{'):])['syms'].get(module, {})
    res = {}
    for sym, (link, _) in syms.items():
        res.setdefault(sym[len(module) + 1:].split('.')[0], []).append(link.partition('#')[2])
    return res


def module_all(module: str) -> set[str]:
    "The `__all__` of a generated module, read from its file (nothing is imported)."
    f = REPO/(module.replace('.', '/') + '.py')
    for node in ast.parse(f.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == '__all__' for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


_NB_LINK = re.compile(r'(\]\s*)\(([^)\s#]+\.ipynb)(#[^)\s]*)?\)')


def rewrite_links(text: str, nb: Path, pages: dict[Path, str], page: str) -> str:
    "Links to notebooks become links to their pages, relative to `page`."
    def sub(m):
        target = (nb.parent/unquote(m.group(2))).resolve()
        if target not in pages: return m.group(0)  # left as is: mkdocs --strict reports it
        rel = posixpath.relpath(pages[target], posixpath.dirname(page) or '.')
        return f"{m.group(1)}({rel}{m.group(3) or ''})"
    return _NB_LINK.sub(sub, text)


def render_output(o, page: str, files: list, src_dir: Path) -> str:
    "One output of a code cell as Markdown; a PNG goes into a file beside the page."
    if o.output_type == 'stream':
        return f"```text\n{o.text.rstrip()}\n```" if o.name == 'stdout' and o.text.strip() else ''
    if o.output_type == 'error':
        raise BuildError(f"{page}: an executed cell holds an error: {o.ename}: {o.evalue}")
    data = o.get('data', {})
    if 'application/vnd.jupyter.widget-view+json' in data:
        return '*An interactive widget is shown here when the notebook runs in JupyterLab.*'
    if 'text/markdown' in data: return data['text/markdown']
    if 'image/png' in data:
        stem = Path(page).with_suffix('')
        rel = f"{stem.name}_files/output_{len(files)}.png"
        f = src_dir/stem.parent/rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(base64.b64decode(data['image/png']))
        files.append(f)
        return f"![output]({rel})"
    if 'text/html' in data and '<script' not in data['text/html']:
        return f'<div class="nb-output" markdown="0">\n{data["text/html"].strip()}\n</div>'
    if 'text/plain' in data: return f"```text\n{data['text/plain'].rstrip()}\n```"
    return ''


def notebook_markdown(nb: Path, executed: Path | None, pages: dict[Path, str], src_dir: Path) -> str:
    "The Markdown page of one notebook (the executed copy when there is one, for its outputs)."
    page = pages[nb.resolve()]
    book = nbformat.read(str(executed or nb), as_version=4)
    module, names, anchors, out, files = None, set(), {}, [], []
    for cell in book.cells:
        d, src = directives(cell.source)
        if cell.cell_type == 'code' and 'default_exp' in d:
            module = f"tda.{d['default_exp']}"; names, anchors = module_all(module), nbdev_anchors(module)
        if cell.cell_type == 'markdown':
            out.append(rewrite_links(cell.source, nb, pages, page)); continue
        if cell.cell_type != 'code' or not src or 'default_exp' in d: continue
        if module and {'export', 'exports', 'exporti'} & set(d):
            # the anchors of nbdev's doc links (`core.html#registry.create`) land where the names are defined
            ids = [a for n in public_names(src, None) for a in anchors.pop(n, [])]
            if ids: out.append(' '.join(f'<span id="{a}"></span>' for a in ids))
        if 'hide' in d or 'exporti' in d: continue
        if 'nbdev_export' in src or 'injected-parameters' in cell.get('metadata', {}).get('tags', []): continue
        if module and ('export' in d or 'exports' in d):
            for n in public_names(src, names): out.append(f"::: {module}.{n}")
            if 'exports' not in d: continue
        if d.get('echo') != 'false': out.append(f"```python\n{src}\n```")
        if d.get('output') != 'false':
            out += [r for o in cell.get('outputs', []) if (r := render_output(o, page, files, src_dir))]
    if anchors:
        raise BuildError(f"{page}: nbdev's index names {sorted(anchors)} in {module}, defined in no exported cell")
    return '\n\n'.join(out) + '\n'


# ---------------------------------------------------------------- the Markdown copy of each page (`X.html.md`)
def plain_markdown(md: str) -> str:
    "A page's Markdown with each `::: tda.mod.Name` replaced by its signature and docstring (by import)."
    def api(m):
        mod, _, name = m.group(1).rpartition('.')
        obj = getattr(importlib.import_module(mod), name)
        try: sig = f"{name}{inspect.signature(obj)}" if callable(obj) else f"{name} = {obj!r:.200}"
        except (TypeError, ValueError): sig = name
        doc = inspect.getdoc(obj) if callable(obj) or inspect.isclass(obj) else ''
        return f"### {name}\n\n```python\n{sig}\n```\n\n{doc or ''}".rstrip()
    return re.sub(r'^::: (\S+)$', api, md, flags=re.M)


# ---------------------------------------------------------------- MkDocs
NOTEBOOK_CSS = """/* outputs of notebook cells: pandas tables */
.nb-output { overflow-x: auto; margin: 0 0 1em; }
.nb-output table { border-collapse: collapse; font-size: .7rem; }
.nb-output th, .nb-output td { border: 1px solid var(--md-default-fg-color--lightest); padding: .2em .6em;
                               text-align: right; }
.nb-output thead th { background: var(--md-code-bg-color); }
"""

def config(src_dir: Path, site: Path, nav: list) -> dict:
    "The MkDocs configuration: Material theme, search, mkdocstrings on the generated package, strict links."
    from nbdev.config import get_config
    cfg = get_config()
    return {
        'site_name': 'tda', 'site_description': cfg.description, 'repo_url': cfg.git_url or None,
        'site_url': cfg.doc_url or None,  # pyproject's Documentation URL: where this site is meant to be served
        'docs_dir': str(src_dir), 'site_dir': str(site), 'use_directory_urls': False, 'nav': nav,
        'theme': {'name': 'material', 'features': ['navigation.sections', 'navigation.top', 'content.code.copy'],
                  'palette': {'scheme': 'default', 'primary': 'indigo'}},
        'plugins': ['search', {'mkdocstrings': {'default_handler': 'python', 'handlers': {'python': {
            'paths': [str(REPO)],
            'options': {'heading_level': 3, 'show_root_heading': True, 'show_root_full_path': False,
                        'show_source': True, 'members_order': 'source', 'separate_signature': True,
                        'show_signature_annotations': True, 'docstring_style': None, 'filters': ['!^_'],
                        'show_if_no_docstring': True,
                        'extensions': [f"{REPO/'docs'/'griffe_tda.py'}:DropSelfAssigned"]}}}}}],
        'markdown_extensions': ['tables', 'admonition', 'attr_list', 'md_in_html', 'toc',
                                {'pymdownx.highlight': {'use_pygments': True}}, 'pymdownx.superfences',
                                {'pymdownx.arithmatex': {'generic': True}}],
        'extra_css': ['assets/notebook.css'],
        'validation': {'omitted_files': 'warn', 'absolute_links': 'warn', 'unrecognized_links': 'warn',
                       'anchors': 'warn', 'not_found': 'warn'},
    }


def title_of(nb: Path) -> str:
    "The title of a notebook: its first `# heading`."
    for c in nbformat.read(str(nb), as_version=4).cells:
        if c.cell_type == 'markdown' and (m := re.search(r'^#\s+(.+)$', c.source, re.M)): return m.group(1).strip()
    return nb.stem


# ---------------------------------------------------------------- formulas
_MATH = re.compile(r'<(span|div) class="arithmatex">\\[(\[](.*?)\\[)\]]</\1>', re.S)


def mathml(page: str) -> str:
    "The HTML `page` with each formula pymdownx.arithmatex marked (`\\(...\\)`, `\\[...\\]`) written as MathML."
    from latex2mathml.converter import convert
    def sub(m):
        tex = html.unescape(m.group(2))
        try: return convert(tex, display='block' if m.group(1) == 'div' else 'inline')
        except Exception as e: raise BuildError(f"formula ${tex}$ cannot be written as MathML: {e}") from None
    return _MATH.sub(sub, page)


def write_formulas(site: Path) -> int:
    "Every formula of the built `site` as MathML; the number of pages that have one."
    n = 0
    for f in site.rglob('*.html'):
        text = f.read_text()
        if 'class="arithmatex"' in text:
            f.write_text(mathml(text))
            n += 1
    return n


# ---------------------------------------------------------------- checking the built site
class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for k in ('href', 'src'):
            if a.get(k) is not None and tag in ('a', 'link', 'img', 'script', 'source', 'iframe'):
                self.links.append(a[k])


def check_links(site: Path, base: str = '/') -> list[str]:
    "Every internal href/src of every HTML file in `site` (served at path `base`) that points at no file or anchor."
    parsed = {}
    def parse(f):
        if f not in parsed:
            p = _Links(); p.feed(f.read_text(errors='replace')); parsed[f] = p
        return parsed[f]
    broken = []
    for f in sorted(site.rglob('*.html')):
        for link in parse(f).links:
            u = urlsplit(link)
            if u.scheme or u.netloc or link.startswith(('mailto:', 'data:', 'javascript:')): continue
            path = unquote(u.path)
            if path.startswith('/'):  # served from the root of the host (404.html): the site lives at `base`
                if not path.startswith(base): broken.append(f"{f.relative_to(site)}: {link} (outside {base})"); continue
                target = (site/path[len(base):]).resolve()
            else: target = f if not path else (f.parent/path).resolve()
            if u.path.endswith('/') or target.is_dir(): target = target/'index.html'
            if not target.exists(): broken.append(f"{f.relative_to(site)}: {link} (no such file)"); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in parse(target).ids:
                broken.append(f"{f.relative_to(site)}: {link} (no such anchor)")
    return broken


# ---------------------------------------------------------------- README.md from the front page
README_NOTE = ("<!-- Made from nbs/index.ipynb by `python docs/build.py --readme`: edit the notebook, not this file "
               "(CI checks that the two agree). -->")


def doc_link(target: str) -> str:
    "nbdev's README rule: a link to a notebook (relative to nbs/) becomes a link to its page of the published site."
    from nbdev.config import get_config
    from nbdev.readme_filter import doc_link as nbdev_doc_link
    return nbdev_doc_link(target, get_config(REPO).doc_url, '.')


def readme_markdown(executed: Path, out_dir: Path) -> str:
    """README.md's text from the executed front page `executed`: its prose with links to notebooks made links to the
    published site, its visible code and outputs; a PNG output is written to `out_dir/README_files/`."""
    files, out = [], [README_NOTE]
    for cell in nbformat.read(str(executed), as_version=4).cells:
        d, src = directives(cell.source)
        if 'hide' in d or not src or 'injected-parameters' in cell.get('metadata', {}).get('tags', []): continue
        if cell.cell_type == 'markdown':
            out.append(_NB_LINK.sub(lambda m: f"{m.group(1)}({doc_link(m.group(2) + (m.group(3) or ''))})", src))
            continue
        if cell.cell_type != 'code': continue
        if d.get('echo') != 'false': out.append(f"```python\n{src}\n```")
        if d.get('output') != 'false':
            out += [r for o in cell.get('outputs', []) if (r := render_output(o, 'README.md', files, out_dir))]
    return '\n\n'.join(out) + '\n'


def write_readme(executed: Path, out_dir: Path = REPO) -> list[Path]:
    "README.md and its README_files/ in `out_dir`, made from the executed front page; the files written."
    shutil.rmtree(out_dir/'README_files', ignore_errors=True)
    (out_dir/'README.md').write_text(readme_markdown(executed, out_dir))
    return [out_dir/'README.md', *sorted((out_dir/'README_files').glob('*'))]


def readme_drift(made: Path, repo: Path = REPO) -> list[str]:
    "How the README in `repo` differs from the one made in the folder `made`: a unified diff, and files that differ."
    a, b = (repo/'README.md'), (made/'README.md')
    diff = list(difflib.unified_diff(a.read_text().splitlines() if a.exists() else [], b.read_text().splitlines(),
                                     'README.md (in the repository)', 'README.md (made from nbs/index.ipynb)',
                                     lineterm=''))
    theirs = {f.name: f.read_bytes() for f in sorted((repo/'README_files').glob('*'))}
    ours = {f.name: f.read_bytes() for f in sorted((made/'README_files').glob('*'))}
    diff += [f"README_files/{n}: {'missing' if n not in theirs else 'not made' if n not in ours else 'differs'}"
             for n in sorted(set(theirs) | set(ours)) if theirs.get(n) != ours.get(n)]
    return diff


# ---------------------------------------------------------------- the build
def build(out: Path = REPO/'_site', tiny: bool = True, work: Path = REPO/'_docs', quiet: bool = False,
          executed: Path | None = None, cache: Path | None | bool = True, jobs: int = 2) -> Path:
    """Execute, convert, render and check; returns the site folder. Raises `BuildError` on any broken page or link.

    `tiny`: the tutorials at CI's tiny parameters (else at their own). `executed`: a folder of notebooks already run
    (laid out as in nbs/, e.g. `tutorials/01_mnist_reference.ipynb`); those are used as they are. `cache`: where
    executed notebooks are kept and reused while their inputs do not change (True: `<work>/cache`; None: nowhere).
    `jobs`: notebooks run at once. The README the front page makes lands in `<work>/readme/`."""
    log = (lambda *a: None) if quiet else (lambda *a: print('docs:', *a, flush=True))
    out, work = Path(out).resolve(), Path(work).resolve()
    src_dir, readme_dir = work/'src', work/'readme'
    cache = work/'cache' if cache is True else cache
    for d in (src_dir, readme_dir): shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
    groups = notebooks()
    pages = {nb.resolve(): page_name(nb) for g in groups.values() for nb in g}
    params = ci_parameters() if tiny else {}
    scratch = Path(tempfile.mkdtemp(prefix='tda-docs-'))
    try:
        run_here = groups['home'] + groups['tutorials']
        given = {nb: Path(executed)/nb.relative_to(NBS) for nb in run_here} if executed else {}
        given = {nb: f for nb, f in given.items() if f.is_file()}
        runs = {nb: params.get(nb.stem, {}) for nb in run_here if nb not in given}
        ran_all = {**given, **execute_cached(runs, cache, scratch, log, jobs)}
        for nb in run_here:
            ran = ran_all[nb]
            if nb in groups['home']: write_readme(ran, readme_dir)
            (src_dir/pages[nb.resolve()]).parent.mkdir(parents=True, exist_ok=True)
            (src_dir/pages[nb.resolve()]).write_text(notebook_markdown(nb, ran, pages, src_dir))
        for nb in groups['guides'] + groups['modules']:
            (src_dir/pages[nb.resolve()]).parent.mkdir(parents=True, exist_ok=True)
            (src_dir/pages[nb.resolve()]).write_text(notebook_markdown(nb, None, pages, src_dir))
    finally: shutil.rmtree(scratch, ignore_errors=True)
    (src_dir/'assets').mkdir(exist_ok=True)
    (src_dir/'assets'/'notebook.css').write_text(NOTEBOOK_CSS)
    nav = [{'Home': 'index.md'}]
    for title, group in (('Tutorials', 'tutorials'), ('Guides', 'guides')):
        if groups[group]: nav.append({title: [{title_of(nb): pages[nb.resolve()]} for nb in groups[group]]})
    nav.append({'API': [{title_of(nb): pages[nb.resolve()]} for nb in groups['modules']]})
    cfg_file = work/'mkdocs.yml'
    cfg_file.write_text(yaml.safe_dump(config(src_dir, out, nav), sort_keys=False))
    log('mkdocs build --strict ->', out)
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--clean', '-q', '-f', str(cfg_file)],
                       capture_output=True, text=True, cwd=work)
    if r.returncode != 0:
        raise BuildError("mkdocs build --strict failed:\n" + '\n'.join(l for l in (r.stdout + r.stderr).splitlines()
                                                                     if 'WARNING' in l or 'ERROR' in l or 'Error' in l)
                         or r.stderr[-3000:])
    log('formulas as MathML on', write_formulas(out), 'pages')
    for md in src_dir.rglob('*.md'):  # nbdev's `Docs:` links name `<page>.html.md`
        (out/md.relative_to(src_dir)).with_suffix('.html.md').write_text(plain_markdown(md.read_text()))
    from nbdev.config import get_config
    broken = check_links(out, (urlsplit(get_config().doc_url).path.rstrip('/') or '') + '/')
    if broken: raise BuildError(f"{len(broken)} broken internal links in {out}:\n" + '\n'.join(broken[:50]))
    log('done:', out/'index.html')
    return out


def readme(out_dir: Path = REPO, work: Path = REPO/'_docs', quiet: bool = False) -> list[Path]:
    "Run the front page (or reuse its cached run) and write README.md and README_files/ into `out_dir`."
    log = (lambda *a: None) if quiet else (lambda *a: print('docs:', *a, flush=True))
    scratch = Path(tempfile.mkdtemp(prefix='tda-readme-'))
    index = NBS/'index.ipynb'
    try: return write_readme(execute_cached({index: {}}, Path(work).resolve()/'cache', scratch, log)[index], out_dir)
    finally: shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', type=Path, default=REPO/'_site', help="folder of the built site (default: _site/)")
    ap.add_argument('--full', action='store_true',
                    help="run the tutorials at their own parameters (default: CI's tiny ones, nbs/tutorials/ci.yaml)")
    ap.add_argument('--work', type=Path, default=REPO/'_docs',
                    help="scratch folder: the generated Markdown, the executed notebooks kept (default: _docs/)")
    ap.add_argument('--jobs', type=int, default=2, help="notebooks run at once (default 2)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument('--readme', action='store_true',
                      help="only write README.md (and README_files/) from the front page")
    what.add_argument('--check-readme', action='store_true',
                      help="only check that README.md is what the front page makes (exit 1 and a diff if not)")
    a = ap.parse_args(argv)
    try:
        if a.readme:
            for f in readme(): print(f"wrote {f.relative_to(REPO)}")
        elif a.check_readme:
            made = Path(tempfile.mkdtemp(prefix='tda-readme-check-'))
            try:
                readme(made, a.work, quiet=True)
                drift = readme_drift(made)
            finally: shutil.rmtree(made, ignore_errors=True)
            if drift:
                sys.exit("docs: error: README.md is not what nbs/index.ipynb makes; run `python docs/build.py "
                         "--readme` and commit README.md and README_files/:\n" + '\n'.join(drift[:200]))
            print("docs: README.md is what nbs/index.ipynb makes")
        else: build(a.out, not a.full, a.work, jobs=a.jobs)
    except BuildError as e: sys.exit(f"docs: error: {e}")


if __name__ == '__main__': main()
