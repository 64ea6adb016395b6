"""Benchmarks of Flask-OpenAI-Webhooks: ``python -m benchmarks`` (``make bench``).

Every target is a ratio to a *floor*: the same work done by the shortest
honest route, measured side by side in the same run. One run prints the
speed budget (each figure with ours, its floor, the ratio, the target and
PASS or MISS), then the details, from five sections:

1.  **verify + parse** of one delivery (:mod:`benchmarks.verify_parse`):
    the blueprint path and the public functional API against the floor
    (``hmac.digest`` + ``TypeAdapter(model).validate_json``); the ``openai``
    SDK's ``unwrap`` against ours; ``standardwebhooks`` and ``svix``;
2.  **one delivery through Flask, in-process** (:mod:`benchmarks.inprocess`):
    the blueprint with the memory store against a minimal hand-written
    route (:func:`benchmarks.apps.floor_app`), with each shared store
    (SQLite, Redis, PostgreSQL, MariaDB) against that route plus the two
    writes any shared store needs (:mod:`benchmarks.floors`), and with
    metrics and traces on against off (:mod:`benchmarks.observability`);
3.  **end to end** (:mod:`benchmarks.e2e`): gunicorn under ``wrk`` (or a
    Python load generator), the memory store against a bare route, each
    shared store against its store-floor app, p99 reported;
4.  **memory** (:mod:`benchmarks.memory`): RSS over 100,000 deliveries with
    the memory store, in a fresh subprocess: bounded once the store is full;
5.  **Celery hand-off** in the request, from :mod:`benchmarks.celery_handoff`
    when that module exists.

The shared stores work in places private to the run (a temporary
directory, a random Redis prefix, a database created and dropped on
PostgreSQL and MariaDB: :mod:`benchmarks.services`).

The machine these run on is shared and noisy, so absolute times mean
little. Every comparison is therefore a ratio between cases measured side
by side, in interleaved rounds (A, B, C, A, B, C, ...), judged on CPU time
for work that stays in the process and on wall-clock time for work that
waits for a server; the tables report medians over the rounds.
:mod:`benchmarks.harness` explains the details. ``--check`` exits with
status 1 when a target is missed or could not be measured.

``--quick`` is a smoke run for tests; ``--sections`` picks sections;
``--json PATH`` also writes every number as JSON. :mod:`benchmarks.profiling`
profiles the hot paths.
"""
