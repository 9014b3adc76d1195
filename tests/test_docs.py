"""The documentation a user's clone has: every doc the README, code, configs and tools name exists in docs/, and
nothing points outside the repository (at ../shared, which only the tests may read)."""

import re

SOURCES = ("README.md", "INSTALL.md", "slowfast_bmvit", "tools", "configs", "benchmarks")
_DOC = re.compile(r"docs/[\w./-]+?\.md")


def _files(repo_root):
    for source in SOURCES:
        path = repo_root / source
        yield from ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and
                                                          p.suffix in (".py", ".md", ".yaml", ".sbatch", ".txt")))


def test_every_named_doc_exists(repo_root):
    named = {}
    for path in _files(repo_root):
        for match in _DOC.findall(path.read_text(encoding="utf-8", errors="replace")):
            named.setdefault(match, str(path.relative_to(repo_root)))
    assert "docs/DESIGN.md" in named and "docs/DATASETS.md" in named
    missing = {doc: where for doc, where in named.items() if not (repo_root / doc).is_file()}
    assert not missing, f"docs named but absent (doc: first file naming it): {missing}"


def test_nothing_outside_the_tests_points_at_the_shared_folder(repo_root):
    """Nothing a user's clone holds points at ../shared/docs; ../shared/data (the real test clips) may be named as
    example input (the README runs the demo on its vtest.avi), and the benchmarks read it, as the tests do."""
    offenders = [str(path.relative_to(repo_root)) for path in _files(repo_root)
                 if not str(path.relative_to(repo_root)).startswith("benchmarks")
                 and re.search(r"shared/docs|\.\./shared(?!/data/)", path.read_text(errors="replace"))]
    assert not offenders, offenders
