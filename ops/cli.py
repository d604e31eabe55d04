"""armed-ops: SRE tools for armed on Kubernetes.

  status         RayService conditions, Serve apps/deployments, replicas vs bounds, worker-group pods
  capacity       replicas, nodes (placed as Serve places them: spread by default; Ray's GPU rule per node), GPUs
                 and cost per pool and in total for a target QPS and latency objective (offline)
  tune           per-deployment autoscaling recommendations from Serve and vLLM metrics, bounded by what each
                 pool holds; --apply patches serveConfigV2 in place (ray.serve.llm models without an engine restart)
  render-values  the chart values for a GPU profile (--write-chart regenerates the chart's generated files)
  chart-readme   regenerate helm/armed/README.md, files/dashboard.json and files/metrics.json
  kuberay-check  KubeRay 1.7's own validation rules on rendered manifests (`helm template ... | ... -`)
  day2           what KubeRay would do on `helm upgrade` from one set of values to another: new cluster or not,
                 Services, where the Ingress points (offline; ops/day2.py)
  fuzz           fuzz every HTTP route from its OpenAPI document; report in --out (ops/fuzz)
  perf           load-test the serving stack (a fresh local Ray, or --endpoint); perf.json, perf.md and the
                 capacity.json that `capacity` reads (ops/perf)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ops.perf.cli import add_perf_commands, cmd_perf

EXIT_INPUT, EXIT_API = 2, 3


def _common_kube(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("-n", "--namespace", default="armed", help="namespace of the RayService (default armed)")
    p.add_argument("--name", default="armed", help="RayService name (the Helm release's fullname; default armed)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="armed-ops", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("status", help="RayService, Serve and worker-group status")
    _common_kube(s)
    s.add_argument("--prometheus", help="Prometheus URL for live replica counts (optional)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")

    c = sub.add_parser("capacity", help="replicas, GPUs and cost for a target QPS (offline)")
    c.add_argument("--profile", required=True, help="GPU profile name or path")
    c.add_argument("--qps", type=float, required=True, help="target judgments per second")
    c.add_argument("--latency-ms", type=float, required=True, help="latency objective per model call (p95), ms")
    c.add_argument("--benchmark", required=True, type=Path, help="benchmark result JSON (format: ops/capacity.py)")
    c.add_argument("--headroom", type=float, default=0.7, help="share of measured throughput to plan for (0.7)")
    c.add_argument("--cache-hit-rate", type=float, default=0.0, help="share of model calls the caches answer")
    c.add_argument("--json", action="store_true")

    t = sub.add_parser("tune", help="autoscaling recommendations from Prometheus; --apply patches in place")
    _common_kube(t)
    t.add_argument("--prometheus", required=True, help="Prometheus base URL (uses /api/v1/query)")
    t.add_argument("--objectives", type=Path,
                   help="per-deployment objectives YAML (default ops/objectives.yaml; its header says the format)")
    t.add_argument("--latency-ms", type=float,
                   help="p95 objective (ms) of the deployments the objectives file does not name (its default)")
    t.add_argument("--window", default="15m", help="look-back window of the queries (15m)")
    t.add_argument("--apply", action="store_true", help="patch the RayService's serveConfigV2")

    r = sub.add_parser("render-values", help="chart values for a GPU profile")
    r.add_argument("--profile", help="GPU profile name or path")
    r.add_argument("--write-chart", action="store_true",
                   help="regenerate helm/armed/files/profiles/*.yaml for every shipped profile")

    sub.add_parser("chart-readme", help="regenerate helm/armed/README.md, files/dashboard.json and files/metrics.json")

    k = sub.add_parser("kuberay-check", help="KubeRay's own validation rules on rendered manifests (offline)")
    k.add_argument("files", nargs="*", help="multi-document YAML files; - reads stdin")
    k.add_argument("--list-rules", action="store_true",
                   help="print every rule (id, kinds, KubeRay source) and their number, then exit")
    k.add_argument("--operator-values", type=Path,
                   help="kuberay-operator Helm values whose featureGates the operator runs with "
                        "(e.g. k8s/kuberay/values.yaml; default: KubeRay's default gates)")
    k.add_argument("--feature-gate", action="append", default=[], metavar="NAME=true|false",
                   help="an operator feature gate (repeatable; wins over --operator-values)")
    k.add_argument("--json", action="store_true", help="print the violations as JSON")

    d = sub.add_parser("day2", help="what KubeRay does on `helm upgrade` from v1 to v2 values (offline)")
    d.add_argument("--profile", help="GPU profile of both versions (default: the chart's)")
    d.add_argument("--values", type=Path, action="append", default=[], help="values file of both versions")
    d.add_argument("--v1-values", type=Path, action="append", default=[], help="values file of v1 only")
    d.add_argument("--v2-values", type=Path, action="append", default=[], help="values file of v2 only")
    d.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="both versions")
    d.add_argument("--v1-set", action="append", default=[], metavar="KEY=VALUE", help="v1 only")
    d.add_argument("--v2-set", action="append", default=[], metavar="KEY=VALUE", help="v2 only")
    d.add_argument("--operator-values", type=Path,
                   help="kuberay-operator Helm values whose featureGates decide the incremental strategy "
                        "(default: this repository's k8s/kuberay/values.yaml)")
    d.add_argument("--json", action="store_true")

    from ops.fuzz.cli import add_arguments as fuzz_arguments

    fuzz_arguments(sub.add_parser("fuzz", help="fuzz every HTTP route of a running armed (or a private local stack)"))
    add_perf_commands(sub)
    return ap


def _status(a: argparse.Namespace) -> int:
    from ops import status
    from ops.kube import api_client
    from ops.prom import Prometheus

    data = status.collect(api_client(a.kubeconfig, a.context), a.namespace, a.name,
                          Prometheus(a.prometheus) if a.prometheus else None)
    print(json.dumps(data, indent=2, default=str) if a.json else status.render(data))
    return 0


def _capacity(a: argparse.Namespace) -> int:
    from armed.serving.profiles import load_profile
    from ops import capacity

    profile = load_profile(a.profile)
    bench = capacity.load_benchmark(a.benchmark)
    roles, pools = capacity.plan(profile, bench, a.qps, a.latency_ms, a.headroom, a.cache_hit_rate)
    if a.json:
        print(json.dumps({"roles": [{**asdict(r), "gpus": r.gpus} for r in roles],
                          "pools": [asdict(p) for p in pools]}, indent=2))
    else:
        print(capacity.render(profile, bench, roles, pools, a.qps, a.latency_ms, a.headroom, a.cache_hit_rate,
                              str(a.benchmark)))
    return 0


def _tune(a: argparse.Namespace) -> int:
    from ops import tune
    from ops.kube import api_client
    from ops.prom import Prometheus

    objectives = tune.load_objectives(a.objectives, a.latency_ms)
    recs, patched, restarts, placement = tune.run(api_client(a.kubeconfig, a.context), Prometheus(a.prometheus),
                                                  a.namespace, a.name, objectives, a.window, a.apply)
    print(tune.render(recs, patched is not None, restarts, placement))
    return 0


def _render_values(a: argparse.Namespace) -> int:
    from armed.serving.profiles import load_profile
    from ops import profile_values

    if a.write_chart:
        for path in profile_values.write_chart_profiles():
            print(path, file=sys.stderr)
        return 0
    if not a.profile:
        print("render-values: --profile is required (or --write-chart)", file=sys.stderr)
        return EXIT_INPUT
    sys.stdout.write(profile_values.values_file(load_profile(a.profile)))
    return 0


def _chart_readme(_: argparse.Namespace) -> int:
    from ops.chart_readme import write_readme
    from ops.dashboard import write_dashboard
    from ops.metrics import write_metrics_file

    print(write_dashboard(), file=sys.stderr)
    print(write_metrics_file(), file=sys.stderr)
    print(write_readme(), file=sys.stderr)
    return 0


def _kuberay_check(a: argparse.Namespace) -> int:
    """Exit 0 when KubeRay would accept every RayService/RayCluster/RayJob in the input, 1 when not."""
    import yaml

    from armed.errors import InputError
    from ops import kuberay_rules

    if a.list_rules:
        for r in kuberay_rules.RULES:
            print(f"{r.id}\t{','.join(r.kinds)}\t{r.source}")
        print(f"{len(kuberay_rules.RULES)} rules", file=sys.stderr)
        return 0
    if not a.files:
        raise InputError("files", "give at least one YAML file, or - to read stdin (or --list-rules)")
    gates = kuberay_rules.operator_feature_gates(a.operator_values) if a.operator_values else {}
    for item in a.feature_gate:
        name, sep, value = item.partition("=")
        if not sep or value.lower() not in ("true", "false"):
            raise InputError("--feature-gate", f"{item!r}: expected NAME=true or NAME=false")
        gates[name] = value.lower() == "true"
    texts = []
    for f in a.files:
        try:
            texts.append(sys.stdin.read() if f == "-" else Path(f).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f, exc.strerror or str(exc)) from exc
    try:
        objects = kuberay_rules.load_documents(texts)
    except yaml.YAMLError as exc:
        raise InputError("input", f"not YAML: {exc}") from exc
    violations = kuberay_rules.check(objects, gates)
    checked = sum(1 for o in objects if o.get("kind") in kuberay_rules.KINDS)
    if a.json:
        print(json.dumps([asdict(v) for v in violations], indent=2))
    else:
        for v in violations:
            print(v)
        print(f"{checked} KubeRay object(s) checked, {len(violations)} violation(s)", file=sys.stderr)
    return 1 if violations else 0


def _sets(items: list[str], flag: str) -> dict[str, str]:
    from armed.errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(flag, f"{item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _day2(a: argparse.Namespace) -> int:
    """Exit 0 always for a decision; the report says whether a rollout happens."""
    from armed.errors import InputError
    from ops import day2, kuberay_rules
    from ops.chart import OPERATOR_VALUES

    try:
        gates = {**kuberay_rules.DEFAULT_FEATURE_GATES,
                 **kuberay_rules.operator_feature_gates(a.operator_values or OPERATOR_VALUES)}
    except OSError as exc:
        raise InputError("--operator-values", exc.strerror or str(exc)) from exc
    common = _sets(a.sets, "--set")
    versions = []
    for files, sets, flag in ((a.v1_values, a.v1_set, "--v1-set"), (a.v2_values, a.v2_set, "--v2-set")):
        try:
            versions.append(day2.render(a.profile, tuple(a.values + files), {**common, **_sets(sets, flag)}))
        except RuntimeError as exc:  # helm's own message: a schema error or a chart `fail`
            raise InputError(flag.removesuffix("-set"), str(exc)) from exc
    up = day2.upgrade(versions[0], versions[1], gates)
    print(day2.as_json(up) if a.json else day2.report(up))
    return 0


def _fuzz(a: argparse.Namespace) -> int:
    from ops.fuzz.cli import run_args

    return run_args(a)


def main(argv: list[str] | None = None) -> int:
    from kubernetes.client.exceptions import ApiException

    from armed.errors import InputError
    from ops.capacity import BenchmarkError
    from ops.prom import PrometheusError
    from ops.tune import ObjectiveError

    a = parser().parse_args(argv)
    handler = {"status": _status, "capacity": _capacity, "tune": _tune, "render-values": _render_values,
               "chart-readme": _chart_readme, "kuberay-check": _kuberay_check, "day2": _day2, "fuzz": _fuzz,
               "perf": cmd_perf}[a.cmd]
    try:
        return handler(a)
    except (InputError, BenchmarkError, ObjectiveError) as exc:
        print(f"armed-ops {a.cmd}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ApiException as exc:
        reason = exc.reason
        try:
            reason = json.loads(exc.body).get("message", reason)
        except (TypeError, ValueError):
            pass
        print(f"armed-ops {a.cmd}: Kubernetes API {exc.status}: {reason}", file=sys.stderr)
        return EXIT_API
    except PrometheusError as exc:
        print(f"armed-ops {a.cmd}: Prometheus: {exc}", file=sys.stderr)
        return EXIT_API


if __name__ == "__main__":
    sys.exit(main())
