"""The docs say only what is true: every command in README.md and docs/*.md is run or checked against the real CLI
(tests/doccheck.py says which and how), `make demo` / `make test` are what the README says they are, commands live
where the check reads them, and every link between the docs lands on a file and a heading that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests import doccheck
from tests.doccheck import ROOT, Checker, Report, doc_commands, doc_files, fenced_blocks, parse_line


@pytest.fixture(scope="module")
def report() -> Report:
    return doccheck.check()


def test_every_command_in_the_docs_runs_or_checks(report: Report) -> None:
    assert not report.problems, "\n".join(report.problems)


def test_every_command_is_either_run_or_checked_once(report: Report) -> None:
    commands = [c.where for path in doc_files() for c in doc_commands(path)]
    assert len(commands) > 40  # the extraction found the docs' blocks (a broken fence reader finds none)
    assert sorted(report.ran + report.static) == sorted(commands)


def test_the_cheap_commands_ran(report: Report) -> None:
    ran = {c.text for path in doc_files() for c in doc_commands(path) if c.where in report.ran}
    assert any(t.startswith(".venv/bin/armed judge --query") for t in ran)
    assert any(t.startswith("armed kb inspect seed") for t in ran)
    assert any(t.startswith("armed-ops capacity") for t in ran)
    if doccheck.find_helm():  # CI installs helm (ops/fetch_helm.sh): the render and KubeRay's rules on it
        assert any("helm template" in t and "kuberay-check" in t for t in ran)


def _demo_recipe() -> list[str]:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    recipe: list[str] = []
    for ln in lines[lines.index("demo: setup") + 1:]:
        if not ln.startswith("\t"):
            break
        recipe.append(ln.strip())
    (command,) = [ln for ln in recipe if not ln.startswith("#")]
    return shlex.split(command.replace("$(BIN)/", ".venv/bin/"))


def test_make_demo_is_the_readme_command_and_prints_what_the_readme_says(report: Report) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    recipe = _demo_recipe()
    (demo,) = [c for c in doc_commands(ROOT / "README.md") if c.segments and list(c.segments[0].argv) == recipe]
    out = report.outputs[demo.where]
    # what "What you get" says the demo prints, in the README's words and in the output's
    claims = ("moderately relevant → \"less relevant\"", "`guideline`", "`less.brand`",
              "`brand_differs_similar_efficacy`")
    assert [c for c in claims if c not in readme] == []
    assert re.search(r"^level:\s+moderately_relevant\s+\(benchmark: less_relevant\)", out, re.M), out
    assert re.search(r"^branch:\s+guideline — less\.brand:", out, re.M), out
    assert re.search(r"^rule:\s+\[brand_differs_similar_efficacy\] cap:moderately_relevant", out, re.M), out
    assert re.search(r"^guideline: less\.brand \(query intent: product\)", out, re.M), out


def test_make_test_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == "make test"
    assert "test" in doccheck._makefile_targets()


PROGRAMS = re.compile(r"^(\$ )?(\.venv/bin/)?(armed|armed-ops|make|helm|kubectl|python3?|curl|flock)( |$)")


def test_commands_live_in_bash_blocks() -> None:
    """A command in a ```sh or unlabelled block would escape the check: commands go in ```bash blocks."""
    for path in doc_files():
        for block in fenced_blocks(path):
            where = f"{path.relative_to(ROOT)}:{block.line}"
            assert block.lang not in ("sh", "shell", "console", "zsh", "shell-session"), where
            if block.lang != "bash":
                assert not [ln for ln in block.lines if PROGRAMS.match(ln.strip())], where


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a # inside a code block is no heading
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_links_between_the_docs_resolve() -> None:
    checked = 0
    for path in doc_files():
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.relative_to(ROOT)}: link to {target}: no such file"
            if anchor:
                assert anchor in _anchors(dest), f"{path.relative_to(ROOT)}: link to {target}: no such heading"
            checked += 1
    assert checked > 20


# The checker itself: a command naming a flag, subcommand, target, module, value or path that does not exist fails.


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker(run=False)


def _problems(checker: Checker, text: str) -> list[str]:
    cmd = parse_line("synthetic.md", 1, text)
    produced: set[str] = set()
    return [p for seg in cmd.segments for p in checker.segment(seg, cmd, produced)[0]]


@pytest.mark.parametrize(("command", "expected"), [
    ("armed judge --query x --product y --jsn", "`armed judge` has no option --jsn"),
    ("armed jugde --query x --product y", "`armed` has no subcommand 'jugde'"),
    ("armed kb inspekt seed", "`armed kb` has no subcommand 'inspekt'"),
    ("armed judge-batch in.jsonl out.jsonl --conc 4", "has no option --conc"),  # argparse would take the prefix
    ("armed bench ... --teacher-predictionz F", "has no option --teacher-predictionz"),
    ("armed distill --dataset D --out O --student tiny [--task relevance|consistenzy]", "invalid choice"),
    ("armed bench --out DIR", "the following arguments are required: --dataset"),
    ("armed-ops capacity --profile l4 --qps many --latency-ms 500 --benchmark ops/objectives.yaml", "invalid float"),
    ("armed-ops tune --prometheus http://p:9090 --objectives ops/no-objectives.yaml", "no such path"),
    ("armed-ops perf --local --profile cpu --out benchmarks/no-such-folder/run", "its folder"),
    (".venv/bin/armed-ops kuberay-chek -", "no subcommand 'kuberay-chek'"),
    ("python -m armed_testing.cli perf --locall", "`armed-ops perf` has no option --locall"),
    ("flock /tmp/l python -m ops.fuzz --url http://127.0.0.1:8000 --out /tmp/f --max-request 5", "--max-request"),
    ("python -m ops.no_such_module", "no such module"),
    ("python -m tests.security.harness --verbose", "takes no flags"),
    ("make no-such-target", "no target 'no-such-target'"),
    ("helm install armed helm/armed --set profile=l4 --set no.such.value=1", "no such value"),
    ("helm template armed helm/nope", "not a chart"),
    ("helm install armed helm/armed -f my-values.yaml", "no such file"),
    ("kubectl apply -k k8s/no-such-overlay", "kustomization.yaml does not exist"),
    ("frobnicate --now", "no checker for `frobnicate`"),
])
def test_a_bad_command_fails(checker: Checker, command: str, expected: str) -> None:
    problems = _problems(checker, command)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("command", [
    "armed bench ... --teacher-predictions F",  # elided: the required --dataset is not asked for
    "armed distill --dataset ... --out DIR --student tiny|CHECKPOINT [--task relevance|consistency] [--lora]",
    "armed kb build --source register:my.jsonl --source tcm-insert-ner:../shared/x@train --install",
    "armed-ops tune --prometheus http://prometheus:9090 [--objectives ops/objectives.yaml] [--apply]",
    "python -m armed_testing.cli --keep-profile-engines perf --local --profile cpu --out benchmarks/perf/$(date +%F)",
    "kubectl apply -k k8s/base",
])
def test_a_good_command_passes(checker: Checker, command: str) -> None:
    assert _problems(checker, command) == []


def test_a_doc_with_bad_commands_fails_when_checked_and_when_run(tmp_path: Path) -> None:
    """End to end on a synthetic doc: extraction, the static check, the runner (a route, a run that fails)."""
    doc = tmp_path / "bad.md"
    doc.write_text("\n".join([
        "# Synthetic", "", "```bash",
        "armed --help                                  # runs",
        "armed judge --query x --product y \\",
        "  --no-such-flag                              # fails statically",
        "curl -s localhost:8000/v1/jugde -d '{}'       # no such route (the runner's check)",
        "armed-ops capacity --profile l4 --qps 1 --latency-ms 500 --benchmark README.md   # parses; fails when run",
        "```", "",
        "```text", "not a command block", "```",
    ]), encoding="utf-8")
    report = doccheck.check([doc])
    text = "\n".join(report.problems)
    assert len(report.problems) == 3, text
    assert f"{doc}:5: armed judge" in text and "has no option --no-such-flag" in text
    assert f"{doc}:7: curl: no gateway route /v1/jugde" in text
    assert f"{doc}:8: " in text  # the run failed: README.md is no benchmark file
    assert report.ran == [f"{doc}:4", f"{doc}:8"]
