"""gridpulse's neutral core: settings, the city model, calendar and SLA configuration, shared
types and the wire models of every topic.

Every other package may import ``core``; ``core`` imports none of them (enforced by
``tests/unit/test_layering.py``).
"""
