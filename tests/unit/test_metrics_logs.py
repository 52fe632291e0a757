"""Log lines: readable by default, JSON lines on request, with a dead letter's position."""

from __future__ import annotations

import json
import logging
import logging.config
import sys

from gridpulse.logs import JsonLines, configure, worker_logging_config


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "gridpulse.worker", "levelno": logging.INFO, "levelname": "INFO"}
    )
    record.msg, record.args = "dead letter %s[%s]@%s: %s", ("t", 2, 41, "bad_json")
    record.created = 1_780_000_000.25
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_a_json_line_carries_the_extra_fields():
    line = JsonLines().format(_record(partition=2, offset=41, reason_code="bad_json"))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj == {
        "time": "2026-05-28T20:26:40.250+00:00",
        "level": "INFO",
        "logger": "gridpulse.worker",
        "message": "dead letter t[2]@41: bad_json",
        "partition": 2,
        "offset": 41,
        "reason_code": "bad_json",
    }


def test_a_traceback_stays_on_one_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    line = JsonLines().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_commands_log_json_or_text(capsys):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure("json")
        logging.getLogger("gridpulse.test").warning("hello %s", "json", extra={"offset": 7})
        err = capsys.readouterr().err.strip().splitlines()
        assert [json.loads(x)["offset"] for x in err] == [7]
        configure("text")
        logging.getLogger("gridpulse.test").warning("hello %s", "text")
        text = capsys.readouterr().err
        assert "WARNING gridpulse.test: hello text" in text and not text.startswith("{")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_the_worker_gets_a_json_config_and_keeps_its_own_otherwise(capsys):
    assert worker_logging_config("text", "INFO") is None
    config = worker_logging_config("json", "INFO")
    assert config is not None
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        logging.getLogger("gridpulse.worker").info("started", extra={"partition": 3})
        logging.getLogger("kafka").info("chatter")  # quietened
        out = capsys.readouterr().out.strip().splitlines()
        assert [json.loads(x)["partition"] for x in out] == [3]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
