"""The linearizability checker on small hand-made histories, the models, parsers and recorder.

Each history is drawn as intervals `(client, call, return, input, output)`; `math.inf` as a
return time with `UNKNOWN` as output is an operation whose outcome nobody saw.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
from collections.abc import Hashable

import pytest

from tests.support.linearizability.checker import (
    UNKNOWN,
    Operation,
    Unknown,
    Verdict,
    check_operations,
)
from tests.support.linearizability.history import (
    HistoryRecorder,
    assert_linearizable,
    format_history,
)
from tests.support.linearizability.models import (
    ALREADY_EXISTS,
    COMPARE_FAILED,
    KEY_NOT_FOUND,
    OK,
    CasRegisterModel,
    EtcdModel,
    EtcdOp,
    EtcdResult,
    KvModel,
    KvOp,
    RegisterOp,
)
from tests.support.linearizability.parsers import parse_jepsen_etcd_log, parse_porcupine_kv_log

pytestmark = pytest.mark.unit

REGISTER = CasRegisterModel()

RegOp = Operation[RegisterOp, Hashable]


def read(client: int, call: float, ret: float, value: Hashable | Unknown) -> RegOp:
    return Operation(client, RegisterOp("read"), call, value, ret)


def write(client: int, call: float, ret: float, value: int, *, unknown: bool = False) -> RegOp:
    output: Hashable | Unknown = UNKNOWN if unknown else None
    return Operation(client, RegisterOp("write", value), call, output, math.inf if unknown else ret)


def cas(client: int, call: float, ret: float, old: int | None, new: int, ok: bool | None) -> RegOp:
    """`ok=None`: unknown outcome (return at +inf)."""
    output: Hashable | Unknown = UNKNOWN if ok is None else ok
    return Operation(
        client, RegisterOp("cas", new, old), call, output, math.inf if ok is None else ret
    )


def verdict(*ops: RegOp) -> Verdict:
    return check_operations(REGISTER, ops).verdict


# The register -------------------------------------------------------------------------------


def test_empty_and_sequential_histories_are_linearizable() -> None:
    assert verdict() is Verdict.OK
    assert verdict(read(0, 0, 1, None)) is Verdict.OK
    assert verdict(write(0, 0, 1, 5), read(0, 2, 3, 5), cas(0, 4, 5, 5, 6, True)) is Verdict.OK
    assert verdict(write(0, 0, 1, 5), cas(1, 2, 3, 4, 6, False), read(0, 4, 5, 5)) is Verdict.OK


def test_a_stale_read_after_a_completed_write_is_illegal() -> None:
    result = check_operations(REGISTER, [write(0, 0, 1, 1), read(1, 2, 3, None)])
    assert result.verdict is Verdict.ILLEGAL
    assert [op.input.kind for op in result.longest_prefix] == ["write"]
    assert "read() -> None" in result.explanation
    assert "illegal in this state" in result.explanation


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in (None, 1):
        assert verdict(write(0, 0, 10, 1), read(1, 2, 3, seen)) is Verdict.OK
    assert verdict(write(0, 0, 10, 1), read(1, 2, 3, 2)) is Verdict.ILLEGAL


def test_reads_cannot_go_back_in_time() -> None:
    # Both reads overlap the write, but once a read saw 1, a later read cannot see None.
    assert verdict(write(0, 0, 10, 1), read(1, 1, 2, 1), read(2, 3, 4, None)) is Verdict.ILLEGAL
    assert verdict(write(0, 0, 10, 1), read(1, 1, 2, None), read(2, 3, 4, 1)) is Verdict.OK


def test_intervals_are_closed_so_touching_operations_overlap() -> None:
    # The write returns at 2 and the read is called at 2: they may be ordered either way.
    assert verdict(write(0, 0, 2, 1), read(1, 2, 3, None)) is Verdict.OK
    assert verdict(write(0, 0, 2, 1), read(1, 3, 4, None)) is Verdict.ILLEGAL


def test_a_write_with_an_unknown_outcome_may_or_may_not_take_effect() -> None:
    assert verdict(write(0, 0, 0, 1, unknown=True), read(1, 5, 6, 1)) is Verdict.OK
    assert verdict(write(0, 0, 0, 1, unknown=True), read(1, 5, 6, None)) is Verdict.OK
    # It may take effect late, long after the client gave up...
    assert verdict(write(0, 0, 0, 1, unknown=True), read(1, 5, 6, None), read(1, 50, 60, 1)) is (
        Verdict.OK
    )
    # ...but only once: a value cannot disappear again without another write.
    assert verdict(write(0, 0, 0, 1, unknown=True), read(1, 5, 6, 1), read(1, 7, 8, None)) is (
        Verdict.ILLEGAL
    )
    # And not before it was called.
    assert verdict(read(1, 0, 1, 1), write(0, 2, 0, 1, unknown=True)) is Verdict.ILLEGAL


def test_concurrent_compare_and_swaps_on_the_same_value_cannot_both_win() -> None:
    base = write(0, 0, 1, 0)
    assert verdict(base, cas(1, 2, 5, 0, 1, True), cas(2, 2, 5, 0, 2, True)) is Verdict.ILLEGAL
    assert verdict(base, cas(1, 2, 5, 0, 1, True), cas(2, 2, 5, 0, 2, False)) is Verdict.OK
    # Chained: 0 -> 1 -> 2 both succeed in that order, and a read in between saw 1.
    assert verdict(base, cas(1, 2, 9, 0, 1, True), cas(2, 2, 9, 1, 2, True), read(3, 2, 9, 1)) is (
        Verdict.OK
    )
    # Both failed although one of them must have matched (nobody else wrote).
    assert verdict(base, cas(1, 2, 5, 0, 1, False), cas(2, 2, 5, 0, 2, False)) is Verdict.ILLEGAL


def test_a_cas_with_an_unknown_outcome_explains_a_later_read() -> None:
    base = write(0, 0, 1, 0)
    assert verdict(base, cas(1, 2, 0, 0, 7, None), read(2, 5, 6, 7)) is Verdict.OK
    assert verdict(base, cas(1, 2, 0, 0, 7, None), read(2, 5, 6, 0)) is Verdict.OK
    # It could not have matched: the value was 3 for its whole life.
    assert verdict(write(0, 0, 1, 3), cas(1, 2, 0, 0, 7, None), read(2, 5, 6, 7)) is (
        Verdict.ILLEGAL
    )


def test_explanation_names_the_longest_prefix_and_the_stuck_candidates() -> None:
    history = [
        write(0, 0, 1, 1),
        write(0, 2, 3, 2),
        cas(1, 4, 6, 2, 3, True),
        read(2, 5, 7, 9),
    ]
    result = check_operations(REGISTER, history)
    assert result.verdict is Verdict.ILLEGAL
    assert len(result.longest_prefix) == 3
    assert "longest linearizable prefix has 3 of them" in result.explanation
    assert "from state 3" in result.explanation
    assert "read() -> 9" in result.explanation


def test_the_deadline_gives_unknown() -> None:
    # 16 overlapping unknown writes and a read of a value never written: proving this illegal
    # means visiting every subset of the writes, far more than one slice of the search.
    history = [write(i, 0, 0, i, unknown=True) for i in range(16)]
    history.append(read(99, 1, 2, -1))
    ticks = itertools.count()
    result = check_operations(REGISTER, history, timeout_s=0.5, clock_s=lambda: next(ticks))
    assert result.verdict is Verdict.UNKNOWN
    assert "timed out" in result.explanation


def test_the_memo_bound_gives_unknown() -> None:
    history = [write(i, 0, 0, i, unknown=True) for i in range(16)]
    history.append(read(99, 1, 2, -1))
    result = check_operations(REGISTER, history, max_configurations=1000)
    assert result.verdict is Verdict.UNKNOWN
    assert "configurations (limit 1000)" in result.explanation


def test_malformed_operations_are_rejected() -> None:
    with pytest.raises(ValueError, match="returns before it is called"):
        check_operations(REGISTER, [read(0, 5, 4, None)])
    with pytest.raises(ValueError, match="never returned has an output"):
        never_returned: RegOp = Operation(0, RegisterOp("read"), 0, None, math.inf)
        check_operations(REGISTER, [never_returned])


def _brute_force_linearizable(history: list[RegOp]) -> bool:
    """The definition, by enumeration: some order of all completed operations and any subset
    of the unknown ones respects real time and the register's semantics."""
    required = [op for op in history if op.return_ns != math.inf]
    optional = [op for op in history if op.return_ns == math.inf]
    for k in range(len(optional) + 1):
        for subset in itertools.combinations(optional, k):
            for order in itertools.permutations(required + list(subset)):
                if any(
                    later.return_ns < earlier.call_ns
                    for i, earlier in enumerate(order)
                    for later in order[i + 1 :]
                ):
                    continue
                state: Hashable = REGISTER.init()
                for op in order:
                    legal, state = REGISTER.step(state, op.input, op.output)
                    if not legal:
                        break
                else:
                    return True
    return False


def _random_history(rng: random.Random) -> list[RegOp]:
    history = []
    for client in range(rng.randint(1, 6)):
        call = rng.randint(0, 10)
        ret = call + rng.randint(0, 5)
        kind = rng.choice(["read", "write", "cas"])
        value = rng.choice([None, 1, 2])
        if kind == "read":
            history.append(read(client, call, ret, value))
        elif kind == "write":
            history.append(write(client, call, ret, rng.randint(1, 2), unknown=rng.random() < 0.3))
        else:
            ok = rng.choice([True, False, None])
            history.append(cas(client, call, ret, value, rng.randint(1, 2), ok))
    return history


def test_the_search_agrees_with_brute_force_on_random_small_histories() -> None:
    verdicts = {Verdict.OK: 0, Verdict.ILLEGAL: 0}
    for seed in range(1500):
        history = _random_history(random.Random(seed))
        result = check_operations(REGISTER, history)
        expected = Verdict.OK if _brute_force_linearizable(history) else Verdict.ILLEGAL
        assert result.verdict is expected, (
            f"seed {seed}: checker says {result.verdict.value}, brute force "
            f"{expected.value}\n{format_history(history, REGISTER, time_unit_ns=1)}"
        )
        verdicts[expected] += 1
    assert min(verdicts.values()) > 300, verdicts  # both verdicts well exercised


# Partitioned models --------------------------------------------------------------------------


def test_kv_model_is_checked_per_key() -> None:
    def op(
        client: int, call: int, ret: int, kind: str, key: str, value: str, out: str
    ) -> Operation[KvOp, str]:
        return Operation(client, KvOp(kind, key, value), call, out, ret)  # type: ignore[arg-type]

    ok = [
        op(0, 0, 1, "put", "a", "x", ""),
        op(1, 0, 1, "append", "b", "y", ""),
        op(0, 2, 5, "append", "a", "z", ""),
        op(1, 3, 4, "get", "a", "", "xz"),
        op(1, 6, 7, "get", "b", "", "y"),
    ]
    assert check_operations(KvModel(), ok).verdict is Verdict.OK
    bad = [*ok, op(2, 8, 9, "get", "b", "", "")]
    result = check_operations(KvModel(), bad)
    assert result.verdict is Verdict.ILLEGAL
    assert {o.input.key for o in result.partition} == {"b"}


def etcd(
    client: int, call: int, ret: float, request: EtcdOp, outcome: str, value: str | None = None
) -> Operation[EtcdOp, EtcdResult]:
    output: EtcdResult | Unknown = (
        UNKNOWN if outcome == "?" else EtcdResult(outcome, value)  # type: ignore[arg-type]
    )
    return Operation(client, request, call, output, math.inf if outcome == "?" else ret)


def test_etcd_model_get_set_cas_delete() -> None:
    model = EtcdModel()
    history = [
        etcd(0, 0, 1, EtcdOp("get", "k"), KEY_NOT_FOUND),
        etcd(0, 2, 3, EtcdOp("cas", "k", "1", prev_value="0"), KEY_NOT_FOUND),
        etcd(0, 4, 5, EtcdOp("set", "k", "1"), OK),
        etcd(1, 6, 9, EtcdOp("cas", "k", "2", prev_value="1"), OK),
        etcd(2, 6, 9, EtcdOp("cas", "k", "3", prev_value="1"), COMPARE_FAILED),
        etcd(0, 10, 11, EtcdOp("get", "k"), OK, "2"),
        etcd(0, 12, 13, EtcdOp("delete", "k", prev_value="1"), COMPARE_FAILED),
        etcd(0, 14, 15, EtcdOp("delete", "k"), OK),
        etcd(0, 16, 17, EtcdOp("delete", "k"), KEY_NOT_FOUND),
        etcd(1, 18, 0, EtcdOp("set", "j", "5"), "?"),
        etcd(0, 20, 21, EtcdOp("get", "j"), OK, "5"),
        etcd(0, 22, 23, EtcdOp("create", "k", "7"), OK),
        etcd(0, 24, 25, EtcdOp("create", "k", "8"), ALREADY_EXISTS),
        etcd(0, 26, 27, EtcdOp("cas", "k", "9"), OK),  # prevExist=true
        etcd(0, 28, 29, EtcdOp("get", "k"), OK, "9"),
    ]
    assert check_operations(model, history).verdict is Verdict.OK
    # The loser of a cas race cannot also report success; a get cannot miss an acked set.
    raced = list(history)
    raced[4] = etcd(2, 6, 9, EtcdOp("cas", "k", "3", prev_value="1"), OK)
    assert check_operations(model, raced).verdict is Verdict.ILLEGAL
    lost = [*history, etcd(0, 30, 31, EtcdOp("get", "j"), KEY_NOT_FOUND)]
    result = check_operations(model, lost)
    assert result.verdict is Verdict.ILLEGAL
    assert "get('j') -> not_found" in result.explanation


# Parsers --------------------------------------------------------------------------------------

JEPSEN_LOG = """\
INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 2   :invoke :read   nil
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 2   :fail   :read   :timed-out
INFO  jepsen.util - 1\t:info\t:cas\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:ok\t:read\t2
INFO  jepsen.util - 4\t:invoke\t:cas\t[5 6]
INFO  jepsen.util - 4\t:fail\t:cas\t[5 6]
INFO  jepsen.util - 5\t:invoke\t:write\t7
"""


def test_jepsen_parser_semantics() -> None:
    ops = parse_jepsen_etcd_log(JEPSEN_LOG)
    assert [(o.client_id, o.input, o.output, o.call_ns, o.return_ns) for o in ops] == [
        (0, RegisterOp("write", 1), None, 1, 4),
        (1, RegisterOp("cas", 2, 1), UNKNOWN, 2, math.inf),  # :info
        (3, RegisterOp("read"), 2, 7, 8),  # the timed-out read (process 2) is dropped
        (4, RegisterOp("cas", 6, 5), False, 9, 10),
        (5, RegisterOp("write", 7), UNKNOWN, 11, math.inf),  # never completed
    ]
    assert check_operations(REGISTER, ops).verdict is Verdict.OK


def test_parsers_reject_lines_they_do_not_understand() -> None:
    with pytest.raises(ValueError, match=":2: not a Jepsen"):
        parse_jepsen_etcd_log("INFO  jepsen.util - 0\t:invoke\t:read\tnil\ngarbage\n")
    with pytest.raises(ValueError, match="completes uninvoked"):
        parse_jepsen_etcd_log("INFO  jepsen.util - 0\t:ok\t:read\tnil\n")
    with pytest.raises(ValueError, match=":1: not a Porcupine kv"):
        parse_porcupine_kv_log("{:process 0, :type :invoke}\n")


def test_kv_parser() -> None:
    text = (
        '{:process 0, :type :invoke, :f :put, :key "1", :value "a"}\n'
        '{:process 1, :type :invoke, :f :get, :key "1", :value nil}\n'
        '{:process 0, :type :ok, :f :put, :key "1", :value "a"}\n'
        '{:process 1, :type :ok, :f :get, :key "1", :value "a"}\n'
        '{:process 2, :type :invoke, :f :append, :key "2", :value "b"}\n'
        '{:process 2, :type :info, :f :append, :key "2", :value "b"}\n'
    )
    ops = parse_porcupine_kv_log(text)
    assert [(o.input, o.output, o.return_ns) for o in ops] == [
        (KvOp("put", "1", "a"), "", 3),
        (KvOp("get", "1"), "a", 4),
        (KvOp("append", "2", "b"), UNKNOWN, math.inf),
    ]


# The recorder --------------------------------------------------------------------------------


def test_recorder_completions() -> None:
    ticks = itertools.count(1000, 10)
    recorder: HistoryRecorder[RegisterOp, Hashable] = HistoryRecorder(lambda: next(ticks))
    w = recorder.invoke(0, RegisterOp("write", 1))  # at 10
    r = recorder.invoke(1, RegisterOp("read"))  # at 20
    recorder.ok(w, None)  # at 30
    f = recorder.invoke(2, RegisterOp("write", 9))  # at 40
    recorder.fail(f)
    c = recorder.invoke(3, RegisterOp("cas", 2, 1))  # at 60
    recorder.info(c)
    recorder.invoke(4, RegisterOp("read"))  # pending at the end
    recorder.ok(r, 1)
    with pytest.raises(ValueError, match="completed twice"):
        recorder.ok(r, 1)
    ops = recorder.operations()
    assert [(o.client_id, o.call_ns, o.return_ns, o.output) for o in ops] == [
        (0, 10, 30, None),
        (1, 20, 90, 1),
        (3, 60, math.inf, UNKNOWN),
        (4, 80, math.inf, UNKNOWN),
    ]
    assert check_operations(REGISTER, ops).verdict is Verdict.OK
    dump = recorder.dump(REGISTER)
    assert "fail    write(9)" in dump
    assert "pending read() -> ?" in dump


def test_recorder_is_thread_safe_and_a_locked_register_is_linearizable() -> None:
    recorder: HistoryRecorder[RegisterOp, Hashable] = HistoryRecorder()
    lock = threading.Lock()
    register: list[Hashable] = [None]

    def client(client_id: int) -> None:
        for i in range(100):
            kind = ("read", "write", "cas")[(client_id + i) % 3]
            op = RegisterOp(kind, i % 4, (i + 1) % 4)  # type: ignore[arg-type]
            handle = recorder.invoke(client_id, op)
            with lock:
                if kind == "read":
                    out: Hashable = register[0]
                elif kind == "write":
                    register[0], out = op.value, None
                else:
                    out = register[0] == op.expected
                    if out:
                        register[0] = op.value
            recorder.ok(handle, out)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = recorder.operations()
    assert len(ops) == 600
    assert_linearizable(REGISTER, ops, timeout_s=60)


def test_assert_linearizable_message_has_the_explanation_and_a_dump() -> None:
    history = [write(0, 0, 1_000_000, 1), read(1, 2_000_000, 3_000_000, None)]
    with pytest.raises(AssertionError) as info:
        assert_linearizable(REGISTER, history)
    message = str(info.value)
    assert "illegal" in message
    assert "longest linearizable prefix" in message
    assert "> #0     client 0   [0.000, 1.000]  write(1)" in message
    assert "  #1     client 1   [2.000, 3.000]  read() -> None" in message


def test_format_history_elides_far_from_the_highlight() -> None:
    history = [read(0, i, i + 1, None) for i in range(50)]
    text = format_history(history, REGISTER, highlight=[history[25]], time_unit_ns=1, max_ops=10)
    assert "> #25    client 0   [25.000, 26.000]" in text
    assert "... 20 operations" in text
    assert len(text.splitlines()) < 20
