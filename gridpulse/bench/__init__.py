"""``gridpulse bench``: how fast the pipeline is, against the ceilings of what it is built on.

Everything runs on a private stack: an in-memory Tansu broker on a free port (started and
stopped here), embedded chdb in a temp folder, a fresh topic prefix per phase. Data are
pre-published before each consumer starts, so the producer is never what is measured.

Phases (``--seconds`` S scales every size; the default 20 keeps the whole run near 4 min):

1. ``aiokafka``: a plain aiokafka consumer (manual assignment, no group) reads N pre-published
   single-event messages: the client's ceiling.
2. ``faust-bare``: a minimal Faust app (``python -m gridpulse.bench faust-bare``) with the
   worker's Faust settings, raw bytes, ``json.loads`` + a dict count per message; once with
   ``stream.take`` batches of the worker's batch size, once one message at a time.
3. ``gridpulse-single``: a real ``gridpulse worker`` over N single-event messages.
4. ``gridpulse-envelopes``: the same over sensor gateway envelopes (up to 500 readings each).
5. ``latency``: a caught-up worker under live traffic paced at a fixed rate with record
   timestamps = send time; ``latency_s`` from ``/stats/`` = record timestamp (set by the
   producer at publish) -> the batch holding it acknowledged by ClickHouse (visible to queries).

Rates are "steady" rates: counted from the first progress a consumer reports to the moment it
has everything (polling its web view), so consumer-group joins and start-up are excluded; the
seconds from "ready" (web view up) to done are reported too.

``gridpulse bench --cases N`` is the in-process SLA-timer bench instead (``cases``).

Modules: ``run`` (the whole run: stack, data, phases in order, report), ``phases`` (one
method per phase, worker start-up), ``data`` (the messages), ``kafka`` (publish, plain
consume), ``measure`` (progress -> rates, completion), ``pyspy`` (profiles), ``report``
(machine, targets, verdict, table), ``bare_faust`` (the ceiling app, run as a child through
``__main__``), ``cases``. This file imports nothing, so the bare-Faust child stays lean.
"""
