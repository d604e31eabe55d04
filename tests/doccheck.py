"""The docs' commands, kept true: every command in a ```bash block of README.md and docs/*.md is run, or checked
against the real thing it names (docs/development.md, "The docs' commands"; tests/test_docs.py runs this in CI).

A command is read one logical line at a time (`\\` continues it, `#` starts a comment) and split as the shell would
at `|`, `||`, `&&`, `;` and the redirects `>`, `>>`, `<`. Doc conventions: `[...]` marks an optional part (its
flags are checked, the command is never run), `a|b` inside a word lists alternatives (each one is checked), and `...`
or `…` is a placeholder where a value goes or, standing alone, elided arguments (the parser's required-argument check
is then skipped, never the check that each flag exists).

Static checks (what needs a GPU, a cluster, a live stack, the shared data or minutes):
- `armed` / `armed-ops` (also as `.venv/bin/...` or `python -m armed.cli|ops.cli`): the subcommand exists, every
  flag is spelt exactly as the real argparse parser declares it (argparse itself would accept an abbreviation), and
  the parser accepts the whole command line (choices, typed values);
- `python -m M`: M's module spec exists; where M builds an argparse parser, `python -m M --help` (run) lists every
  flag the command uses, else M is imported; `python -m armed_testing.cli` / `ops.fuzz` are parsed by the product
  parsers they pass their arguments to;
- `make T`: T is a target of the Makefile; `helm install|upgrade|template`: the chart exists and every `--set` key is
  a value of its values.yaml; `kubectl apply -k|-f`: the kustomization / file exists; `curl`: the URL's path is a
  route of the gateway, and a `/v1/judge` body validates as its request model;
- every word that starts with a folder of this repository and names a path: it exists (or is git-ignored, i.e.
  generated), or, as an output, its parent folder exists; a file a command reads that an earlier command of the same
  doc writes counts as existing.

Run (in a scratch folder whose entries link to the repository's, `ARMED_CACHE_DIR` an empty temp dir, so the seed is
the knowledge base and outputs stay out of the tree): any `--help`; `armed judge` without images; `armed kb inspect
seed`, `armed kb lookup TEXT --kb seed`; `armed serve-config`; `armed-ops capacity`, `render-values` (not
`--write-chart`) and `kuberay-check`; `helm template` where helm is installed (`ops/fetch_helm.sh`, as CI does);
`cp` / `sed` writing a plain file name in the scratch folder; `helm install|upgrade` rendered (never applied) through
`helm template` with the same arguments where helm is installed. A pipeline runs when every part of it may.

`python -m tests.doccheck [FILE.md ...]` prints what it ran and every problem (exit 1 on any).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "armed"

ELLIPSIS = ("...", "…")
OPERATORS = ("|", "||", "&&", ";")
REDIRECTS = (">", ">>", "<")
OUTPUT_DESTS = frozenset({"out", "output"})  # argparse dests that name what a command writes
# The subcommand paths that are cheap, offline and write nothing outside the scratch folder: these run.
RUN_ARMED = {("judge",), ("kb", "inspect"), ("kb", "lookup"), ("serve-config",)}
RUN_OPS = {("capacity",), ("render-values",), ("kuberay-check",)}
SHELL_TOOLS = ("cp", "sed")  # run when they write a plain file name in the scratch folder
NO_CHECK = ("jq",)  # reads stdin only: nothing of armed's to check
HELM_APPLY_ONLY = ("--create-namespace", "--install", "--wait", "--atomic")  # dropped when an install is rendered


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ---------------------------------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Block:
    doc: Path
    lang: str
    line: int  # of the opening fence, 1-based
    lines: tuple[str, ...]


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def fenced_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j].lstrip())
            j += 1
        blocks.append(Block(path, lang, i + 1, tuple(body)))
        i = j + 1
    return blocks


@dataclass(frozen=True)
class Segment:
    """One simple command of a line: its words, and where its stdout goes / stdin comes from."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    stdout_to: str | None = None
    stdin_from: str | None = None


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository
    line: int
    text: str  # as written, continuations joined
    segments: tuple[Segment, ...]
    optional: bool  # had [...] parts: checked, never run

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def _prepass(text: str) -> tuple[str, bool]:
    """Drops comments and the [ ] of optional parts, and stands in for $(...), all outside quotes."""
    out: list[str] = []
    quote: str | None = None
    optional = False
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == quote:
                quote = None
            i += 1
            continue
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if c in "'\"":
            quote = c
            out.append(c)
        elif c == "#" and before.isspace():
            break
        elif c == "$" and after == "(":
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append("SUBST")
            i = j
        elif c == "[" and before.isspace():
            optional = True
            out.append(" ")
        elif c == "]" and after.isspace():
            optional = True
            out.append(" ")
        else:
            out.append(c)
        i += 1
    return "".join(out), optional


def parse_line(doc: str, line: int, text: str) -> Command:
    cleaned, optional = _prepass(text)
    words = shlex.split(cleaned)
    segments: list[Segment] = []
    cur: list[str] = []
    env: list[tuple[str, str]] = []
    out_to = in_from = None
    i = 0

    def close() -> None:
        nonlocal cur, env, out_to, in_from
        if cur or env:
            segments.append(Segment(tuple(cur), tuple(env), out_to, in_from))
        cur, env, out_to, in_from = [], [], None, None

    while i < len(words):
        w = words[i]
        if w in OPERATORS:
            close()
        elif w in REDIRECTS and i + 1 < len(words):
            if w == "<":
                in_from = words[i + 1]
            else:
                out_to = words[i + 1]
            i += 1
        elif not cur and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w):
            name, _, value = w.partition("=")
            env.append((name, value))
        else:
            cur.append(w)
        i += 1
    close()
    return Command(doc, line, text, tuple(segments), optional)


def doc_commands(path: Path) -> list[Command]:
    """Every command of the doc's ```bash blocks, in order."""
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    out: list[Command] = []
    for block in fenced_blocks(path):
        if block.lang != "bash":
            continue
        buf, start = "", None
        for k, raw in enumerate(block.lines):
            s = raw.rstrip()
            start = start if start is not None else block.line + 1 + k
            if s.endswith("\\"):
                buf += s[:-1] + " "
                continue
            buf += s
            if buf.strip() and not buf.strip().startswith("#"):
                out.append(parse_line(rel, start, buf.strip()))
            buf, start = "", None
    return out


# ---------------------------------------------------------------------------------------------------- helpers


def alternatives(argv: Sequence[str]) -> list[tuple[str, ...]]:
    """`a|b` inside a word: one variant per alternative (the i-th picks each word's i-th, or its last)."""
    split = [w.split("|") if "|" in w and w.strip("|") == w and "://" not in w else [w] for w in argv]
    n = max((len(s) for s in split), default=1)
    return [tuple(s[min(i, len(s) - 1)] for s in split) for i in range(n)]


_TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}


def repo_path(word: str) -> str | None:
    """The repository path a word names (`KIND:PATH` and `PATH@split` too), or None when it names none."""
    if "://" in word:
        return None
    m = re.fullmatch(r"[a-z][\w-]*:(.+)", word)
    if m:
        word = m.group(1)
    word = word.split("@", 1)[0].split("::", 1)[0].rstrip("/")
    if "/" not in word or word.split("/", 1)[0] not in _TOP:
        return None
    return word


def _ignored(rel: str) -> bool:
    """git-ignored (generated: `make pharmacy` writes benchmarks/pharmacy/generated/...), so absent from a clone."""
    try:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=ROOT, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def check_path(word: str, *, output: bool, produced: set[str]) -> str | None:
    rel = repo_path(word)
    if rel is None or rel in produced:
        return None
    target = ROOT / rel
    if output:
        folder = target.parent
        return None if folder.is_dir() else f"{word}: its folder {folder.relative_to(ROOT)} does not exist"
    if target.exists() or _ignored(rel):
        return None
    return f"{word}: no such path in the repository"


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def _is_flag(word: str) -> bool:
    return word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-[\d.]+", word)


def _nvalues(action: argparse.Action, rest: Sequence[str]) -> int:
    if action.nargs == 0:
        return 0
    if action.nargs is None:
        return 1 if rest else 0
    if isinstance(action.nargs, int):
        return action.nargs
    n = 0
    while n < len(rest) and not _is_flag(rest[n]):
        n += 1
    return min(n, 1) if action.nargs == "?" else n


@dataclass
class ArgparseResult:
    problems: list[str] = field(default_factory=list)
    path: tuple[str, ...] = ()  # the subcommands, in order
    outputs: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # every word that is not a flag or a subcommand
    help: bool = False
    elided: bool = False


def check_argparse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> ArgparseResult:
    """Walks argv through the real parser (subcommands, exact flags), then lets the parser itself judge it."""
    res = ArgparseResult()
    cleaned: list[str] = []
    p, i, pos = parser, 0, 0
    while i < len(argv):
        w = argv[i]
        if w == "--":
            cleaned += argv[i:]
            res.values += argv[i + 1:]
            break
        if w in ELLIPSIS:  # standing alone: arguments elided
            res.elided = True
            i += 1
            continue
        if _is_flag(w):
            name, eq, value = w.partition("=")
            action = p._option_string_actions.get(name)
            cleaned.append(w)
            i += 1
            if action is None:
                res.problems.append(f"`{p.prog}` has no option {name}")
                continue
            if isinstance(action, argparse._HelpAction):
                res.help = True
            values = [value] if eq else list(argv[i:i + _nvalues(action, argv[i:])])
            if not eq:
                cleaned += values
                i += len(values)
            res.values += values
            if action.dest in OUTPUT_DESTS:
                res.outputs += values
            continue
        sub = _subparsers(p)
        if sub is not None and w in sub.choices:
            p = sub.choices[w]
            res.path += (w,)
            pos = 0
        elif sub is not None:  # the rest would be read against the wrong parser: one problem says it
            res.problems.append(f"`{p.prog}` has no subcommand {w!r} (it has {', '.join(sub.choices)})")
            return res
        else:  # the parser's next positional: an output when its dest says so
            positionals = p._positionals._group_actions
            if pos < len(positionals) and positionals[pos].dest in OUTPUT_DESTS:
                res.outputs.append(w)
            if pos < len(positionals) and positionals[pos].nargs not in ("*", "+", argparse.REMAINDER):
                pos += 1
            res.values.append(w)
        cleaned.append(w)
        i += 1
    if res.problems or res.help:
        return res
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            parser.parse_args(cleaned)
    except SystemExit as exc:
        message = (err.getvalue().strip().splitlines() or [f"exit {exc.code}"])[-1]
        required = re.search(r"the following arguments are required|one of the arguments .* is required", message)
        if exc.code not in (0, None) and not (res.elided and required):
            res.problems.append(message)
    return res


# ---------------------------------------------------------------------------------------------------- the checker


@dataclass
class Job:
    """Something to run: in the runner process (`main`, `help`, `import`, `route`) or in a shell (`shell`)."""

    kind: str
    where: str
    data: dict[str, Any]


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    static: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # where → the run's stdout

    def __str__(self) -> str:
        lines = [f"ran {len(self.ran)}, checked statically {len(self.static)}"]
        lines += [f"  ran     {w}" for w in self.ran] + [f"  checked {w}" for w in self.static]
        lines += [f"PROBLEM {p}" for p in self.problems]
        return "\n".join(lines)


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


def _values_has(values: Any, key: str) -> bool:
    node = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def find_helm() -> str | None:
    from ops.chart import find_helm as find

    return find()


class Checker:
    def __init__(self, *, run: bool = True) -> None:
        from armed.cli import build_parser
        from ops.cli import parser as ops_parser
        from ops.fuzz.cli import add_arguments

        self.armed = build_parser()
        self.ops = ops_parser()
        self.fuzz = argparse.ArgumentParser(prog="python -m ops.fuzz")
        add_arguments(self.fuzz)
        self.targets = _makefile_targets()
        self.values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
        self.helm = find_helm()
        self.run = run

    # One segment → problems, and what runs it (None: static only).
    def segment(self, seg: Segment, cmd: Command, produced: set[str]) -> tuple[list[str], dict[str, Any] | None]:
        if not seg.argv:
            return [], None
        prog, args = seg.argv[0], list(seg.argv[1:])
        if prog == "flock":  # flock [options] LOCKFILE COMMAND...
            while args and args[0].startswith("-"):
                args.pop(0)
            if len(args) < 2:
                return ["flock: no command"], None
            return self.segment(Segment(tuple(args[1:]), seg.env, seg.stdout_to, seg.stdin_from), cmd, produced)
        if prog.startswith(".venv/bin/"):
            prog = prog.removeprefix(".venv/bin/")
        if prog in ("python", "python3") and args[:1] == ["-m"] and len(args) >= 2:
            module, args = args[1], args[2:]
            named = {"armed.cli": "armed", "ops.cli": "armed-ops"}.get(module)
            if named is None:
                return self._python_module(module, args, cmd, produced)
            prog = named
        if prog in ("python", "python3"):
            script = args[0] if args else ""
            problem = check_path(script, output=False, produced=produced) if "/" in script else f"{script}: not a path"
            return [problem] if problem else [], None
        if prog in ("armed", "armed-ops"):
            return self._product(prog, args, seg, cmd, produced)
        if prog == "make":
            bad = [a for a in args if "=" not in a and not a.startswith("-") and a not in self.targets]
            return [f"make: no target {a!r} in the Makefile" for a in bad], None
        if prog == "helm":
            return self._helm(args, seg, produced)
        if prog == "kubectl":
            return self._kubectl(args, produced), None
        if prog == "curl":
            return self._curl(args)
        if prog in SHELL_TOOLS:
            problems = [p for a in args if (p := check_path(a, output=False, produced=produced))]
            target = seg.stdout_to if prog == "sed" else (args[-1] if args else None)
            if target and "/" not in target:
                produced.add(target)
            runnable = bool(target) and "/" not in target and not cmd.optional
            return problems, ({"shell": True} if runnable else None)
        if prog in NO_CHECK:
            return [], {"shell": True}
        return [f"no checker for `{prog}`: teach tests/doccheck.py what it needs (run it, or check it)"], None

    def _product(self, prog: str, args: list[str], seg: Segment, cmd: Command,
                 produced: set[str]) -> tuple[list[str], dict[str, Any] | None]:
        parser = self.armed if prog == "armed" else self.ops
        problems: list[str] = []
        runnable = not cmd.optional
        first: ArgparseResult | None = None
        variants = alternatives(args)
        for argv in variants:
            res = check_argparse(parser, argv)
            first = first or res
            problems += [f"{prog} {' '.join(argv)}: {p}" for p in res.problems]
            for value in res.values:
                out = value in res.outputs
                if (p := check_path(value, output=out, produced=produced)):
                    problems.append(p)
                if out and (rel := repo_path(value) or value):
                    produced.add(rel)
        if seg.stdout_to:
            produced.add(seg.stdout_to)
        assert first is not None
        if problems or len(variants) > 1 or first.elided:
            return sorted(set(problems)), None
        if first.help:
            return [], {"prog": prog, "argv": args}
        allowed = RUN_ARMED if prog == "armed" else RUN_OPS
        runnable = runnable and first.path in allowed
        if first.path == ("judge",) and "--image" in args:
            runnable = False  # the image named is the reader's own
        if first.path in {("kb", "inspect"), ("kb", "lookup")}:
            runnable = runnable and (first.values[-1:] == ["seed"] or args[-2:] == ["--kb", "seed"])
        if "--write-chart" in args:  # rewrites the chart's files in the repository
            runnable = False
        return [], ({"prog": prog, "argv": args} if runnable else None)

    def _python_module(self, module: str, args: list[str], cmd: Command,
                       produced: set[str]) -> tuple[list[str], dict[str, Any] | None]:
        if module == "armed_testing.cli":  # its own flags, then the product command it runs on the doubles
            keep = [a for a in args if a == "--keep-profile-engines"]
            rest = [a for a in args if a not in keep]
            if not rest or rest[0] not in ("up", "perf", "fuzz"):
                return [f"python -m armed_testing.cli: no command in {args}"], None
            if rest[0] == "fuzz":
                return self._fuzz(rest[1:], produced), None
            problems, _ = self._product("armed" if rest[0] == "up" else "armed-ops", rest, Segment(()), cmd, produced)
            return problems, None
        if module == "ops.fuzz":
            return self._fuzz(args, produced), None
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:
            return [f"python -m {module}: no such module"], None
        problems = [p for a in args if (p := check_path(a, output=False, produced=produced))]
        main = Path(spec.origin)
        if spec.submodule_search_locations:
            main = Path(spec.origin).parent / "__main__.py"
        source = main.read_text(encoding="utf-8") if main.is_file() else ""
        flags = sorted({a.split("=", 1)[0] for v in alternatives(args) for a in v if _is_flag(a)})
        if module == "pytest" or "argparse" in source:
            return problems, {"help": module, "flags": flags}
        if flags:
            problems.append(f"python -m {module}: takes no flags (no argparse parser), given {flags}")
        return problems, {"import": module}

    def _fuzz(self, args: list[str], produced: set[str]) -> list[str]:
        res = check_argparse(self.fuzz, args)
        problems = [f"fuzz {' '.join(args)}: {p}" for p in res.problems]
        return problems + [p for v in res.values if (p := check_path(v, output=v in res.outputs, produced=produced))]

    def _helm(self, args: list[str], seg: Segment, produced: set[str]) -> tuple[list[str], dict[str, Any] | None]:
        if not args or args[0] not in ("install", "upgrade", "template"):
            return [f"helm {' '.join(args[:1])}: only install / upgrade / template are checked"], None
        problems: list[str] = []
        positionals: list[str] = []
        i = 1
        while i < len(args):
            a = args[i]
            if a in ("--set", "--set-string") and i + 1 < len(args):
                for kv in args[i + 1].split(","):
                    key = kv.split("=", 1)[0]
                    if not _values_has(self.values, key):
                        problems.append(f"helm --set {key}: no such value in helm/armed/values.yaml")
                i += 2
                continue
            if a in ("-f", "--values") and i + 1 < len(args):
                f = args[i + 1]
                if f not in produced and not (ROOT / f).is_file():
                    problems.append(f"helm -f {f}: no such file (nor written by an earlier command)")
                i += 2
                continue
            if a in ("-n", "--namespace"):
                i += 2
                continue
            if not a.startswith("-"):
                positionals.append(a)
            i += 1
        chart = positionals[1] if len(positionals) > 1 else ""
        if not (ROOT / chart / "Chart.yaml").is_file():
            problems.append(f"helm {args[0]}: chart {chart!r} is not a chart of this repository")
        if self.helm is None or problems:
            return problems, None
        if args[0] == "template":
            return problems, {"shell": True}
        # install / upgrade: rendered, not applied: the same chart, values and flags through `helm template`
        render = ["helm", "template", *[a for a in args[1:] if a not in HELM_APPLY_ONLY]]
        return problems, {"shell": True, "segment": Segment(tuple(render), seg.env, seg.stdout_to, seg.stdin_from)}

    def _kubectl(self, args: list[str], produced: set[str]) -> list[str]:
        problems = [p for a in args if (p := check_path(a, output=False, produced=produced))]
        for flag, need in (("-k", "kustomization.yaml"), ("-f", None)):
            if flag in args and args.index(flag) + 1 < len(args):
                target = args[args.index(flag) + 1]
                if target == "-":
                    continue
                path = ROOT / target / need if need else ROOT / target
                if not path.exists():
                    problems.append(f"kubectl {flag} {target}: {path.relative_to(ROOT)} does not exist")
        return problems

    def _curl(self, args: list[str]) -> tuple[list[str], dict[str, Any] | None]:
        url = next((a for a in args if re.match(r"(https?://)?(localhost|127\.0\.0\.1)(:\d+)?/", a)), None)
        if url is None:
            return [f"curl {' '.join(args)}: no local URL to check"], None
        path = "/" + url.split("://", 1)[-1].split("/", 1)[1].split("?", 1)[0]
        body = args[args.index("-d") + 1] if "-d" in args and args.index("-d") + 1 < len(args) else None
        return [], {"route": path, "body": body}

    # A whole doc → problems and jobs, in order.
    def check_doc(self, path: Path, report: Report) -> list[Job]:
        produced: set[str] = set()
        jobs: list[Job] = []
        for cmd in doc_commands(path):
            runs: list[dict[str, Any] | None] = []
            problems: list[str] = []
            for seg in cmd.segments:
                p, run = self.segment(seg, cmd, produced)
                problems += p
                runs.append(run)
            report.problems += [f"{cmd.where}: {p}  [{cmd.text}]" for p in problems]
            side = [r for r in runs if r and ("help" in r or "import" in r or "route" in r)]
            for r in side:  # a module's --help or import, a route: checks that need the runner
                kind = "help" if "help" in r else "import" if "import" in r else "route"
                jobs.append(Job(kind, cmd.where, r))
            if problems or not self.run or side:
                report.static.append(cmd.where)
                continue
            if len(cmd.segments) == 1 and runs[0] and "prog" in runs[0] and not cmd.segments[0].stdout_to:
                jobs.append(Job("main", cmd.where, runs[0]))
            elif runs and all(runs):
                segments = tuple(r.get("segment", s) for r, s in zip(runs, cmd.segments, strict=True))
                jobs.append(Job("shell", cmd.where, {"segments": segments}))
            else:
                report.static.append(cmd.where)
        return jobs


# ---------------------------------------------------------------------------------------------------- running


def _shell_text(segments: Sequence[Segment]) -> str:
    parts = []
    for seg in segments:
        argv = list(seg.argv)
        if argv and argv[0].startswith(".venv/bin/"):
            argv[0] = argv[0].removeprefix(".venv/bin/")
        if argv[:2] in (["python", "-m"], ["python3", "-m"]):
            argv[0] = sys.executable
        text = shlex.join(argv)
        if seg.stdin_from:
            text += f" < {shlex.quote(seg.stdin_from)}"
        if seg.stdout_to:
            text += f" > {shlex.quote(seg.stdout_to)}"
        parts.append(text)
    return " | ".join(parts)


@contextlib.contextmanager
def scratch() -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder whose entries link to the repository's (relative paths resolve; outputs stay here), commands on PATH
    that run this checkout's armed / armed-ops with this Python, and an environment with an empty ARMED_CACHE_DIR."""
    with tempfile.TemporaryDirectory(prefix="doccheck-") as tmp:
        work, bin_dir, cache = Path(tmp) / "work", Path(tmp) / "bin", Path(tmp) / "cache"
        for d in (work, bin_dir, cache):
            d.mkdir()
        for entry in ROOT.iterdir():
            if entry.name not in (".git", ".venv"):
                (work / entry.name).symlink_to(entry)
        shims = {"armed": f"exec {shlex.quote(sys.executable)} -m armed.cli \"$@\"",
                 "armed-ops": f"exec {shlex.quote(sys.executable)} -m ops.cli \"$@\""}
        helm = find_helm()
        if helm:
            shims["helm"] = f"exec {shlex.quote(helm)} \"$@\""
        for name, body in shims.items():
            (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
            (bin_dir / name).chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARMED_")}
        env.update(ARMED_CACHE_DIR=str(cache), RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT),
                   PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
        yield work, env


def run_jobs(jobs: Sequence[Job], report: Report, *, timeout: float = 300) -> None:
    if not jobs:
        return
    with scratch() as (work, env):
        for job in (j for j in jobs if j.kind == "shell"):  # in doc order: one may write what the next reads
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", _shell_text(job.data["segments"])], cwd=work,
                                  env=env, capture_output=True, text=True, timeout=timeout)
            report.ran.append(job.where)
            report.outputs[job.where] = proc.stdout
            if proc.returncode != 0:
                report.problems.append(f"{job.where}: exit {proc.returncode}: {proc.stderr.strip()[-600:]}")
        batch = [{"kind": j.kind, "where": j.where, **{k: v for k, v in j.data.items() if k != "segments"}}
                 for j in jobs if j.kind != "shell"]
        if not batch:
            return
        proc = subprocess.run([sys.executable, "-m", "tests.doccheck", "--runner"], input=json.dumps(batch),
                              cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        try:
            results = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            report.problems.append(f"the runner failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
            return
        for job, result in zip(batch, results, strict=True):
            where = job["where"]
            if job["kind"] == "main":
                report.ran.append(where)
                report.outputs[where] = result.get("stdout", "")
            if result.get("problem"):
                report.problems.append(f"{where}: {result['problem']}")


def _runner(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In one process, so the judge's models load once: each job's result, a problem when it failed."""
    import runpy

    results: list[dict[str, Any]] = []
    for job in batch:
        out, err = io.StringIO(), io.StringIO()
        result: dict[str, Any] = {}
        try:
            if job["kind"] == "main":
                if job["prog"] == "armed":
                    from armed.cli import main
                else:
                    from ops.cli import main
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        code = main(job["argv"])
                    except SystemExit as exc:
                        code = exc.code
                if code not in (0, None):
                    result["problem"] = f"exit {code}: {err.getvalue().strip()[-600:]}"
                result["stdout"] = out.getvalue()
            elif job["kind"] == "help":
                argv = sys.argv
                sys.argv = [job["help"], "--help"]
                try:
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        runpy.run_module(job["help"], run_name="__main__", alter_sys=True)
                except SystemExit as exc:
                    if exc.code not in (0, None):
                        result["problem"] = f"--help exited {exc.code}: {err.getvalue().strip()[-300:]}"
                finally:
                    sys.argv = argv
                text = out.getvalue()
                missing = [f for f in job["flags"] if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
                if missing and "problem" not in result:
                    result["problem"] = f"python -m {job['help']} --help lists no {missing}"
            elif job["kind"] == "import":
                import importlib

                importlib.import_module(job["import"])
            elif job["kind"] == "route":
                from deployments.judge import JudgeRequest, gateway_api

                paths = {getattr(r, "path", "") for r in gateway_api.routes}
                path = job["route"]
                if path not in paths and not re.fullmatch(r"/models/[a-z]+/v1/[\w/]+", path):
                    result["problem"] = f"curl: no gateway route {path} (routes: {sorted(p for p in paths if p)})"
                elif path == "/v1/judge" and job.get("body"):
                    JudgeRequest.model_validate_json(job["body"])
        except Exception as exc:  # every failure is the job's result, reported with its command
            result["problem"] = f"{type(exc).__name__}: {str(exc)[:600]}"
        results.append(result)
    return results


def check(paths: Iterable[Path] | None = None, *, run: bool = True) -> Report:
    report = Report()
    checker = Checker(run=run)
    jobs: list[Job] = []
    for path in paths or doc_files():
        jobs += checker.check_doc(path, report)
    run_jobs(jobs, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--runner"]:
        print(json.dumps(_runner(json.loads(sys.stdin.read())), ensure_ascii=False))
        return 0
    report = check([Path(a).resolve() for a in args] or None)
    print(report)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
