"""The embedded DNS server: per-container sockets on 127.0.0.11, NAT rules, forwarding (I/O).

Role: what moby libnetwork's resolver.go / resolver_unix.go do for each sandbox. For every
attached container it opens, inside that container's network namespace, a UDP and a TCP
socket on 127.0.0.11 at kernel-chosen ports and installs the NAT rules that send
127.0.0.11:53 there (so a process in the container may still bind 0.0.0.0:53 itself). The
requester of a query is the container whose sockets it arrived on; the answer comes from the
newest `DnsTable`, or from the host's resolvers, queried from the daemon's own namespace.

Invariants:
- One socket pair per attached container; `attach` replaces (never duplicates) both the
  sockets and the rules, so it is safe to call again after a daemon restart.
- Sockets are created by a fresh thread that setns()es into the container's namespace and
  ends afterwards: netns is per thread, a socket keeps the namespace it was born in, and a
  thread that could not switch back is never reused (Go's LockOSThread discipline).
- Nothing a container sends can raise out of a handler or stall another query: every
  forward runs in its own task, bounded in number (`MAX_CONCURRENT_FORWARDS`, then REFUSED),
  every upstream exchange has a timeout, every TCP connection an idle timeout, and the
  number of TCP connections per container is bounded.
- Upstream queries carry a fresh random ID on a fresh socket; the reply must match that ID
  and the question, and goes back under the container's ID with its question.
- Failed upstreams: try the next; SERVFAIL, REFUSED and a non-authoritative NXDOMAIN also
  move on (resolver.go ServeDNS); when no server answered at all, SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import TypeVar, cast

from dockyard.engine.network.dns.message import (
    CLASS_IN,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    TCP_MESSAGE_LIMIT,
    Dropped,
    Query,
    Rejected,
    decode_message,
    decode_query,
    encode_reply,
    relay_reply,
    reply_id,
    with_id,
)
from dockyard.engine.network.dns.records import AnswerKind, DnsTable
from dockyard.engine.network.dns.resolvconf import UpstreamServer

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Docker's resolver address inside every container (libnetwork resolver.go resolverIPSandbox).
RESOLVER_IP = "127.0.0.11"
DNS_PORT = 53
# libnetwork resolver_unix.go chain names.
OUTPUT_CHAIN = "DOCKER_OUTPUT"
POSTROUTING_CHAIN = "DOCKER_POSTROUTING"
# resolver.go maxConcurrent.
MAX_CONCURRENT_FORWARDS = 1024
REPLY_CACHE_ENTRIES = 4096  # answers kept per daemon (see EmbeddedDns._replies)
# A bound per container; a client needs one or two.
MAX_TCP_CONNECTIONS = 64
# Outstanding queries per TCP connection before we stop reading from it (RFC 7766 §6.2.1.1).
MAX_TCP_PIPELINE = 32
# miekg/dns server defaults: idle 8 s between queries on a TCP connection.
TCP_IDLE_TIMEOUT_S = 8.0
TCP_READ_TIMEOUT_S = 2.0
UDP_RECEIVE_BUFFER = 65535
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class DnsServerError(RuntimeError):
    """Attaching failed: the namespace, the sockets or the NAT rules."""


# ----------------------------------------------------------------------------- NAT rules


def _jump_rules() -> tuple[tuple[str, str], ...]:
    # resolver_unix.go: -A OUTPUT -d 127.0.0.11 -j DOCKER_OUTPUT and the POSTROUTING twin.
    return (
        ("OUTPUT", f"-d {RESOLVER_IP}/32 -j {OUTPUT_CHAIN}"),
        ("POSTROUTING", f"-d {RESOLVER_IP}/32 -j {POSTROUTING_CHAIN}"),
    )


def _existing(save_text: str) -> tuple[set[str], list[str]]:
    chains: set[str] = set()
    rules: list[str] = []
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif table == "nat" and line.startswith("-A "):
            rules.append(line[3:].strip())
    return chains, rules


def nat_rules_install(save_text: str, udp_port: int, tcp_port: int) -> str:
    """iptables-restore --noflush input that points 127.0.0.11:53 at our ports.

    Declaring our chains flushes them, so stale ports from an earlier attach are replaced;
    the jumps are added only when `save_text` (iptables-save -t nat) lacks them.
    """
    _, rules = _existing(save_text)
    lines = [
        "*nat",
        f":{OUTPUT_CHAIN} - [0:0]",
        f":{POSTROUTING_CHAIN} - [0:0]",
        f"-F {OUTPUT_CHAIN}",
        f"-F {POSTROUTING_CHAIN}",
        f"-A {OUTPUT_CHAIN} -d {RESOLVER_IP}/32 -p udp -m udp --dport {DNS_PORT}"
        f" -j DNAT --to-destination {RESOLVER_IP}:{udp_port}",
        f"-A {POSTROUTING_CHAIN} -s {RESOLVER_IP}/32 -p udp -m udp --sport {udp_port}"
        f" -j SNAT --to-source :{DNS_PORT}",
        f"-A {OUTPUT_CHAIN} -d {RESOLVER_IP}/32 -p tcp -m tcp --dport {DNS_PORT}"
        f" -j DNAT --to-destination {RESOLVER_IP}:{tcp_port}",
        f"-A {POSTROUTING_CHAIN} -s {RESOLVER_IP}/32 -p tcp -m tcp --sport {tcp_port}"
        f" -j SNAT --to-source :{DNS_PORT}",
    ]
    for chain, spec in _jump_rules():
        if f"{chain} {spec}" not in rules:
            lines.append(f"-A {chain} {spec}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nat_rules_remove(save_text: str) -> str | None:
    """iptables-restore --noflush input removing everything `nat_rules_install` added."""
    chains, rules = _existing(save_text)
    lines = ["*nat"]
    for chain, spec in _jump_rules():
        lines.extend(f"-D {chain} {spec}" for rule in rules if rule == f"{chain} {spec}")
    for chain in (OUTPUT_CHAIN, POSTROUTING_CHAIN):
        if chain in chains:
            lines.extend((f"-F {chain}", f"-X {chain}"))
    if len(lines) == 1:
        return None
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- netns


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _call_in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            return fn()
        finally:
            # The thread ends right after; switching back only keeps its last moments sane.
            try:
                _setns(own)
            except OSError:
                logger.exception("could not return a helper thread to the daemon's netns")
    finally:
        os.close(own)


async def run_in_netns(
    netns_path: str, fn: Callable[[], T], discard: Callable[[T], None] = lambda _: None
) -> T:
    """Run `fn` on a new thread inside the namespace at `netns_path`.

    If the caller is cancelled meanwhile, `discard` disposes of what `fn` produced.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T) -> None:
        if future.cancelled():
            discard(result)
        else:
            future.set_result(result)

    def fail(exc: BaseException) -> None:
        if not future.cancelled():
            future.set_exception(exc)

    def body() -> None:
        try:
            result = _call_in_netns(netns_path, fn)
        except BaseException as exc:  # delivered to the awaiting coroutine
            loop.call_soon_threadsafe(fail, exc)
        else:
            loop.call_soon_threadsafe(deliver, result)

    threading.Thread(target=body, name="dns-netns", daemon=True).start()
    return await future


def _open_sockets() -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        udp.close()
        raise
    try:
        udp.bind((RESOLVER_IP, 0))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((RESOLVER_IP, 0))
        tcp.listen(128)
        udp.setblocking(False)
        tcp.setblocking(False)
    except OSError:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in pair:
        sock.close()


# ----------------------------------------------------------------------------- serving


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: EmbeddedDns, container_id: str) -> None:
        self._server = server
        self._container_id = container_id
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio hands a DatagramTransport to a datagram protocol (its selector transport
        # does not subclass it in 3.11, hence the cast rather than an isinstance check).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self._transport
        if transport is None:
            return

        def send(reply: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(reply, addr)

        self._server.handle(self._container_id, data, udp=True, send=send)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from a client that went away; nothing to do.
        logger.debug("dns udp error for %s: %s", self._container_id[:12], exc)


class _UpstreamUdp(asyncio.DatagramProtocol):
    def __init__(self, message_id: int) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._id = message_id

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # Anything not carrying our ID is ignored (RFC 5452 §9.1), the wait goes on.
        if reply_id(data) == self._id and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


@dataclass
class _Attachment:
    netns_path: str
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    udp_port: int
    tcp_port: int
    connections: set[asyncio.StreamWriter] = field(default_factory=set)
    # The container's own upstreams (`--dns`), instead of the host's; None: the host's.
    upstreams: tuple[UpstreamServer, ...] | None = None


class EmbeddedDns:
    """Docker's embedded DNS server for every attached container of this daemon."""

    def __init__(
        self,
        upstreams: Sequence[UpstreamServer],
        *,
        table: DnsTable | None = None,
        upstream_timeout_s: float = 2.0,
        rng: Random | None = None,
    ) -> None:
        self._upstreams = tuple(upstreams)
        self._table = table if table is not None else DnsTable.build(())
        # Answers we own, by (requester, transport, the query after its ID): a repeated
        # lookup costs a dict hit instead of a parse and an encode. Only deterministic
        # answers (one record, or NXDOMAIN) are kept; emptied whenever the table changes.
        self._replies: dict[tuple[str, bool, bytes], bytes] = {}
        self._timeout_s = upstream_timeout_s
        self._rng = rng if rng is not None else Random(secrets.randbits(64))
        self._attached: dict[str, _Attachment] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._forwards: set[asyncio.Task[None]] = set()
        self._tools: dict[str, str] = {}
        self._started = False

    # -- lifecycle

    async def start(self) -> None:
        for tool in ("nsenter", "iptables-restore", "iptables-save"):
            path = shutil.which(tool)
            if path is None:
                raise DnsServerError(f"{tool} is required for the embedded DNS server")
            self._tools[tool] = path
        self._started = True

    async def close(self) -> None:
        for container_id in list(self._attached):
            await self.detach(container_id)
        for task in list(self._forwards):
            task.cancel()
        await asyncio.gather(*self._forwards, return_exceptions=True)
        self._started = False

    def update(self, table: DnsTable) -> None:
        """Swap in a new table; queries from now on are answered from it."""
        self._table = table
        self._replies = {}

    def attached(self) -> dict[str, tuple[int, int]]:
        """Container ID -> (udp port, tcp port) of its sockets on 127.0.0.11."""
        return {cid: (a.udp_port, a.tcp_port) for cid, a in self._attached.items()}

    def _lock(self, container_id: str) -> asyncio.Lock:
        # attach/detach of one container are serialised; different containers proceed at once.
        return self._locks.setdefault(container_id, asyncio.Lock())

    async def attach(
        self,
        container_id: str,
        netns_path: str,
        upstreams: Sequence[UpstreamServer] | None = None,
        *,
        fresh_netns: bool = False,
    ) -> None:
        """Serve `container_id` inside `netns_path`; replaces an earlier attachment.
        `upstreams`: where its unknown names go (the container's `--dns` servers, as
        Docker's resolver forwards to them); None for the host's resolvers. `fresh_netns`:
        the namespace was made just now and has no rules yet, so they are installed without
        reading its table first (one process less per container start)."""
        if not self._started:
            raise DnsServerError("EmbeddedDns.start() was not called")
        async with self._lock(container_id):
            try:
                udp_sock, tcp_sock = await run_in_netns(netns_path, _open_sockets, _close_pair)
            except OSError as exc:
                raise DnsServerError(f"cannot open the DNS sockets in {netns_path}: {exc}") from exc
            udp_port = udp_sock.getsockname()[1]
            tcp_port = tcp_sock.getsockname()[1]
            loop = asyncio.get_running_loop()
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self, container_id), sock=udp_sock
                )
            except BaseException:
                _close_pair((udp_sock, tcp_sock))
                raise
            connections: set[asyncio.StreamWriter] = set()
            try:
                tcp = await asyncio.start_server(
                    lambda r, w: self._serve_tcp(container_id, connections, r, w),
                    sock=tcp_sock,
                    limit=TCP_MESSAGE_LIMIT + 2,
                )
            except BaseException:
                udp.close()
                tcp_sock.close()
                raise
            attachment = _Attachment(
                netns_path,
                udp,
                tcp,
                udp_port,
                tcp_port,
                connections,
                None if upstreams is None else tuple(upstreams),
            )
            try:
                save = (
                    ""
                    if fresh_netns
                    else await self._iptables(netns_path, "iptables-save", "-t", "nat")
                )
                await self._iptables(
                    netns_path,
                    "iptables-restore",
                    "--noflush",
                    "-w",
                    stdin=nat_rules_install(save, udp_port, tcp_port),
                )
            except BaseException:
                await self._close_attachment(attachment)
                raise
            previous = self._attached.pop(container_id, None)
            self._attached[container_id] = attachment
            if previous is not None:
                await self._close_attachment(previous)
            logger.debug(
                "dns for %s on 127.0.0.11 udp %d tcp %d", container_id[:12], udp_port, tcp_port
            )

    async def detach(self, container_id: str, *, netns_going: bool = False) -> None:
        """Close the container's sockets and remove its NAT rules (if its netns remains).
        `netns_going`: the caller deletes the namespace next, and its rules with it, so they
        are left to that (two processes less per container stop)."""
        async with self._lock(container_id):
            attachment = self._attached.pop(container_id, None)
            if attachment is None:
                return
            await self._close_attachment(attachment)
            if not netns_going and os.path.exists(attachment.netns_path):
                try:
                    save = await self._iptables(attachment.netns_path, "iptables-save", "-t", "nat")
                    removal = nat_rules_remove(save)
                    if removal is not None:
                        await self._iptables(
                            attachment.netns_path,
                            "iptables-restore",
                            "--noflush",
                            "-w",
                            stdin=removal,
                        )
                except DnsServerError:
                    # The namespace may be going away with its container; its rules go too.
                    logger.warning("could not remove the DNS rules of %s", container_id[:12])
        # The lock stays: a waiter may hold it already, and a fresh one would let two
        # attach/detach calls for the same container interleave.

    async def _close_attachment(self, attachment: _Attachment) -> None:
        attachment.udp.close()
        attachment.tcp.close()
        for writer in list(attachment.connections):
            writer.close()
        await attachment.tcp.wait_closed()

    async def _iptables(self, netns_path: str, tool: str, *args: str, stdin: str = "") -> str:
        argv = [self._tools["nsenter"], f"--net={netns_path}", self._tools[tool], *args]
        # subprocess.run on a worker thread: CPython spawns with vfork, where the event
        # loop's spawn forks the daemon's whole address space (page tables copied, then
        # copy-on-write faults on both sides) - a third of the daemon's CPU at 30 parallel
        # container starts. No pipe without input: iptables-save may exit before an empty
        # write reaches it.
        done = await asyncio.to_thread(
            subprocess.run,
            argv,
            input=stdin.encode() if stdin else None,
            stdin=None if stdin else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise DnsServerError(
                f"{tool} in {netns_path} failed ({done.returncode}): {done.stderr.decode().strip()}"
            )
        return str(done.stdout.decode())

    # -- queries

    def handle(
        self, container_id: str, packet: bytes, *, udp: bool, send: Callable[[bytes], None]
    ) -> bool:
        """Answer one message from `container_id`; forwards run as tasks. Never raises.

        True when `send` was called or will be (by a forward task), False when dropped.
        """
        try:
            return self._handle(container_id, packet, udp=udp, send=send)
        except Exception:
            logger.exception("dns: unexpected failure answering %s", container_id[:12])
            return False

    def _remember(self, key: tuple[str, bool, bytes], reply: bytes) -> None:
        if len(self._replies) >= REPLY_CACHE_ENTRIES:
            self._replies.clear()  # crude, and rare: only a flood of distinct names fills it
        self._replies[key] = reply[2:]

    def _handle(
        self, container_id: str, packet: bytes, *, udp: bool, send: Callable[[bytes], None]
    ) -> bool:
        key = (container_id, udp, packet[2:])
        cached = self._replies.get(key)
        if cached is not None:
            send(packet[:2] + cached)  # the client's ID, then the answer as before
            return True
        decoded = decode_query(packet)
        if isinstance(decoded, Dropped):
            return False
        if isinstance(decoded, Rejected):
            send(decoded.reply)
            return True
        query = decoded
        limit = query.udp_limit() if udp else TCP_MESSAGE_LIMIT
        question = query.question
        if question.qclass == CLASS_IN:
            answer = self._table.answer(container_id, question.name, question.qtype, self._rng)
        else:
            answer = None
        if answer is not None and answer.kind is AnswerKind.RECORDS:
            try:
                reply = encode_reply(query, RCODE_NOERROR, answer.records, limit=limit)
            except ValueError:
                # A name that cannot be a DNS name (a label over 63 octets): we own the
                # question, so fail it rather than leave the client waiting.
                logger.warning("dns: cannot encode the answer to %s", question.name)
                reply = encode_reply(query, RCODE_SERVFAIL, limit=limit)
            if len(answer.records) <= 1:
                self._remember(key, reply)
            send(reply)
            return True
        if answer is not None and answer.kind is AnswerKind.NXDOMAIN:
            reply = encode_reply(query, RCODE_NXDOMAIN, limit=limit)
            self._remember(key, reply)
            send(reply)
            return True
        attached = self._attached.get(container_id)
        upstreams = self._upstreams
        if attached is not None and attached.upstreams is not None:
            upstreams = attached.upstreams
        if len(self._forwards) >= MAX_CONCURRENT_FORWARDS or not upstreams:
            send(encode_reply(query, RCODE_REFUSED, limit=limit))
            return True
        task = asyncio.get_running_loop().create_task(self._forward(query, limit, send, upstreams))
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)
        return True

    async def _forward(
        self,
        query: Query,
        limit: int,
        send: Callable[[bytes], None],
        upstreams: Sequence[UpstreamServer],
    ) -> None:
        # resolver.go ServeDNS: SERVFAIL, REFUSED, any other error and a non-authoritative
        # NXDOMAIN (RFC 8020 §2) move on to the next server; the last reply stands if no
        # server does better. With no reply at all Docker stays silent; we say SERVFAIL.
        fallback: bytes | None = None
        for server in upstreams:
            raw = await self._exchange(server, query)
            if raw is None:
                continue
            fitted = relay_reply(query, raw, limit=limit)
            message = decode_message(raw)
            if fitted is None or message is None:
                continue
            header = message.header
            if header.rcode == RCODE_NOERROR or (
                header.rcode == RCODE_NXDOMAIN and header.authoritative
            ):
                self._send(send, fitted)
                return
            fallback = fitted
        self._send(send, fallback or encode_reply(query, RCODE_SERVFAIL, limit=limit))

    @staticmethod
    def _send(send: Callable[[bytes], None], reply: bytes) -> None:
        try:
            send(reply)
        except (OSError, RuntimeError):
            logger.debug("dns: the requester went away before the upstream answered")

    async def _exchange(self, server: UpstreamServer, query: Query) -> bytes | None:
        message_id = secrets.randbits(16)
        packet = with_id(query.packet, message_id)
        try:
            raw = await asyncio.wait_for(
                self._exchange_udp(server, packet, message_id), self._timeout_s
            )
        except (OSError, TimeoutError) as exc:
            logger.debug("dns: upstream %s udp: %r", server.host, exc)
            return None
        message = decode_message(raw)
        if message is None or not message.header.truncated:
            return raw
        # Truncated over UDP: ask again over TCP (RFC 7766 §5); keep the UDP answer if that fails.
        try:
            tcp_raw = await asyncio.wait_for(
                self._exchange_tcp(server, packet, message_id), self._timeout_s
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            logger.debug("dns: upstream %s tcp: %r", server.host, exc)
            return raw
        return tcp_raw if tcp_raw is not None else raw

    async def _exchange_udp(self, server: UpstreamServer, packet: bytes, message_id: int) -> bytes:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UpstreamUdp(message_id), remote_addr=(server.host, server.port)
        )
        try:
            transport.sendto(packet)
            return await protocol.reply
        finally:
            transport.close()

    async def _exchange_tcp(
        self, server: UpstreamServer, packet: bytes, message_id: int
    ) -> bytes | None:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            raw = await reader.readexactly(length)
            return raw if reply_id(raw) == message_id else None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve_tcp(
        self,
        container_id: str,
        connections: set[asyncio.StreamWriter],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if len(connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        connections.add(writer)
        pipeline = asyncio.Semaphore(MAX_TCP_PIPELINE)

        def sender() -> tuple[Callable[[bytes], None], Callable[[], bool]]:
            # One reply per message; each reply frees one pipeline slot.
            replied = False

            def send(reply: bytes) -> None:
                nonlocal replied
                if replied:
                    return
                replied = True
                pipeline.release()
                if not writer.is_closing():
                    writer.write(struct.pack("!H", len(reply)) + reply)

            return send, lambda: replied

        try:
            while True:
                # RFC 1035 §4.2.2: two-octet length, then the message; many per connection.
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT_S)
                (length,) = struct.unpack("!H", head)
                body = await asyncio.wait_for(reader.readexactly(length), TCP_READ_TIMEOUT_S)
                await pipeline.acquire()
                send, replied = sender()
                if not self.handle(container_id, body, udp=False, send=send) and not replied():
                    # Dropped without a reply: give the slot back.
                    pipeline.release()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connections.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
