"""Logging set-up: every line carries the team and request id; optional JSON lines."""

from __future__ import annotations

import json
import logging
import time

from reward_server.transport.interceptors import REQUEST_ID, TEAM

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [team=%(team)s request_id=%(request_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Copies the calling team and request id (context variables) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.team = TEAM.get()
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "team": getattr(record, "team", "-"),
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
