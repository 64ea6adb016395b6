"""Benchmarks of Flask-OpenAI-Webhooks: ``python -m benchmarks`` (``make bench``).

One run prints one table, in four sections:

1.  **verify + parse** of one delivery: ours (``verify_with_keys`` and
    ``parse_event``) against the floor (``hmac.digest`` + base64 +
    ``compare_digest`` + one ``TypeAdapter(model).validate_json``), the
    ``openai`` SDK's ``unwrap``, ``standardwebhooks`` and ``svix``, for a
    known type, an unknown type and a 16-SIP-header event
    (:mod:`benchmarks.verify_parse`);
2.  **one delivery through Flask, in-process**: a bare route against the
    blueprint with the memory, SQLite and Redis stores, called as WSGI
    (:mod:`benchmarks.inprocess`);
3.  **end to end**: gunicorn with two workers under ``wrk`` (or a Python
    load generator), bare against ours (:mod:`benchmarks.e2e`);
4.  **memory**: RSS over 100,000 deliveries with the memory store, in a
    fresh subprocess (:mod:`benchmarks.memory`).

The machine these run on is shared and noisy, so absolute times mean
little. Every comparison is therefore a ratio between cases measured side
by side in the same run, in interleaved rounds (A, B, C, A, B, C, ...), and
the table reports medians over the rounds; :mod:`benchmarks.harness`
explains the details. The acceptance targets are on those ratios and are
printed with PASS or MISS; ``--check`` turns a MISS into exit status 1.

``--quick --no-e2e`` is a smoke run for tests (well under a minute);
``--json PATH`` also writes every number, per round, as JSON.
:mod:`benchmarks.profiling` profiles the two hot paths.
"""
