"""The documentation site: `docs/build.py` builds it from the notebooks (tutorials at CI's tiny parameters), a real
headless browser (Debian's chromium) renders the front page, an API page and a formula, a broken link fails the build,
and README.md is what the front page makes."""
import importlib.util
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

for mod in ('mkdocs', 'material', 'mkdocstrings', 'mkdocstrings_handlers.python', 'papermill', 'latex2mathml'):
    if importlib.util.find_spec(mod.split('.')[0]) is None:
        pytest.skip(f"the docs extra is not installed ({mod} missing): pip install -e '.[docs]'",
                    allow_module_level=True)

# docs/build.py, under a name of its own (`build` is also the name of PyPA's package)
_spec = importlib.util.spec_from_file_location('tda_docs_build', REPO/'docs'/'build.py')
docs = importlib.util.module_from_spec(_spec); sys.modules[_spec.name] = docs; _spec.loader.exec_module(docs)

WROTE_IN_NBS = []  # files the build created or changed inside nbs/
BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')


def browser():
    exe = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if exe is None:
        pytest.skip("no headless browser on this machine: `apt-get install -y chromium` (Debian) to run this test")
    return exe


def dump_dom(page) -> str:
    "The DOM of `page` after chromium has loaded it and run its scripts."
    r = subprocess.run([browser(), '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=5000',
                        '--dump-dom', page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '<body' in r.stdout, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope='module')
def site(tmp_path_factory, tutorial_runs):
    "The site, built once for this file (the tutorials as conftest ran them, at their tiny parameters)."
    d = tmp_path_factory.mktemp('docs')
    mp = pytest.MonkeyPatch()
    mp.setenv('TDA_DATA_DIR', str(d/'data')); mp.setenv('TDA_RUNS_DIR', str(d/'runs'))
    before = {f: f.stat().st_mtime_ns for f in docs.NBS.rglob('*')}
    try: out = docs.build(d/'site', tiny=True, work=d/'work', quiet=True, executed=tutorial_runs['root'])
    finally: mp.undo()
    WROTE_IN_NBS[:] = sorted(f for f in docs.NBS.rglob('*') if before.get(f) != f.stat().st_mtime_ns)
    return out


def test_site_pages(site, tutorial_runs):
    """A page per notebook under nbdev's names, each with its Markdown beside it, a figure on every tutorial's page;
    nothing written inside nbs/. A tutorial that needs SLURM where none is installed ran without its jobs and drew
    no figure: its page is checked, its figure not (it fails instead where TDA_REQUIRE_SLURM=1, as in CI)."""
    for nb in docs.notebooks()['modules'] + docs.notebooks()['guides']:
        page = docs.page_name(nb)
        assert (site/page).with_suffix('.html').exists() and (site/page).with_suffix('.html.md').exists(), page
    assert (site/'index.html').exists() and (site/'models.hattnet.html').exists()
    without_cluster = []
    for tut in docs.notebooks()['tutorials']:
        html = (site/docs.page_name(tut)).with_suffix('.html').read_text()
        no_slurm = tutorial_runs.get(tut.stem, {}).get('no_slurm')
        if no_slurm and no_slurm[0] == 'skip': without_cluster.append(f"{tut.name}: {no_slurm[1]}"); continue
        assert '<img' in html, f"{tut.name}: no figure on its page"
    assert not WROTE_IN_NBS, f"the build wrote inside nbs/: {WROTE_IN_NBS}"
    if without_cluster: pytest.skip("every page built; no figure checked for " + "; ".join(without_cluster))


def test_docstring_links_resolve(site):
    "Every `Docs:` link nbdev writes into a module docstring names a file of the built site."
    from nbdev.config import get_config
    base = get_config(REPO).doc_url.rstrip('/') + '/'  # this checkout's config, from any working folder
    links = [m.group(1) for f in (REPO/'tda').rglob('*.py')
             for m in re.finditer(r'^Docs: (\S+?)(?:""")?$', f.read_text(), re.M)]
    assert len(links) >= 18
    for url in links:
        assert url.startswith(base), url
        assert (site/url[len(base):]).is_file(), f"{url}: not in the built site"


def test_nbdev_doc_links_resolve(site):
    "Every doc link of nbdev's index (tda/_modidx.py: `core.html#registry.create`) names a page and an anchor."
    import ast
    text = (REPO/'tda'/'_modidx.py').read_text()
    links = [link for syms in ast.literal_eval(text[text.index('{'):])['syms'].values() for link, _ in syms.values()]
    assert len(links) > 400
    ids = {}
    for link in links:
        page, _, anchor = link.partition('#')
        assert (site/page).is_file(), link
        if page not in ids:
            p = docs._Links(); p.feed((site/page).read_text()); ids[page] = p.ids
        assert anchor in ids[page], f"{link}: no such anchor"


def test_index_in_browser(site):
    dom = dump_dom(site/'index.html')
    assert re.search(r'<h1[^>]*>tda', dom)
    assert 'Top-down attention in convolutional networks' in dom
    assert 'href="models.hattnet.html"' in dom and 'href="core.html"' in dom       # the tour links the API pages
    assert 'torch.Size([2, 5])' in dom                                             # the executed cell's output
    assert 'md-code__button' in dom and 'md-code__button' not in (site/'index.html').read_text()  # its scripts ran
    assert re.search(r'<td>MREF</td>\s*<td>HAttNet-CTX</td>', dom)                # Table 1, from the report
    assert re.search(r'<img alt="output" src="index_files/output_\d+.png"', dom)  # and its figure


def test_api_page_in_browser(site):
    dom = dump_dom(site/'models.hattnet.html')
    assert re.search(r'<h1[^>]*>models\.hattnet', dom)
    assert 'id="tda.models.hattnet.HAttNet"' in dom                                # mkdocstrings' entry for the class
    assert 'Progressive attention network of Seo et al.' in dom                    # its docstring
    assert re.search(r'hattnet_ctx</span>\s*<span class="p">\(', dom) or 'hattnet_ctx(' in dom  # a signature
    assert 'md-code__button' in dom


def test_api_page_lists_no_self_assigned_attributes(site):
    "`self.mode = mode` in `__init__` is no API entry (it read `mode = mode`); a dataclass's fields are."
    html = (site/'models.tdan.html').read_text()
    assert 'id="tda.models.tdan.TDAttention"' in html and 'id="tda.models.tdan.TDAttention.mode"' not in html
    assert 'id="tda.core.Settings.data_dir"' in (site/'core.html').read_text()


def test_formula_renders_in_browser(site, tmp_path):
    "A formula of the TDAN page is MathML that chromium lays out as such: a MathMLElement of some size, no `$` left."
    html = (site/'models.tdan.html').read_text()
    assert "X' = X^0" not in html and '<math' in html
    probe = site/'_probe.html'  # the page with a script that writes what the browser made of its first formula
    probe.write_text(html.replace('</body>', """<script>addEventListener('load', () => {
      const m = document.querySelector('article math'), r = m && m.getBoundingClientRect();
      document.body.dataset.math = m ? `${m.constructor.name} ${Math.round(r.width)} ${Math.round(r.height)}` : 'none';
    });</script></body>"""))
    try: dom = dump_dom(probe)
    finally: probe.unlink()
    kind, w, h = re.search(r'data-math="([^"]*)"', dom).group(1).split()
    assert kind == 'MathMLElement' and int(w) > 5 and int(h) > 5, (kind, w, h)


def test_readme_is_made_from_the_front_page(site):
    "README.md and README_files/ are what the executed front page makes (`python docs/build.py --readme`)."
    drift = docs.readme_drift(site.parent/'work'/'readme')
    assert not drift, ("README.md is not what nbs/index.ipynb makes; run `python docs/build.py --readme`:\n"
                       + '\n'.join(drift[:60]))


def test_broken_link_fails(tmp_path, monkeypatch):
    "A link to a notebook that is not a page of the site stops the build (mkdocs --strict)."
    monkeypatch.setattr(docs, 'notebooks', lambda: {'home': [docs.NBS/'index.ipynb'], 'tutorials': [], 'guides': [],
                                                     'modules': [docs.NBS/'00_core.ipynb']})
    with pytest.raises(docs.BuildError, match=r'models\.hattnet|03_models\.hattnet'):
        docs.build(tmp_path/'site', work=tmp_path/'work', quiet=True)


def test_check_links(tmp_path):
    "The crawl of the built HTML finds a missing file and a missing anchor, and accepts the rest."
    (tmp_path/'a.html').write_text('<a href="b.html#x">b</a> <a href="#top">t</a> <img src="c.png"> '
                                   '<a href="https://example.org/">e</a><h1 id="top">A</h1>')
    (tmp_path/'b.html').write_text('<h2 id="y">B</h2> <a href="/docs/a.html">root</a>')
    broken = docs.check_links(tmp_path, base='/docs/')
    assert broken == ['a.html: b.html#x (no such anchor)', 'a.html: c.png (no such file)']
