"""Test doubles of armed's engines and the entry points that inject them: never shipped in the wheel.

armed's products (settings, CLI flags, Serve config args) can only name real engines. A double reaches a model
deployment the way ray.serve.llm's `LLMServer` takes its `engine_cls`: as a constructor argument bound in Python
(`build_model_app(args, engine_cls=ZeroWork())`), which no YAML config or flag can express.

- `armed_testing.scripted`: deterministic, table/callable-driven doubles for pipeline tests (in-process).
- `armed_testing.zero_work`: protocol-complete engines that do (almost) nothing, and `ZeroWork`, the injectable
  engine class that builds them in a replica (serving-overhead measurement, Serve tests).
- `python -m armed_testing.cli ...`: the `armed` / `armed-ops fuzz` commands with zero-work engines injected.

pyproject.toml's package discovery excludes this package; tests/test_packaging.py builds the wheel and checks.
"""
