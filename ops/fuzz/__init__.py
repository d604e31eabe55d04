"""HTTP fuzzing of every armed route, driven by the routes' OpenAPI documents (issue 11).

  values   hostile values: lone surrogates, huge texts, images that are not images, local paths, bombs
  cases    what to send: a FuzzCase per request, from hand-written seeds over valid templates and from
           schemathesis' positive and negative generation for every operation of every OpenAPI document
  runner   sends the cases (bounded by count and time, concurrent), records status and latency, shrinks each
           distinct failure to a small reproducer, checks the server still judges afterwards
  report   counts by route x status class, every >= 500 and every slow request, JSON + Markdown
  cli      `python -m ops.fuzz` / `armed-ops fuzz`

The same cases run in-process in CI (tests/security/test_fuzz.py) and against a live stack (benchmarks/security).
"""
