"""`docker top` parsing (model/top.py), as moby's parsePSOutput."""

from __future__ import annotations

import pytest

from dockyard.engine.model.top import PsOutputError, parse_ps_output

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 04:00 ?        00:00:01 /sbin/init
root        4242    4240  0 05:01 ?        00:00:00 sleep   1000
65534       4250    4240  0 05:02 pts/0    00:00:00 sh -c echo a  b
"""


def test_keeps_the_containers_rows_and_joins_the_command() -> None:
    titles, rows = parse_ps_output(PS_EF, {4242, 4250})
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert rows == [
        ["root", "4242", "4240", "0", "05:01", "?", "00:00:00", "sleep 1000"],
        ["65534", "4250", "4240", "0", "05:02", "pts/0", "00:00:00", "sh -c echo a b"],
    ]


def test_other_columns_and_errors() -> None:
    assert parse_ps_output("PID COMMAND\n  7 sleep\n  8 sh\n", [8]) == (
        ["PID", "COMMAND"],
        [["8", "sh"]],
    )
    with pytest.raises(PsOutputError, match="Couldn't find PID field"):
        parse_ps_output("USER COMMAND\nroot sh\n", [1])
    with pytest.raises(PsOutputError, match="Unexpected pid"):
        parse_ps_output("PID CMD\nx sh\n", [1])
